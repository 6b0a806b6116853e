"""Routing: model names served by deployments, with strategies, retries, fallbacks, breakers and limits."""

from llmdock.routing.deployment import Deployment
from llmdock.routing.router import ModelRoute, build_route

__all__ = ["Deployment", "ModelRoute", "build_route"]
