"""Routing: model names served by deployments, with strategies, retries, fallbacks, breakers and limits."""

from llmdock.routing.build import build_route
from llmdock.routing.deployment import Deployment
from llmdock.routing.router import ModelRoute

__all__ = ["Deployment", "ModelRoute", "build_route"]
