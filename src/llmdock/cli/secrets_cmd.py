"""``llmdock secrets``: encrypted provider credentials, and the encryption key's rotation.

The key comes from ``privacy.encryption_key_env`` (``LLMDOCK_ENCRYPTION_KEY``) or
``privacy.encryption_key_file``: base64url keys, the current one first, older ones after it (they still
decrypt). A model references a secret as ``api_key: secret:NAME``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from llmdock.cli.options import CONFIG
from llmdock.config import Settings, load_settings
from llmdock.errors import InvalidRequest
from llmdock.privacy.crypto import Keyring, new_key
from llmdock.store.engine import Store

app = typer.Typer(help="Encrypted provider credentials and the encryption key.", no_args_is_help=True)


def _open(config: Path | None) -> tuple[Settings, Store, Keyring]:
    from llmdock.privacy.privacy_policy import load_keyring

    settings = load_settings(config)
    keyring = load_keyring(settings, required=True)
    assert keyring is not None
    return settings, Store(settings.resolved_database_url(), keyring=keyring), keyring


@app.command("set")
def set_cmd(
    name: str = typer.Argument(..., help="Name to reference as secret:NAME"),
    config: Path | None = CONFIG,
) -> None:
    """Store a secret; the value is read from standard input (or asked for, hidden, on a terminal)."""
    from llmdock.store.secret_rows import set_secret

    _, store, keyring = _open(config)
    if sys.stdin.isatty():
        value = typer.prompt(f"value of {name}", hide_input=True, confirmation_prompt=True)
    else:
        value = sys.stdin.read().rstrip("\r\n")
    if not value:
        raise InvalidRequest("empty value: nothing stored", where="stdin")
    set_secret(store, keyring, name, value)
    typer.echo(f"stored secret {name} (key {keyring.current_id})")


@app.command("list")
def list_cmd(config: Path | None = CONFIG) -> None:
    """Secret names, the key each is encrypted with, and when it was set. Never the values."""
    from llmdock.store.secret_rows import list_secrets

    settings = load_settings(config)
    store = Store(settings.resolved_database_url())
    table = Table("name", "key id", "updated (UTC)")
    for info in list_secrets(store):
        table.add_row(info.name, info.key_id, info.updated_at.strftime("%Y-%m-%d %H:%M:%S"))
    Console().print(table)


@app.command("delete")
def delete_cmd(name: str = typer.Argument(...), config: Path | None = CONFIG) -> None:
    """Remove a secret."""
    from llmdock.store.secret_rows import delete_secret

    settings = load_settings(config)
    delete_secret(Store(settings.resolved_database_url()), name)
    typer.echo(f"deleted secret {name}")


@app.command("new-key")
def new_key_cmd() -> None:
    """Print a fresh random encryption key (put it first in LLMDOCK_ENCRYPTION_KEY, then rotate-key)."""
    typer.echo(new_key())


@app.command("rotate-key")
def rotate_key_cmd(
    batch_size: int = typer.Option(200, min=1, help="Rows re-encrypted per transaction"),
    config: Path | None = CONFIG,
) -> None:
    """Re-encrypt every stored encrypted value under the current (first) key; an interrupted run resumes.

    Put the new key first and keep the old ones after it until this has finished:
    LLMDOCK_ENCRYPTION_KEY="NEW,OLD" llmdock secrets rotate-key
    """
    from llmdock.privacy.rotation import rotate

    _, store, keyring = _open(config)
    console = Console(stderr=True)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    ) as bar:
        tasks: dict[str, int] = {}

        def progress(table: str, done: int, total: int) -> None:
            if table not in tasks:
                tasks[table] = bar.add_task(f"re-encrypting {table}", total=total)
            bar.update(tasks[table], completed=done, total=total)  # type: ignore[arg-type]

        result = rotate(store, keyring, batch_size=batch_size, progress=progress)
    resumed = " (resumed an interrupted rotation)" if result.resumed else ""
    typer.echo(
        f"key {result.key_id}: {result.resealed} values re-encrypted in {result.rows} rows{resumed}; "
        "older keys can now be removed"
    )


@app.command("status")
def status_cmd(config: Path | None = CONFIG) -> None:
    """How many stored values each key id holds, and which key is current (a full scan)."""
    from llmdock.privacy.rotation import key_usage

    _, store, keyring = _open(config)
    table = Table("key id", "values", "in keyring")
    usage = key_usage(store)
    for kid in sorted(set(usage) | {keyring.current_id}):
        mark = "current" if kid == keyring.current_id else ("yes" if kid in keyring.key_ids else "NO")
        table.add_row(kid, str(usage.get(kid, 0)), mark)
    Console().print(table)
