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
from llmdock.errors import InvalidRequest

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
    to_dataset: str | None = typer.Option(
        None, "--to-dataset", help="a dataset to add a version to (llmdock datasets show NAME)"
    ),
    to_file: Path | None = typer.Option(None, "--to-file", help="or a chat JSONL file to write"),
    min_rating: int = typer.Option(4, min=1, max=5, help="ratings from here up count as good answers"),
    as_json: bool = AS_JSON,
    config: Path | None = CONFIG,
) -> None:
    """Corrections, and answers rated good, as a chat dataset (a new version of NAME, with its lineage) or a
    chat JSONL file, for fine-tuning and evaluation suites."""
    import json

    from llmdock.feedback import chat_dataset

    if (to_dataset is None) == (to_file is None):
        raise InvalidRequest("give --to-dataset NAME or --to-file PATH", param="to_dataset")
    book = _book(config)
    found = chat_dataset(book.store, min_rating=min_rating)
    skipped = f", {found.skipped_no_body} skipped (trace without bodies)" if found.skipped_no_body else ""
    what = f"{len(found.lines)} conversations: {found.corrections} corrections, {found.good_answers} good answers"
    if to_file is not None:
        from llmdock.cli.eval_cmd import write_atomic

        write_atomic(to_file, "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in found.lines))
        typer.echo(f"wrote {what}{skipped} to {to_file}")
        return
    assert to_dataset is not None
    _save_dataset(to_dataset, found, min_rating, as_json, book.store, config)


def _save_dataset(
    name: str, found: Any, min_rating: int, as_json: bool, store: Any, config: Path | None
) -> None:
    """The exported conversations as the next version of dataset ``name`` (rows validated like an import)."""
    from llmdock.cli.datasets_cmd import print_saved
    from llmdock.config import load_settings
    from llmdock.datasets.importing import Report
    from llmdock.datasets.rows import RowError, validate
    from llmdock.datasets.versions import Datasets

    report, rows = Report(read=len(found.lines)), []
    for line in found.lines:
        try:
            rows.append(validate({"messages": line["messages"], "meta": line["metadata"]}))
        except RowError as exc:
            report.drop(exc.reason, exc.at(f"trace {line['metadata']['trace_id']}"))
    report.kept = len(rows)
    if not rows:
        raise InvalidRequest(
            f"no corrections or good answers to export ({found.skipped_no_body} traces without bodies): "
            "nothing stored",
            param="to_dataset",
        )
    source = {"feedback": {"min_rating": min_rating, "corrections": found.corrections,
                           "good_answers": found.good_answers, "skipped_no_body": found.skipped_no_body}}  # fmt: skip
    step = {"step": "import", "params": {"min_rating": min_rating}, **report.as_dict()}
    version, new = Datasets(store, load_settings(config).home).save(
        name, rows, who(), lineage={"sources": [source], "steps": [step]}, report=report.as_dict(),
        description="corrections and good answers from feedback",
    )  # fmt: skip
    print_saved(version, new, report.as_dict(), as_json)
