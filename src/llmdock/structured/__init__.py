"""Structured output: answers that follow a JSON schema (``response_format``) or call tools (``tools``)."""

from llmdock.structured.plan import StructuredPlan, plan_of
from llmdock.structured.stage import StructuredStage

__all__ = ["StructuredPlan", "StructuredStage", "plan_of"]
