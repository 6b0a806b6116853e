"""The ``llmdock`` command. Errors print as one line (``where: message``) and exit with code 2."""

from __future__ import annotations

import sys

import typer

from llmdock.cli import access, audit, chat, data, guards, models, prompts, secrets_cmd, serve, traces, usage
from llmdock.errors import LlmdockError

app = typer.Typer(
    name="llmdock",
    help="LLMOps in one tool: an OpenAI-compatible gateway around one staged pipeline.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("serve")(serve.serve)
app.command("chat")(chat.chat)
app.add_typer(models.app, name="models")
app.add_typer(prompts.app, name="prompts")
app.add_typer(traces.app, name="traces")
app.add_typer(secrets_cmd.app, name="secrets")
app.add_typer(guards.app, name="guards")
app.command("usage")(usage.usage)
app.add_typer(access.keys_app, name="keys")
app.add_typer(access.users_app, name="users")
app.add_typer(access.teams_app, name="teams")
app.add_typer(audit.app, name="audit")
app.add_typer(data.app, name="data")


def main() -> None:
    try:
        app()
    except LlmdockError as exc:
        print(f"llmdock: error: {exc.one_line()}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
