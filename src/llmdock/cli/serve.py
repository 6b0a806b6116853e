"""``llmdock serve``: the OpenAI-compatible gateway on the configured models."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import typer

from llmdock.config import find_config_file, load_settings


def serve(
    config: Path | None = typer.Option(
        None, "--config", "-c", help="llmdock.yaml (default: ./llmdock.yaml if present)"
    ),
    host: str | None = typer.Option(None, help="Address to listen on [127.0.0.1]"),
    port: int | None = typer.Option(None, help="Port to listen on [8000]"),
    default_model: str | None = typer.Option(None, "--model", help="Default chat model"),
    log_level: str | None = typer.Option(None, help="debug, info, warning or error"),
    workers: int = typer.Option(1, min=1, help="Worker processes; share state through redis_url"),
    ssl_certfile: Path | None = typer.Option(None, help="Serve HTTPS with this certificate (PEM)"),
    ssl_keyfile: Path | None = typer.Option(None, help="Private key of --ssl-certfile (PEM)"),
) -> None:
    """Start the gateway (OpenAI-compatible API under /v1)."""
    import uvicorn

    from llmdock.gateway import create_app, quiet_http_client_logs
    from llmdock.gateway.http_protocol import GatewayHttpProtocol
    from llmdock.runtime import Runtime

    flags = {"host": host, "port": port, "default_model": default_model, "log_level": log_level}
    settings = load_settings(config, **flags)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    quiet_http_client_logs()
    common: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "access_log": False,
        "loop": "uvloop",
        "http": GatewayHttpProtocol,  # httptools; its own 400s OpenAI-shaped too
        "timeout_graceful_shutdown": 5,
        # uvicorn's 5 s closed kept-alive connections whose next request was already waiting when an
        # overloaded loop came back to its timers late: the client saw a reset (bench/soak.py, c=64).
        "timeout_keep_alive": 75,
        **_tls(ssl_certfile, ssl_keyfile),
    }
    run_dir = _metrics_dir(settings.home, workers) if settings.metrics.enabled else None
    if workers == 1:
        runtime = Runtime(settings, serving=True)
        try:
            uvicorn.run(create_app(runtime), **common)
        except SystemExit:
            if runtime.start_error is not None:  # uvicorn logged its one line: exit as every CLI error does
                raise SystemExit(2) from None
            raise
        return
    # Each worker process builds its own runtime: hand it the same sources (file and flags) via the env.
    # The settings were validated above, so a bad config still stops here with one line, before forking.
    config_file = find_config_file(config)
    if config_file is not None:
        os.environ["LLMDOCK_CONFIG"] = str(config_file.resolve())
    for name, value in flags.items():
        if value is not None:
            os.environ[f"LLMDOCK_{name.upper()}"] = str(value)
    if not settings.redis_url:
        logging.getLogger("llmdock").warning(
            "%d workers without redis_url: caches and rate limits are per worker", workers
        )
    try:
        # uvicorn kills a worker that does not answer its health ping within 5 s: on a loaded machine a worker
        # still importing its models (the GIL held in C) missed it, and was killed and restarted for ever.
        uvicorn.run("llmdock.gateway.asgi:app_from_env", factory=True, workers=workers,
                    timeout_worker_healthcheck=60, **common)  # fmt: skip
    finally:
        if run_dir is not None:
            shutil.rmtree(run_dir, ignore_errors=True)


def _metrics_dir(home: Path, workers: int) -> Path | None:
    """Where the workers write their metrics (prometheus-client's multiprocess mode), set in the environment
    they inherit: $PROMETHEUS_MULTIPROC_DIR if the operator set one (emptied), else with several workers a fresh
    per-run directory under <home>/prometheus (returned, to be removed at exit). One worker without the
    variable keeps its values in memory."""
    from llmdock.monitor.exposition import MULTIPROC_ENV, clear_dir, prepare_run_dir

    chosen = os.environ.get(MULTIPROC_ENV)
    if chosen:
        Path(chosen).mkdir(parents=True, exist_ok=True)
        clear_dir(Path(chosen))
        return None
    if workers == 1:
        return None
    run_dir = prepare_run_dir(home)
    os.environ[MULTIPROC_ENV] = str(run_dir)
    return run_dir


def _tls(certfile: Path | None, keyfile: Path | None) -> dict[str, Any]:
    """uvicorn's TLS options, after checking both files are given and readable (one clear line if not)."""
    from llmdock.errors import ConfigError

    if certfile is None and keyfile is None:
        return {}
    if certfile is None or keyfile is None:
        raise ConfigError("give both --ssl-certfile and --ssl-keyfile", where="serve")
    import ssl

    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot use {certfile} / {keyfile}: {exc}", where="--ssl-certfile") from None
    return {"ssl_certfile": str(certfile), "ssl_keyfile": str(keyfile)}
