"""Options every ``llmdock`` command group shares, and the store as commands open it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from llmdock.store import Store

CONFIG = typer.Option(None, "--config", "-c", help="llmdock.yaml")
AS_JSON = typer.Option(False, "--json")


def open_store(config: Path | None) -> Store:
    """The configured store, with the keyring that opens encrypted trace bodies."""
    from llmdock.config import load_settings
    from llmdock.privacy.privacy_policy import load_keyring
    from llmdock.store import Store

    settings = load_settings(config)
    return Store(settings.resolved_database_url(), keyring=load_keyring(settings))
