"""The ``llmdock`` command. Errors print as one line (``where: message``) and exit with code 2."""

from __future__ import annotations

import importlib
import sys

import typer

from llmdock.errors import LlmdockError

# Every command as "module:attribute" under llmdock.cli, in the order of the help. A command's module is
# imported only when that command runs (all of them for the top-level help): the whole CLI takes ~0.9 s to
# import, one command's module ~0.35 s, and that start-up is paid by every `llmdock ...` call.
COMMANDS: dict[str, str] = {
    "serve": "serve:serve",
    "chat": "chat:chat",
    "models": "models:app",
    "prompts": "prompts:app",
    "traces": "traces:app",
    "secrets": "secrets_cmd:app",
    "guards": "guards:app",
    "usage": "usage:usage",
    "keys": "access:keys_app",
    "users": "access:users_app",
    "teams": "access:teams_app",
    "audit": "audit:app",
    "data": "data:app",
    "eval": "eval_cmd:app",
    "scan": "scan_cmd:app",
    "alerts": "alerts:app",
    "monitor": "monitor_cmd:app",
    "kb": "kb:app",
    "feedback": "feedback:app",
    "experiments": "experiments:app",
    "batch": "batch:app",
    "jobs": "jobs:app",
    "datasets": "datasets_cmd:app",
    "build": "build:build",
    "release": "release:app",
    "finetune": "finetune:app",
    "canary": "canary:app",
}
# Modules that add subcommands to another command's group: imported with it.
EXTENSIONS: dict[str, tuple[str, ...]] = {
    "eval": ("eval_gate", "eval_report"),
    "jobs": ("jobs_schedule",),
    "prompts": ("prompts_sync",),
}


def build_app(names: list[str] | None = None) -> typer.Typer:
    """The ``llmdock`` app with ``names`` (default: every command) registered."""
    root = typer.Typer(
        name="llmdock",
        help="LLMOps in one tool: an OpenAI-compatible gateway around one staged pipeline.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )
    root.callback()(_root)  # a group even with one command registered (typer would run a lone command bare)
    for name in names if names is not None else list(COMMANDS):
        module_name, attribute = COMMANDS[name].split(":")
        command = getattr(importlib.import_module(f"llmdock.cli.{module_name}"), attribute)
        for extension in EXTENSIONS.get(name, ()):
            importlib.import_module(f"llmdock.cli.{extension}")
        if isinstance(command, typer.Typer):
            root.add_typer(command, name=name)
        else:
            root.command(name)(command)
    return root


def _root() -> None:
    """LLMOps in one tool: an OpenAI-compatible gateway around one staged pipeline."""


def __getattr__(name: str) -> typer.Typer:
    """``app``: the whole CLI (tests drive it with typer's CliRunner)."""
    if name == "app":
        return build_app()
    raise AttributeError(name)


def _wanted(argv: list[str]) -> list[str] | None:
    """The one command ``argv`` runs, when it names a known one first; else None (help, or an unknown name)."""
    return [argv[0]] if argv and argv[0] in COMMANDS else None


def main() -> None:
    try:
        build_app(_wanted(sys.argv[1:]))()
    except LlmdockError as exc:
        print(f"llmdock: error: {exc.one_line()}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
