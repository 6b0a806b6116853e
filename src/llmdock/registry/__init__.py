"""Registries of versioned things: models (artifacts, aliases, lineage) and the labels shared with prompts."""

from llmdock.registry.labels import LATEST, Labels, Versioned
from llmdock.registry.models import URI_PREFIX, ModelRef, ModelRegistry, parse_uri

__all__ = ["LATEST", "URI_PREFIX", "Labels", "ModelRef", "ModelRegistry", "Versioned", "parse_uri"]
