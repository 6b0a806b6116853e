"""``llmdock serve``: the OpenAI-compatible gateway on the configured models."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from llmdock.config import load_settings


def serve(
    config: Path | None = typer.Option(
        None, "--config", "-c", help="llmdock.yaml (default: ./llmdock.yaml if present)"
    ),
    host: str | None = typer.Option(None, help="Address to listen on [127.0.0.1]"),
    port: int | None = typer.Option(None, help="Port to listen on [8000]"),
    default_model: str | None = typer.Option(None, "--model", help="Default chat model"),
    log_level: str | None = typer.Option(None, help="debug, info, warning or error"),
) -> None:
    """Start the gateway (OpenAI-compatible API under /v1)."""
    import uvicorn

    from llmdock.gateway import create_app
    from llmdock.runtime import Runtime

    settings = load_settings(config, host=host, port=port, default_model=default_model, log_level=log_level)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    runtime = Runtime(settings)
    app = create_app(runtime)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=5,
    )
