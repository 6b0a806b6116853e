"""``llmdock feedback``: scores, comments and corrections on traces; exported as a chat dataset.

The CLI opens the store directly (like ``llmdock traces``), so it sees every team's traces; text is redacted
and sealed with the configured privacy settings, as the gateway does, and every addition is audited.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from llmdock.cli.access import who
from llmdock.cli.options import AS_JSON, CONFIG
from llmdock.cli.registry_views import as_text, print_rows

app = typer.Typer(help="Feedback on traces: scores, comments, corrections.", no_args_is_help=True)


def _book(config: Path | None) -> Any:
    from llmdock.config import load_settings
    from llmdock.feedback import FeedbackBook
    from llmdock.privacy.privacy_policy import PrivacyPolicy
    from llmdock.store import Store

    settings = load_settings(config)
    privacy = PrivacyPolicy(settings)
    return FeedbackBook(Store(settings.resolved_database_url(), keyring=privacy.keyring), privacy)


def _named(score: str | None) -> dict[str, Any]:
    if score is None:
        return {}
    name, sep, value = score.partition("=")
    if not sep:
        from llmdock.errors import InvalidRequest

        raise InvalidRequest(f"--score {score!r}: give name=value (e.g. helpfulness=0.8)", param="score")
    try:
        return {"name": name, "value": float(value)}
    except ValueError:
        return {"name": name, "value": value}  # refused by the check with the field named


@app.command("add")
def add(
    trace_id: str = typer.Argument(..., help="trace id (or a unique prefix, as `llmdock traces list` shows)"),
    thumbs: str | None = typer.Option(None, help="up or down"),
    rating: int | None = typer.Option(None, help="1 to 5"),
    score: str | None = typer.Option(None, help="a named numeric score: name=value"),
    comment: str = typer.Option("", help="free text"),
    correction: str = typer.Option("", help="the answer that was wanted"),
    source: str = typer.Option("reviewer", help="user, reviewer or evaluator"),
    config: Path | None = CONFIG,
) -> None:
    """Attach a score, comment or correction to a trace (audited)."""
    from llmdock.feedback import Scope, check_feedback
    from llmdock.store import get_trace

    fields = {"thumbs": thumbs, "rating": rating, **_named(score)}
    data = {k: v for k, v in fields.items() if v is not None}
    data |= {"trace_id": trace_id, "comment": comment, "correction": correction, "source": source}
    item = check_feedback(data)  # before the store: a bad score never half-creates anything
    book = _book(config)
    trace, _ = get_trace(book.store, trace_id)
    stored = book.add(item.model_copy(update={"trace_id": trace.id}), who(), Scope(None))
    typer.echo(
        f"feedback {stored['id'][:12]} on trace {trace.id[:12]}: {stored['name'] or 'comment'}"
        + (f"={stored['value']:g}" if stored["value"] is not None else "")
    )


@app.command("list")
def list_cmd(
    trace_id: str | None = typer.Option(None, "--trace", help="only this trace (full id)"),
    limit: int = typer.Option(50, "--limit", "-n", help="how many, newest first"),
    as_json: bool = AS_JSON,
    config: Path | None = CONFIG,
) -> None:
    """The newest feedback."""
    from llmdock.feedback import Scope

    book = _book(config)
    rows = book.views(book.rows(Scope(None), trace_id=trace_id, limit=limit))
    columns = {
        "id": lambda r: r["id"][:12],
        "time (UTC)": lambda r: r["created_at"][:19].replace("T", " "),
        "trace": lambda r: r["trace_id"][:12],
        "score": lambda r: f"{r['name']}={r['value']:g}" if r["value"] is not None else "-",
        "source": lambda r: r["source"],
        "comment": lambda r: as_text(r["comment"][:40]),
        "correction": lambda r: "yes" if r["correction"] else "-",
    }
    print_rows(rows, as_json, columns)


@app.command("export")
def export(
    to_dataset: Path = typer.Option(..., "--to-dataset", help="chat JSONL file to write"),
    min_rating: int = typer.Option(4, min=1, max=5, help="ratings from here up count as good answers"),
    config: Path | None = CONFIG,
) -> None:
    """Corrections, and answers rated good, as chat JSONL for fine-tuning and evaluation suites."""
    import json

    from llmdock.cli.eval_cmd import write_atomic
    from llmdock.feedback import chat_dataset

    found = chat_dataset(_book(config).store, min_rating=min_rating)
    write_atomic(to_dataset, "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in found.lines))
    skipped = f", {found.skipped_no_body} skipped (trace without bodies)" if found.skipped_no_body else ""
    typer.echo(
        f"wrote {len(found.lines)} conversations to {to_dataset}: {found.corrections} corrections, "
        f"{found.good_answers} good answers{skipped}"
    )
