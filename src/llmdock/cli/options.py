"""Options every ``llmdock`` command group shares."""

from __future__ import annotations

import typer

CONFIG = typer.Option(None, "--config", "-c", help="llmdock.yaml")
AS_JSON = typer.Option(False, "--json")
