"""The OpenAI-compatible HTTP gateway."""

from llmdock.gateway.app import create_app, quiet_http_client_logs

__all__ = ["create_app", "quiet_http_client_logs"]
