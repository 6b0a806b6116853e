"""llmdock: one staged pipeline for LLM requests, served through an OpenAI-compatible gateway."""

__version__ = "0.1.0"
