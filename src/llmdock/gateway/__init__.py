"""The OpenAI-compatible HTTP gateway."""

from llmdock.gateway.app import create_app

__all__ = ["create_app"]
