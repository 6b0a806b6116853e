"""``llmdock prompts diff`` and ``llmdock prompts sync``: templates reviewed and shipped like code.

``sync DIR`` reads every ``*.yaml`` / ``*.yml`` / ``*.json`` template file under DIR (the name is the file's
``name`` field, else its stem), checks them all, then saves each changed one as the next version. Unchanged
files do nothing; stored templates without a file are kept (a sync never deletes a version); ``--dry-run``
prints the plan only. A bad file stops the sync before anything is written, naming file, line and field.
"""

from __future__ import annotations

from pathlib import Path

import typer

from llmdock.cli.access import who
from llmdock.cli.options import CONFIG
from llmdock.cli.prompts import _registry, app, at_line, load_template_file
from llmdock.errors import ConfigError, InvalidRequest

PATTERNS = ("*.yaml", "*.yml", "*.json")


@app.command("diff")
def diff(
    name: str,
    v1: int = typer.Argument(..., help="from this version"),
    v2: int = typer.Argument(..., help="to this version"),
    config: Path | None = CONFIG,
) -> None:
    """A unified diff of two versions: messages (or text) and config."""
    from llmdock.prompts.sync import version_diff

    registry = _registry(config)
    text = version_diff(registry.get(name, version=v1), registry.get(name, version=v2))
    typer.echo(text or f"{name}: versions {v1} and {v2} are the same")


def _files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise ConfigError("not a directory", where=str(directory))
    return sorted({p for pattern in PATTERNS for p in directory.rglob(pattern) if p.is_file()})


@app.command("sync")
def sync(
    directory: Path = typer.Argument(
        ..., help="directory of template files (e.g. prompts/ in a git repository)"
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the plan, change nothing"),
    config: Path | None = CONFIG,
) -> None:
    """Make the registry follow a directory of template files (new content = the next version)."""
    from llmdock.prompts.sync import TemplateFile, apply, kept, step_for

    registry = _registry(config)
    planned = []
    names: dict[str, Path] = {}
    for path in _files(directory):
        data, where = load_template_file(path)
        name = str(data.get("name") or path.stem)
        if name in names:
            raise ConfigError(
                f"template {name!r} is also in {names[name]}", where=where(("name",)) or str(path)
            )
        names[name] = path
        kind = "chat" if "messages" in data else "text"
        f = TemplateFile(
            str(path), name, kind, data.get("messages", data.get("text")),
            dict(data.get("config") or {}), str(data.get("message", "")),
        )  # fmt: skip
        try:
            planned.append((f, step_for(registry, f)))
        except InvalidRequest as exc:
            raise at_line(exc, where, path) from None
    actor = who()
    for f, step in planned:
        version = step.version
        if step.action != "unchanged" and not dry_run:
            version = apply(registry, f, actor)
        after = f" -> version {version}" if step.action != "unchanged" and not dry_run else ""
        typer.echo(f"{step.name}: {step.action}{after} ({f.path})")
    for step in kept(registry, set(names)):
        typer.echo(f"{step.name}: {step.action}, latest version {step.version}")
    if dry_run:
        typer.echo("dry run: nothing changed")
