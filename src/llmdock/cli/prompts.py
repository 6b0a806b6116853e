"""``llmdock prompts``: the prompt template registry from the command line (direct access to the store).

A template file (YAML or JSON) holds ``messages`` (a chat template) or ``text`` (a completion template),
optional ``config`` (model and sampling defaults), ``name`` and ``message`` (a note on the change)::

    name: support
    messages:
      - {role: system, content: "You answer questions about {{ product }} in one short paragraph."}
      - {role: user, content: "{{ question }}"}
    config: {model: smollm2, temperature: 0.2, max_tokens: 200}

Errors name the file, line and field. Every change is audited as ``cli:<os user>``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from llmdock.cli.access import who
from llmdock.cli.options import AS_JSON, CONFIG
from llmdock.cli.registry_views import add_label_commands, as_text, print_rows, print_summary
from llmdock.config import load_settings, load_yaml_file
from llmdock.errors import ConfigError, InvalidRequest

app = typer.Typer(help="Prompt templates: versions, labels, promotion.", no_args_is_help=True)
FILE_KEYS = {"name", "messages", "text", "config", "message"}


def _registry(config: Path | None) -> Any:
    from llmdock.prompts import PromptRegistry
    from llmdock.store import Store

    return PromptRegistry(Store(load_settings(config).resolved_database_url()))


def parse_vars(pairs: list[str]) -> dict[str, Any]:
    """``k=v`` pairs; a value that parses as JSON is taken as such (numbers, lists), else as text."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidRequest(f"{pair!r}: give key=value", param="var")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def load_template_file(path: Path) -> tuple[dict[str, Any], Any]:
    """The file's fields, and a function naming ``file:line: field`` for error messages."""
    data, where = load_yaml_file(path)
    unknown = sorted(set(data) - FILE_KEYS)
    if unknown:
        raise ConfigError(
            f"unknown field (known: {', '.join(sorted(FILE_KEYS))})", where=where((unknown[0],))
        )
    if ("messages" in data) == ("text" in data):
        raise ConfigError(
            "give either 'messages' (chat) or 'text' (completion)", where=where(()) or str(path)
        )
    return data, where


def at_line(exc: InvalidRequest, where: Any, file: Path) -> ConfigError:
    """A template error as ``file:line: field: message``: the line of the field at fault."""
    loc = tuple(int(p) if p.isdigit() else p for p in (exc.param or "").split(".") if p)
    return ConfigError(exc.message, where=where(loc) if loc else str(file))


@app.command("push")
def push(
    file: Path = typer.Argument(..., help="template file (YAML or JSON)"),
    name: str | None = typer.Option(None, help="template name (default: the file's 'name')"),
    label: list[str] = typer.Option([], "--label", "-l", help="labels to point at the new version"),
    config: Path | None = CONFIG,
) -> None:
    """Save a template file as the next version (nothing new when it equals the latest)."""
    data, where = load_template_file(file)
    name = name or data.get("name")
    if not name:
        raise ConfigError("no template name: give --name or a 'name' field", where=str(file))
    registry, actor = _registry(config), who()
    kind = "chat" if "messages" in data else "text"
    try:
        row, new = registry.create(
            str(name),
            actor,
            kind=kind,
            template=data.get("messages", data.get("text")),
            config=data.get("config") or {},
            message=str(data.get("message", "")),
        )
    except InvalidRequest as exc:
        raise at_line(exc, where, file) from None
    for lab in label:
        registry.labels.set(row.name, lab, row.version, actor)
    state = "new version" if new else "unchanged, still version"
    typer.echo(f"{row.name}: {state} {row.version}" + (f" → {', '.join(label)}" if label else ""))


@app.command("list")
def list_cmd(as_json: bool = AS_JSON, config: Path | None = CONFIG) -> None:
    """Every template with its latest version and labels."""
    print_summary(_registry(config), as_json, "labels")


@app.command("versions")
def versions(name: str, as_json: bool = AS_JSON, config: Path | None = CONFIG) -> None:
    """The versions of one template, with their labels."""

    registry = _registry(config)
    rows = registry.described(name)
    columns = {
        "version": lambda r: r["version"],
        "labels": lambda r: as_text(r["labels"]),
        "kind": lambda r: r["kind"],
        "variables": lambda r: as_text(r["variables"]),
        "config": lambda r: as_text(r["config"]),
        "message": lambda r: as_text(r["message"]),
        "by": lambda r: r["created_by"],
        "at": lambda r: r["created_at"][:19],
    }
    print_rows(rows, as_json, columns)


@app.command("show")
def show(
    name: str,
    version: int | None = typer.Option(None, "--version", "-v"),
    label: str | None = typer.Option(None, "--label", "-l"),
    config: Path | None = CONFIG,
) -> None:
    """One version as JSON (default: the one labelled production, else the latest)."""

    registry = _registry(config)
    row = registry.get(name, version=version, label=label)
    typer.echo(json.dumps(registry.described_one(row), indent=2))


@app.command("render")
def render_cmd(
    name: str,
    var: list[str] = typer.Option([], "--var", help="key=value (JSON values allowed)"),
    version: int | None = typer.Option(None, "--version", "-v"),
    label: str | None = typer.Option(None, "--label", "-l"),
    config: Path | None = CONFIG,
) -> None:
    """Print a version rendered with the given variables, as the gateway would render it."""
    from llmdock.prompts import render

    row = _registry(config).get(name, version=version, label=label)
    out = render(row.kind, row.template, parse_vars(var), f"{row.name}/{row.version}")
    typer.echo(out if isinstance(out, str) else json.dumps(out, indent=2, ensure_ascii=False))


add_label_commands(app, _registry, kind="prompt", word="label", flags=("--label", "-l"))
