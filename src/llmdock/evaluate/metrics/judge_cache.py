"""The LLM judge's answers, cached by content hash so re-running a suite does not pay for a verdict twice.

A SQLite file under ``<home>/judge-cache/`` (``judge.sqlite``), one row per distinct judge call: the key is
the sha256 of everything that decides the answer (judge model, the rendered prompt messages, the sampling
parameters and the verdict schema), the value the judge's raw answer text (parsed again on every hit, so a
change to the parsing never serves a stale verdict). Not the store: the store's schema changes through
migrations, and this is a cache, safe to delete at any time. SQLite rather than a JSON-lines file because
several evaluation processes may write at once: each insert is its own transaction (``INSERT OR IGNORE``, so
the first answer stored for a key wins), readers never see half a row, and a lookup does not read the file.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import time
from pathlib import Path
from typing import Any

import orjson

FILE_NAME = "judge.sqlite"
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS judge_answers (key TEXT PRIMARY KEY, model TEXT, answer TEXT, created REAL)"
)


def cache_key(model: str, messages: list[dict[str, Any]], params: dict[str, Any], schema: Any) -> str:
    """sha256 of the judge model, the prompt and the parameters (canonical JSON: sorted keys)."""
    data = {"model": model, "messages": messages, "params": params, "schema": schema}
    return hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()


class JudgeCache:
    """Get and put judge answers; the blocking SQLite work runs off the event loop."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / FILE_NAME
        self._ready = False

    def _connect(self) -> sqlite3.Connection:
        if not self._ready:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=30)
        if not self._ready:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(_SCHEMA)
            conn.commit()
            self._ready = True
        return conn

    def _get(self, key: str) -> str | None:
        conn = self._connect()
        try:
            row = conn.execute("SELECT answer FROM judge_answers WHERE key = ?", (key,)).fetchone()
        finally:
            conn.close()
        return None if row is None else str(row[0])

    def _put(self, key: str, model: str, answer: str) -> None:
        conn = self._connect()
        try:
            with conn:
                conn.execute(
                    "INSERT OR IGNORE INTO judge_answers (key, model, answer, created) VALUES (?, ?, ?, ?)",
                    (key, model, answer, time.time()),
                )
        finally:
            conn.close()

    async def get(self, key: str) -> str | None:
        return await asyncio.to_thread(self._get, key)

    async def put(self, key: str, model: str, answer: str) -> None:
        await asyncio.to_thread(self._put, key, model, answer)
