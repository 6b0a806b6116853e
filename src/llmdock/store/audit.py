"""The append-only, hash-chained audit log.

Each row's ``hash`` is SHA-256 over its content (time, actor, action, target, source, before, after) and the
previous row's hash. Appenders first lock the one ``audit_head`` row (an UPDATE, which takes the write lock
on SQLite and a row lock on PostgreSQL), so concurrent writers — several gateway workers, the CLI — still
form one chain. ``verify`` walks the chain and names every row that was edited, removed or moved; the head
row also catches rows cut off the end. Someone able to rewrite the whole table *and* the head can forge a
consistent chain: record the head printed by ``llmdock audit verify`` elsewhere and pass it back with
``--expect-head`` to close that gap.

:class:`Actor` (who acts, and from where) lives here, beside the log it is written to: the registries,
access control and the GDPR requests all record actions, and all of them already build on the store.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from llmdock.store.engine import Store
from llmdock.store.models import AuditHead, AuditRow

GENESIS = "0" * 64


@dataclass(frozen=True, slots=True)
class Actor:
    """Who takes an action and from where, for the audit log."""

    name: str
    source: str = ""


def cli_actor() -> tuple[str, str]:
    """Who and where for actions taken with the CLI (which needs direct access to the store)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"cli:{user}", socket.gethostname()


def _jsonable(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    result: dict[str, Any] = json.loads(json.dumps(value, default=str, sort_keys=True))
    return result


def row_hash(
    prev_hash: str,
    at: datetime,
    actor: str,
    action: str,
    target: str,
    source: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> str:
    content = [prev_hash, at.astimezone(UTC).isoformat(), actor, action, target, source, before, after]
    data = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(data.encode()).hexdigest()


def append(
    store: Store,
    action: str,
    *,
    actor: str,
    target: str = "",
    source: str = "",
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> int:
    """Append one row; returns its sequence number."""
    try:
        return _append(store, action, actor, target, source, before, after)
    except IntegrityError:  # two writers created the very first head row at once: the loser retries
        return _append(store, action, actor, target, source, before, after)


def record(
    store: Store,
    action: str,
    actor: Actor,
    *,
    target: str = "",
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> int:
    """:func:`append` for an action an :class:`Actor` took."""
    return append(
        store, action, actor=actor.name, source=actor.source, target=target, before=before, after=after
    )


def _append(
    store: Store,
    action: str,
    actor: str,
    target: str,
    source: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> int:
    before, after = _jsonable(before), _jsonable(after)
    at = datetime.now(UTC)
    with store.session() as s, s.begin():
        locked = s.execute(update(AuditHead).where(AuditHead.id == 1).values(seq=AuditHead.seq))
        head = s.get(AuditHead, 1) if locked.rowcount else None  # type: ignore[attr-defined]
        if head is None:
            head = AuditHead(id=1, seq=0, hash=GENESIS)
            s.add(head)
            s.flush()
        digest = row_hash(head.hash, at, actor, action, target, source, before, after)
        seq = head.seq + 1
        s.add(
            AuditRow(
                seq=seq,
                at=at,
                actor=actor,
                action=action,
                target=target,
                source=source,
                before=before,
                after=after,
                prev_hash=head.hash,
                hash=digest,
            )
        )
        head.seq, head.hash = seq, digest
    return seq


@dataclass
class Verification:
    rows: int = 0
    head_seq: int = 0
    head_hash: str = GENESIS
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(store: Store, expect_head: str | None = None) -> Verification:
    """Check every row's hash and link; each problem names the row (by sequence number)."""
    with store.session() as s:
        # The head first: an append commits its row and the head together, so every row up to the head's
        # sequence number is there; rows appended while we read are newer than this check and left out.
        head = s.get(AuditHead, 1)
        query = select(AuditRow).order_by(AuditRow.seq)
        if head is not None:
            query = query.where(AuditRow.seq <= head.seq)
        rows = list(s.scalars(query))
    result = Verification(rows=len(rows))
    by_hash = {r.hash: r.seq for r in rows}
    prev_hash, prev_seq = GENESIS, 0
    for r in rows:
        computed = row_hash(r.prev_hash, r.at, r.actor, r.action, r.target, r.source, r.before, r.after)
        if computed != r.hash:
            result.problems.append(
                f"row {r.seq}: content edited ({r.action} by {r.actor} at {r.at:%Y-%m-%d %H:%M:%S})"
            )
        if r.prev_hash != prev_hash:
            if r.prev_hash in by_hash and by_hash[r.prev_hash] != prev_seq:
                result.problems.append(
                    f"row {r.seq}: out of order (it was written after row {by_hash[r.prev_hash]}, "
                    f"but follows row {prev_seq})"
                )
            elif r.seq != prev_seq + 1:
                result.problems.append(f"rows {prev_seq + 1}-{r.seq - 1}: removed")
            else:
                result.problems.append(f"row {r.seq}: does not follow row {prev_seq} (chain broken)")
        elif r.seq != prev_seq + 1:
            result.problems.append(f"rows {prev_seq + 1}-{r.seq - 1}: renumbered or removed")
        prev_hash, prev_seq = r.hash, r.seq
    result.head_seq, result.head_hash = prev_seq, prev_hash
    if head is not None and (head.seq, head.hash) != (prev_seq, prev_hash):
        if head.seq > prev_seq:
            result.problems.append(f"rows {prev_seq + 1}-{head.seq}: removed from the end")
        else:
            result.problems.append(f"head (row {head.seq}) does not match the last row ({prev_seq})")
    if head is None and rows:
        result.problems.append("the audit head is missing")
    if expect_head and expect_head != prev_hash and not any(h == expect_head for h in by_hash):
        result.problems.append(f"the expected head {expect_head[:16]}… is not in the chain")
    return result


def list_rows(store: Store, *, limit: int = 50, action: str | None = None) -> list[AuditRow]:
    with store.session() as s:
        query = select(AuditRow).order_by(AuditRow.seq.desc()).limit(limit)
        if action:
            query = query.where(AuditRow.action.like(action.replace("*", "%")))
        return list(s.scalars(query))


def row_view(row: AuditRow) -> dict[str, Any]:
    return {
        "seq": row.seq,
        "at": row.at.isoformat(),
        "actor": row.actor,
        "action": row.action,
        "target": row.target,
        "source": row.source,
        "before": row.before,
        "after": row.after,
        "hash": row.hash,
    }


SECRET_WORDS = ("key", "secret", "password", "token")


def config_snapshot(settings: Any) -> dict[str, Any]:
    """The settings as JSON, with every value whose name looks secret replaced by ``***``."""

    def mask(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: "***" if any(w in k.lower() for w in SECRET_WORDS) and v not in ("", None) else mask(v)
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [mask(v) for v in value]
        return value

    data: dict[str, Any] = mask(json.loads(settings.model_dump_json()))
    return data


def record_config(store: Store, settings: Any, actor: str, source: str) -> bool:
    """Audit the configuration a gateway starts with when it differs from the last one audited.

    Policies (routes, limits, caches, guards…) live in the config file, so a change of policy shows up as
    a ``config.change`` row with the sections before → after. Returns whether a row was written.
    """
    current = config_snapshot(settings)
    with store.session() as s:
        last = s.scalar(
            select(AuditRow).where(AuditRow.action == "config.change").order_by(AuditRow.seq.desc()).limit(1)
        )
    previous: dict[str, Any] = (last.after or {}) if last is not None else {}
    if previous == current:
        return False
    changed = sorted(k for k in current.keys() | previous.keys() if current.get(k) != previous.get(k))
    before = {k: previous.get(k) for k in changed} if last is not None else None
    append(
        store,
        "config.change",
        actor=actor,
        source=source,
        target=",".join(changed)[:200] if last is not None else "initial",
        before=before,
        after=current,
    )
    return True
