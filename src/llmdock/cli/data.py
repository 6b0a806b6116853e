"""``llmdock data``: data-subject export and erasure (GDPR), and trace retention."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import typer

from llmdock.cli.options import CONFIG
from llmdock.config import load_settings

app = typer.Typer(help="Personal data: export, erase, purge old traces.", no_args_is_help=True)


def _context(config: Path | None):  # type: ignore[no-untyped-def]
    from llmdock.auth.keys import load_secret
    from llmdock.privacy.privacy_policy import load_keyring
    from llmdock.store import Store
    from llmdock.store.audit import Actor, cli_actor

    settings = load_settings(config)
    name, host = cli_actor()
    store = Store(settings.resolved_database_url(), keyring=load_keyring(settings))
    return store, Actor(name, host), load_secret(settings)


@app.command("export")
def export(
    subject: str = typer.Option(..., help="The request `user` value or a user id/name"),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write here (atomically) instead of stdout"),
    config: Path | None = CONFIG,
) -> None:
    """All data linked to a subject, as JSON (audited)."""
    from llmdock.privacy.gdpr import export_subject

    store, actor, secret = _context(config)
    text = json.dumps(export_subject(store, subject, actor, secret), indent=2, ensure_ascii=False)
    if out is None:
        typer.echo(text)
        return
    fd, tmp = tempfile.mkstemp(dir=out.parent if str(out.parent) else ".", prefix=f".{out.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, out)
    typer.echo(f"wrote {out}", err=True)


@app.command("erase")
def erase(
    subject: str | None = typer.Option(None, help="The request `user` value or a user id/name"),
    session: str | None = typer.Option(
        None,
        help="A conversation (x-llmdock-session): its memory turns and traces, not the subject's other data",
    ),
    team: str | None = typer.Option(
        None, help="With --session: the team (id or name) whose conversation it is"
    ),
    yes: bool = typer.Option(False, "--yes", help="Do not ask"),
    config: Path | None = CONFIG,
) -> None:
    """Delete a subject's traces, revoke its keys and anonymise its user record; or delete one conversation
    (audited)."""
    from llmdock.errors import InvalidRequest
    from llmdock.privacy.gdpr import erase_session, erase_subject

    if (subject is None) == (session is None):
        raise InvalidRequest("give exactly one of --subject and --session", where="data erase")
    if team is not None and session is None:
        raise InvalidRequest("--team goes with --session", where="data erase")
    what = f"subject {subject!r}" if subject is not None else f"conversation {session!r}"
    if not yes:
        typer.confirm(f"Erase all data of {what}? This cannot be undone", abort=True)
    store, actor, secret = _context(config)
    if subject is not None:
        typer.echo(json.dumps(erase_subject(store, subject, actor, secret)))
    else:
        typer.echo(json.dumps(erase_session(store, session or "", actor, secret, team)))


@app.command("purge")
def purge(
    older_than_days: int | None = typer.Option(
        None, min=1, help="Delete every trace older than this; default: the configured retention (rules too)"
    ),
    config: Path | None = CONFIG,
) -> None:
    """Apply a retention period now (the gateway does it on a schedule when retention is configured)."""
    from llmdock.store.retention import purge as apply_retention
    from llmdock.store.trace_policy import RetentionPolicy

    store, actor, _ = _context(config)
    if older_than_days is not None:
        policy = RetentionPolicy(older_than_days, ())
    else:
        policy = RetentionPolicy.from_settings(load_settings(config))
        if not policy.active:
            typer.echo("no retention configured (retention.traces_days, retention.rules): nothing to do")
            return
    typer.echo(f"deleted {apply_retention(store, policy, actor)} traces")
