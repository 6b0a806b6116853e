"""``llmdock keys|users|teams``: access control from the command line (direct access to the store).

The CLI acts as an administrator (it can open the store); each change is audited as ``cli:<os user>``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from llmdock.auth.keys import Directory, load_secret
from llmdock.cli.options import AS_JSON, CONFIG
from llmdock.config import load_settings
from llmdock.store.access_views import key_view, team_view, user_view
from llmdock.store.audit import Actor

keys_app = typer.Typer(help="Create, list, revoke and rotate API keys.", no_args_is_help=True)
users_app = typer.Typer(help="Users and service accounts.", no_args_is_help=True)
teams_app = typer.Typer(help="Teams and their limits.", no_args_is_help=True)


def _directory(config: Path | None) -> Directory:
    from llmdock.store import Store

    settings = load_settings(config)
    return Directory(Store(settings.resolved_database_url()), load_secret(settings))


def who() -> Actor:
    from llmdock.store.audit import cli_actor

    name, host = cli_actor()
    return Actor(name, host)


def _csv(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def _table(rows: list[dict[str, Any]], columns: list[str], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    table = Table(*columns)
    for row in rows:
        table.add_row(*("-" if row.get(c) is None else str(row.get(c)) for c in columns))
    Console().print(table)


@keys_app.command("create")
def keys_create(
    user: str = typer.Option(..., "--user", "-u", help="Owner (created if missing, with --role)"),
    role: str = typer.Option("developer", help="Role for a new user: admin, developer, viewer or service"),
    service: bool = typer.Option(False, "--service", help="A new owner is a service account"),
    team: str | None = typer.Option(None, help="Team of a new owner"),
    name: str = typer.Option("", help="A label for the key"),
    models: str | None = typer.Option(None, help="Allowed models, comma-separated (globs allowed)"),
    routes: str | None = typer.Option(None, help="Allowed route kinds: read,inference,observe,admin"),
    prompts: str | None = typer.Option(
        None, help="Allowed prompt templates, comma-separated (globs); the key may then send only these"
    ),
    rpm: int | None = typer.Option(None, help="Requests per minute"),
    tpm: int | None = typer.Option(None, help="Tokens per minute"),
    budget: float | None = typer.Option(None, help="Spend budget per period"),
    period: str = typer.Option("month", help="Budget period: day or month"),
    expires_in_days: float | None = typer.Option(None, help="Expiry"),
    config: Path | None = CONFIG,
) -> None:
    """Create a key and print it — once; only its hash is stored."""
    from llmdock.errors import NotFound

    d, actor = _directory(config), who()
    try:
        d.user(user)
    except NotFound:
        d.create_user(user, actor, role=role, kind="service" if service else "user", team=team)
    expires = datetime.now(UTC) + timedelta(days=expires_in_days) if expires_in_days else None
    clear, key = d.create_key(
        user,
        actor,
        name=name,
        models=_csv(models),
        routes=_csv(routes),
        prompts=_csv(prompts),
        rpm=rpm,
        tpm=tpm,
        budget=budget,
        budget_period=period,
        expires_at=expires,
    )
    typer.echo(clear)
    typer.echo(f"key {key.prefix} ({key.id}) for {user}: store it now, it is not shown again", err=True)


@keys_app.command("list")
def keys_list(
    user: str | None = typer.Option(None, help="Only this user's keys"),
    as_json: bool = AS_JSON,
    config: Path | None = CONFIG,
) -> None:
    """Keys with their state (active, expired, revoked) — never the keys themselves."""
    rows = [key_view(k, u) for k, u in _directory(config).keys(user)]
    _table(
        rows,
        ["prefix", "id", "user", "role", "state", "models", "routes", "rpm", "tpm", "budget", "expires_at"],
        as_json,
    )


@keys_app.command("revoke")
def keys_revoke(
    ref: str = typer.Argument(..., help="Key id or prefix"), config: Path | None = CONFIG
) -> None:
    """Revoke a key (running gateways stop accepting it within auth.cache_ttl_s)."""
    key = _directory(config).revoke(ref, who())
    typer.echo(f"revoked {key.prefix} ({key.id})")


@keys_app.command("rotate")
def keys_rotate(
    ref: str = typer.Argument(..., help="Key id or prefix"), config: Path | None = CONFIG
) -> None:
    """Replace a key by a new one with the same owner, scopes and limits; the old one is revoked."""
    clear, key = _directory(config).rotate(ref, who())
    typer.echo(clear)
    typer.echo(
        f"new key {key.prefix} ({key.id}) replaces {key.rotated_from}; the old key is revoked", err=True
    )


@users_app.command("create")
def users_create(
    name: str,
    role: str = typer.Option("developer"),
    service: bool = typer.Option(False, "--service"),
    team: str | None = typer.Option(None),
    org: str = typer.Option("default"),
    config: Path | None = CONFIG,
) -> None:
    """Create a user (or, with --service, a service account)."""
    user = _directory(config).create_user(
        name, who(), role=role, kind="service" if service else "user", team=team, org=org
    )
    typer.echo(f"{user.id} {user.name} ({user.role})")


@users_app.command("list")
def users_list(as_json: bool = AS_JSON, config: Path | None = CONFIG) -> None:
    rows = [user_view(u) for u in _directory(config).users()]
    _table(rows, ["id", "name", "kind", "role", "team_id", "created_at"], as_json)


@teams_app.command("create")
def teams_create(
    name: str,
    rpm: int | None = typer.Option(None),
    tpm: int | None = typer.Option(None),
    budget: float | None = typer.Option(None),
    period: str = typer.Option("month"),
    org: str = typer.Option("default"),
    config: Path | None = CONFIG,
) -> None:
    """Create a team; its limits apply to all its members' keys together."""
    team = _directory(config).create_team(
        name, who(), org=org, rpm=rpm, tpm=tpm, budget=budget, budget_period=period
    )
    typer.echo(f"{team.id} {team.name}")


@teams_app.command("list")
def teams_list(as_json: bool = AS_JSON, config: Path | None = CONFIG) -> None:
    rows = [team_view(t) for t in _directory(config).teams()]
    _table(rows, ["id", "name", "rpm", "tpm", "budget", "budget_period"], as_json)
