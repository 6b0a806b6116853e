"""The ``llmdock`` command. Errors print as one line (``where: message``) and exit with code 2."""

from __future__ import annotations

import sys
from collections.abc import Callable

import typer

from llmdock.cli import (
    access,
    alerts,
    audit,
    batch,
    build,
    canary,
    chat,
    data,
    datasets_cmd,
    eval_cmd,
    eval_gate,  # noqa: F401 (adds compare and gate to `llmdock eval`)
    eval_report,  # noqa: F401 (adds report to `llmdock eval`)
    experiments,
    feedback,
    finetune,
    guards,
    jobs,
    jobs_schedule,  # noqa: F401 (adds schedule, schedules, unschedule and scheduler to `llmdock jobs`)
    kb,
    models,
    monitor_cmd,
    prompts,
    prompts_sync,  # noqa: F401 (adds diff and sync to `llmdock prompts`)
    release,
    scan_cmd,
    secrets_cmd,
    serve,
    traces,
    usage,
)
from llmdock.errors import LlmdockError

app = typer.Typer(
    name="llmdock",
    help="LLMOps in one tool: an OpenAI-compatible gateway around one staged pipeline.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
COMMANDS: dict[str, typer.Typer | Callable[..., None]] = {  # in the order of the help
    "serve": serve.serve,
    "chat": chat.chat,
    "models": models.app,
    "prompts": prompts.app,
    "traces": traces.app,
    "secrets": secrets_cmd.app,
    "guards": guards.app,
    "usage": usage.usage,
    "keys": access.keys_app,
    "users": access.users_app,
    "teams": access.teams_app,
    "audit": audit.app,
    "data": data.app,
    "eval": eval_cmd.app,
    "scan": scan_cmd.app,
    "alerts": alerts.app,
    "monitor": monitor_cmd.app,
    "kb": kb.app,
    "feedback": feedback.app,
    "experiments": experiments.app,
    "batch": batch.app,
    "jobs": jobs.app,
    "datasets": datasets_cmd.app,
    "build": build.build,
    "release": release.app,
    "finetune": finetune.app,
    "canary": canary.app,
}
for name, command in COMMANDS.items():
    if isinstance(command, typer.Typer):
        app.add_typer(command, name=name)
    else:
        app.command(name)(command)


def main() -> None:
    try:
        app()
    except LlmdockError as exc:
        print(f"llmdock: error: {exc.one_line()}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
