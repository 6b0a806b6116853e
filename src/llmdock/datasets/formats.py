"""Reading rows from chat JSONL, prompt/completion JSONL, CSV and Parquet; writing them back out.

Readers yield ``(line, raw)`` where ``raw`` is the row as the file holds it, or a :class:`RowError` for a line
that is not a row at all (invalid JSON, bytes that are not UTF-8, a CSV record with too many cells). The line
is the file's line for JSONL and CSV (a CSV record's last line), the row's number for Parquet. Writers write to
a temporary file beside the target and rename it into place, so an interrupted export leaves no partial file.
"""

from __future__ import annotations

import contextlib
import csv
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from llmdock.datasets.rows import Row, RowError
from llmdock.errors import InvalidRequest, NotFound

FORMATS = ("jsonl", "csv", "parquet")
SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet"}
Raw = Iterator[tuple[int, Any]]


def detect_format(path: Path, fmt: str = "") -> str:
    if fmt:
        if fmt not in FORMATS:
            raise InvalidRequest(f"unknown format {fmt!r}: one of {', '.join(FORMATS)}", where="--format")
        return fmt
    found = SUFFIXES.get(path.suffix.lower())
    if found is None:
        raise InvalidRequest(
            f"cannot tell the format of {path.name!r} from its suffix: pass --format ({', '.join(FORMATS)})",
            where=str(path),
        )
    return found


def read_raw(path: Path, fmt: str) -> Raw:
    if not path.is_file():
        raise NotFound(f"no file {str(path)!r}", param="file")
    return {"jsonl": _jsonl, "csv": _csv, "parquet": _parquet}[fmt](path)


def _jsonl(path: Path) -> Raw:
    with path.open("rb") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                byte = line[exc.start]
                yield (
                    line_no,
                    RowError(
                        "row", f"byte 0x{byte:02x} at column {exc.start + 1} is not UTF-8", "undecodable"
                    ),
                )
                continue
            try:
                yield line_no, orjson.loads(text)
            except orjson.JSONDecodeError as exc:
                yield line_no, RowError("row", f"invalid JSON: {exc}", "invalid JSON")


def _csv(path: Path) -> Raw:
    # surrogateescape keeps undecodable bytes as lone surrogates, which validation reports by field
    with path.open(newline="", encoding="utf-8", errors="surrogateescape") as f:
        reader = csv.DictReader(f)
        try:
            for record in reader:
                if None in record:
                    yield reader.line_num, RowError("row", "has more cells than the header", "malformed CSV")
                    continue
                yield reader.line_num, {k: v for k, v in record.items() if v}  # an empty cell: no value
        except csv.Error as exc:
            yield reader.line_num, RowError("row", f"malformed CSV: {exc}", "malformed CSV")


def _parquet(path: Path) -> Raw:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidRequest(f"not a Parquet file: {exc}", where=str(path)) from None
    n = 0
    for batch in parquet.iter_batches(batch_size=2048):
        for record in batch.to_pylist():
            n += 1
            yield n, record


# --- writing ------------------------------------------------------------------------------------------------
def flat(row: Row) -> dict[str, Any]:
    """A row as exported: ``messages`` beside the meta columns (which import reads back into ``meta``)."""
    return {"messages": row["messages"], **{k: v for k, v in row["meta"].items() if k != "messages"}}


def canonical_line(row: Row) -> bytes:
    """The row as stored in a version's file: sorted keys, so the same rows always hash the same."""
    return orjson.dumps(row, option=orjson.OPT_SORT_KEYS, default=str) + b"\n"


def write_atomic(target: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write through ``write`` to a temporary file beside ``target``, flush it to disk, rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def export(rows: list[Row], target: Path, fmt: str) -> None:
    if fmt == "jsonl":
        write_atomic(
            target, lambda out: out.writelines(orjson.dumps(flat(r), default=str) + b"\n" for r in rows)
        )
    elif fmt == "csv":
        write_atomic(target, lambda out: _write_csv(rows, out))
    else:
        write_atomic(target, lambda out: _write_parquet(rows, out))


def _columns(rows: list[Row]) -> list[str]:
    seen: dict[str, None] = {"messages": None}
    for r in rows:
        seen.update(dict.fromkeys(r["meta"]))
    return list(seen)


def _write_csv(rows: list[Row], out: IO[bytes]) -> None:
    import io

    text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
    writer = csv.DictWriter(text, fieldnames=_columns(rows))
    writer.writeheader()
    for r in rows:
        record = flat(r)
        record["messages"] = orjson.dumps(r["messages"]).decode()
        writer.writerow(
            {
                k: v if isinstance(v, str | int | float | None) else orjson.dumps(v).decode()
                for k, v in record.items()
            }
        )
    text.flush()
    text.detach()


def _write_parquet(rows: list[Row], out: IO[bytes]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = _columns(rows)
    try:
        table = pa.Table.from_pylist([flat(r) for r in rows], schema=None).select(columns)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise InvalidRequest(
            f"a meta column holds values of different types, which Parquet cannot ({exc}): export .jsonl or .csv",
            where="--format",
        ) from None
    pq.write_table(table, out)
