"""Importing files as dataset versions: every bad row named by file:line: field, versions by content hash,
export and re-import round trips, and a kill -9 during import leaves no half-written version."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmdock.cli.main import app
from llmdock.datasets.importing import load_file
from llmdock.datasets.versions import Datasets, file_sha256
from llmdock.errors import InvalidRequest, ValidationError
from llmdock.registry import artifacts
from llmdock.store import Store

GOOD = {
    "messages": [
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
    ]
}
BAD_LINES = [
    (
        b'{"messages": [{"role": "user", "content": "Hi"}, {"role": "user", "content": "again"}]}',
        "messages[1].role",
    ),
    (b'{"messages": []}', "messages: is empty"),
    (
        b'{"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "x"}]}',
        "must be a string",
    ),
    (
        b'{"messages": [{"role": "user"}, {"role": "assistant", "content": "x"}]}',
        "messages[0].content: is missing",
    ),
    (b'{"messages": [{"role": "user", "content": "  "}, {"role": "assistant", "content": "x"}]}', "is empty"),
    (b"not json", "row: invalid JSON"),
    (b'["a list"]', "row: must be an object"),
    (b'{"prompt": "no completion"}', "completion: is missing"),
    (b'{"text": "neither shape"}', "needs `messages`"),
    (
        b'{"messages": [{"role": "user", "content": "bad \xff"}, {"role": "assistant", "content": "x"}]}',
        "not UTF-8",
    ),
    (b'{"messages": [{"role": "wizard", "content": "x"}]}', "messages[0].role: 'wizard' is not one of"),
]


def _write_jsonl(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_each_bad_row_is_reported_by_line_and_field(tmp_path: Path) -> None:
    lines = [json.dumps(GOOD).encode()] + [line for line, _ in BAD_LINES]
    rows, report, source = load_file(_write_jsonl(tmp_path / "mixed.jsonl", lines))
    assert len(rows) == 1
    assert report.kept == 1
    assert report.read == 1 + len(BAD_LINES)
    assert sum(report.dropped.values()) == len(BAD_LINES)
    for i, (_, expected) in enumerate(BAD_LINES, start=2):
        error = report.errors[i - 2]
        assert error.startswith(f"{tmp_path / 'mixed.jsonl'}:{i}: "), error
        assert expected in error, error
    assert source["sha256"] == file_sha256(tmp_path / "mixed.jsonl")
    assert source["format"] == "jsonl"


def test_on_error_stop_fails_at_the_first_bad_row(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "d.jsonl", [json.dumps(GOOD).encode(), BAD_LINES[0][0]])
    with pytest.raises(ValidationError) as err:
        load_file(path, on_error="stop")
    assert err.value.one_line() == f"{path}:2: messages[1].role: 'user' out of order: expected 'assistant'"


def test_prompt_completion_rows_become_chat_and_other_columns_meta(tmp_path: Path) -> None:
    line = json.dumps({"prompt": "2+2?", "completion": "4", "system": "Be terse.", "age": 41}).encode()
    rows, _, _ = load_file(_write_jsonl(tmp_path / "pc.jsonl", [line]))
    assert [m["role"] for m in rows[0]["messages"]] == ["system", "user", "assistant"]
    assert rows[0]["meta"] == {"age": 41}


def test_csv_reports_undecodable_cells_and_extra_cells(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes(b"prompt,completion,zip\nhello,world,12345\nbad \xfe,x,1\na,b,c,d\n")
    rows, report, _ = load_file(path)
    assert [r["meta"] for r in rows] == [{"zip": "12345"}]
    assert report.errors == [
        f"{path}:3: prompt: holds bytes that are not UTF-8",
        f"{path}:4: row: has more cells than the header",
    ]


def test_versions_are_content_addressed_and_round_trip_through_every_format(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMDOCK_HOME", str(tmp_path / "home"))
    src = tmp_path / "chat.jsonl"
    other = {"prompt": "Bonjour?", "completion": "Hello.", "age": 30}
    src.write_text(json.dumps(GOOD | {"age": 34, "zip": "75001"}) + "\n" + json.dumps(other) + "\n")
    runner = CliRunner()
    first = runner.invoke(app, ["datasets", "import", str(src), "--name", "demo", "--json"])
    assert first.exit_code == 0, first.output
    v1 = json.loads(first.output)
    assert v1["version"] == 1
    assert v1["rows"] == 2
    assert v1["new"]
    assert v1["lineage"]["sources"][0]["sha256"] == file_sha256(src)
    again = json.loads(
        runner.invoke(app, ["datasets", "import", str(src), "--name", "demo", "--json"]).output
    )
    assert again["version"] == 1
    assert not again["new"]
    for fmt in ("parquet", "csv", "jsonl"):
        out = tmp_path / f"out.{fmt}"
        assert runner.invoke(app, ["datasets", "export", "demo", str(out)]).exit_code == 0
        back = runner.invoke(app, ["datasets", "import", str(out), "--name", f"back-{fmt}", "--json"])
        digest = json.loads(back.output)["digest"]
        if fmt == "csv":  # CSV has no types: the age comes back as the text "34"
            assert digest != v1["digest"]
        else:
            assert digest == v1["digest"], fmt
    home = tmp_path / "home"
    assert artifacts.verify(home, v1["digest"])
    listed = json.loads(runner.invoke(app, ["datasets", "list", "--json"]).output)
    assert [d["name"] for d in listed] == ["back-csv", "back-jsonl", "back-parquet", "demo"]


def _kill_when(cmd: list[str], env: dict[str, str], appeared: Callable[[], bool]) -> bool:
    """Start ``cmd``, kill -9 it as soon as ``appeared()``; whether it was killed before it finished."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        if appeared():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.002)
    proc.wait()
    return False


def test_a_kill_during_import_leaves_no_half_written_version(tmp_path: Path) -> None:
    """kill -9 while the rows file is being written, then while it is copied under its digest: no version
    is recorded and no file under the artifacts directory has a digest name it does not match; the next
    import stores a complete version."""
    home = tmp_path / "home"
    big = tmp_path / "big.jsonl"
    big.write_text((json.dumps(GOOD) + "\n") * 40_000)
    env = dict(os.environ, LLMDOCK_HOME=str(home))
    cmd = [sys.executable, "-m", "llmdock", "datasets", "import", str(big), "--name", "big"]
    staging, stored = home / "tmp", artifacts.artifacts_dir(home)
    assert _kill_when(cmd, env, lambda: staging.exists() and any(staging.iterdir()))  # writing the rows
    assert _kill_when(cmd, env, lambda: stored.exists() and any(stored.glob(".incoming-*")))  # storing them
    store = Store(f"sqlite:///{home / 'llmdock.db'}")
    try:
        datasets = Datasets(store, home)
        assert datasets.names() == []
        for f in stored.glob("[0-9a-f]*"):
            assert artifacts.verify(home, f.name), f
        assert subprocess.run(cmd, env=env, capture_output=True, timeout=300).returncode == 0
        [version] = datasets.versions("big")
        assert artifacts.verify(home, version.digest)
        assert sum(1 for _ in datasets.rows(version)) == version.rows == 40_000
    finally:
        store.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["import", "{tmp}/missing.jsonl", "--name", "a"], "no file '{tmp}/missing.jsonl'"),
        (["import", "{tmp}/fake.parquet", "--name", "a"], "{tmp}/fake.parquet: not a Parquet file"),
        (
            ["import", "{tmp}/random.jsonl", "--name", "a"],
            "{tmp}/random.jsonl: no valid rows (3 read): nothing stored",
        ),
        (["show", "nothing/3"], "no dataset 'nothing' (llmdock datasets list)"),
    ],
)
def test_bad_input_ends_in_one_line_and_exit_code_2_never_a_traceback(
    tmp_path: Path, args: list[str], message: str
) -> None:
    (tmp_path / "fake.parquet").write_text("a,b\n1,2\n")
    (tmp_path / "random.jsonl").write_bytes(b"\xff\xfe\x00garbage\n\x80\n{]\n")
    env = dict(os.environ, LLMDOCK_HOME=str(tmp_path / "home"))
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    done = subprocess.run(
        [sys.executable, "-m", "llmdock", "datasets", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines()[-1].startswith(
        "llmdock: error: " + message.replace("{tmp}", str(tmp_path))
    )


def test_a_failed_export_leaves_no_file_behind(tmp_path: Path) -> None:
    from llmdock.datasets.formats import export

    rows = [
        {"messages": GOOD["messages"], "meta": {"n": 1}},
        {"messages": GOOD["messages"], "meta": {"n": "text"}},
    ]
    target = tmp_path / "out.parquet"
    with pytest.raises(InvalidRequest, match="different types"):
        export(rows, target, "parquet")
    assert list(tmp_path.iterdir()) == []  # neither the target nor its temporary file
    export(rows, tmp_path / "out.jsonl", "jsonl")
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]
