"""The ASGI entry point for multi-worker serving: each worker process builds its own runtime from the
settings (``llmdock serve --workers N`` passes the config file and flags through the environment)."""

from __future__ import annotations

import logging

from fastapi import FastAPI

from llmdock.config import load_settings
from llmdock.gateway.app import create_app, quiet_http_client_logs
from llmdock.runtime import Runtime


def app_from_env() -> FastAPI:
    settings = load_settings(None)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    quiet_http_client_logs()
    return create_app(Runtime(settings, serving=True))
