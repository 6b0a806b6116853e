"""The batch runner: rows read per line (malformed ones reported and kept as error rows), answered a bounded
number at once, recorded in the journal, assembled in input order exactly once."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from llmdock.config import load_settings
from llmdock.errors import ConfigError, Conflict
from llmdock.jobs.batch import RowAnswer, override, run_rows
from llmdock.jobs.batch_input import read_rows
from llmdock.jobs.batch_journal import ProgressJournal


class EchoRows:
    """Answers after a delay that shrinks with the row, so rows finish out of order; 'fail' rows get a 400."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.in_flight = self.most_in_flight = 0

    async def answer(self, url: str, body: dict[str, Any]) -> RowAnswer:
        text = body["messages"][-1]["content"]
        self.asked.append(text)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(0.001 * (10 - len(self.asked) % 10))
        self.in_flight -= 1
        if text == "fail":
            return RowAnswer(400, {"error": {"code": "guard_blocked", "message": "blocked"}})
        return RowAnswer(
            200, {"choices": [{"message": {"content": f"re: {text}"}}], "model": body.get("model")}
        )


def chat(text: str, **extra: Any) -> str:
    return json.dumps({"messages": [{"role": "user", "content": text}], **extra}) + "\n"


def write_input(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(chat(t) for t in texts))
    return path


def test_malformed_lines_are_reported_per_line_and_the_rest_is_read(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text(
        chat("a")
        + "{oops\n"
        + "\n"
        + '{"custom_id": "x", "url": "/v1/embeddings", "body": {}}\n'
        + '{"custom_id": "y", "method": "POST", "url": "/v1/chat/completions", "body": {"messages": []}}\n'
        + "[1, 2]\n"
        + '{"model": "m"}\n'
    )
    rows = list(read_rows(src, "in.jsonl"))
    assert [r.index for r in rows] == [0, 1, 2, 3, 4, 5]  # the blank line is no row
    assert rows[0].error is None
    assert rows[0].custom_id == "line-1"
    assert str(rows[1].error).startswith("in.jsonl:2: not valid JSON")
    assert (
        rows[2].error
        == "in.jsonl:4: url: '/v1/embeddings' is not supported (supported: /v1/chat/completions, /v1/completions)"
    )
    assert rows[3].error is None
    assert rows[3].custom_id == "y"
    assert rows[4].error == "in.jsonl:6: a line is a JSON object"
    assert str(rows[5].error).startswith("in.jsonl:7: messages:")


async def test_rows_come_out_in_input_order_with_errors_in_their_row(tmp_path: Path) -> None:
    texts = [f"q{i}" for i in range(30)]
    texts[4] = "fail"
    src = write_input(tmp_path / "in.jsonl", texts)
    src.write_text(src.read_text() + "not json\n")
    journal = ProgressJournal(tmp_path / "out.progress", "fp")
    journal.open()
    answerer = EchoRows()
    counts = await run_rows(read_rows(src), answerer, journal, batch_id="b", concurrency=4)
    journal.close()
    assert (counts.total, counts.completed, counts.failed) == (31, 29, 2)
    assert answerer.most_in_flight == 4
    out = tmp_path / "out.jsonl"
    assert journal.assemble(31, out) == (29, 2)
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["custom_id"] for x in lines] == [f"line-{i}" for i in range(1, 32)]
    assert lines[0]["response"]["body"]["choices"][0]["message"]["content"] == "re: q0"
    assert lines[4]["error"] == {"code": "guard_blocked", "message": "blocked"}
    assert lines[4]["response"]["status_code"] == 400
    assert lines[30]["response"] is None
    assert lines[30]["error"]["code"] == "invalid_line"


async def test_a_resumed_batch_answers_only_the_rows_not_done_and_duplicates_none(tmp_path: Path) -> None:
    texts = [f"q{i}" for i in range(20)]
    src = write_input(tmp_path / "in.jsonl", texts)
    path = tmp_path / "out.progress"
    first = ProgressJournal(path, "fp")
    first.open()
    stop_after = 7
    await run_rows(
        read_rows(src),
        EchoRows(),
        first,
        batch_id="b",
        concurrency=1,
        stopping=lambda: len(first.done) >= stop_after,
    )
    first.close()
    # a crash mid-write leaves a torn last line, and a second writer (a lease taken over) recorded row 0 again
    with path.open("ab") as fh:
        fh.write(b'0\t1\t{"custom_id":"line-1","dup":true}\n3\t1\t{"torn')
    again = ProgressJournal(path, "fp")
    assert again.open() == set(range(stop_after))
    answerer = EchoRows()
    await run_rows(read_rows(src), answerer, again, batch_id="b", concurrency=3)
    again.close()
    assert sorted(answerer.asked) == sorted(texts[stop_after:])  # nothing done is asked again
    out = tmp_path / "out.jsonl"
    again.assemble(20, out)
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["custom_id"] for x in lines] == [f"line-{i}" for i in range(1, 21)]
    assert "dup" not in lines[0]


def test_a_journal_of_another_input_is_refused_not_mixed_in(tmp_path: Path) -> None:
    path = tmp_path / "out.progress"
    ProgressJournal(path, "input-a").open()
    with pytest.raises(Conflict, match="another input"):
        ProgressJournal(path, "input-b").open()


def test_output_is_not_written_while_rows_are_missing(tmp_path: Path) -> None:
    journal = ProgressJournal(tmp_path / "p", "fp")
    journal.open()
    journal.record(0, True, b"{}")
    with pytest.raises(Conflict, match="1 rows are not done yet"):
        journal.assemble(2, tmp_path / "out.jsonl")
    assert not (tmp_path / "out.jsonl").exists()


def test_model_and_prompt_options_apply_to_every_row() -> None:
    body = {"model": "a", "messages": []}
    assert override(body, None, None) is body
    assert override(body, "b", "greet@production") == {
        "model": "b",
        "messages": [],
        "prompt_id": "greet",
        "prompt_version": None,
        "prompt_label": "production",
    }
    assert override(body, None, "greet/3")["prompt_version"] == 3


def test_a_batch_lease_under_a_second_is_refused_naming_file_line_and_field(tmp_path: Path) -> None:
    cfg = tmp_path / "llmdock.yaml"
    cfg.write_text("batch:\n  lease_s: 3\n")
    assert load_settings(cfg).batch.lease_s == 3
    cfg.write_text("batch:\n  lease_s: 0.2\n")
    with pytest.raises(ConfigError, match="greater than or equal to 1") as info:
        load_settings(cfg)
    assert info.value.where == f"{cfg}:2: batch.lease_s"
