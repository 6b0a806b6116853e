"""Tables. Every change to them goes through an Alembic migration in ``migrations/versions``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """``DateTime(timezone=True)`` that stores and returns aware UTC datetimes on every backend.

    SQLite keeps no zone (it would store 12:00+05:30 as 12:00 and give it back naive) and PostgreSQL
    answers in the session's zone; converting to UTC on the way in and attaching UTC on the way out makes
    both give the same instant back, and makes SQLite's text ordering the time ordering. Naive values are
    taken as UTC. The DDL is plain ``DateTime(timezone=True)``, so no migration is involved.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, datetime: UTCDateTime()}


class Trace(Base):
    """One request, whatever way it came in (gateway, CLI, batch, evaluation)."""

    __tablename__ = "traces"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(index=True)
    operation: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(200), index=True)
    backend: Mapped[str] = mapped_column(String(64), default="")
    status: Mapped[str] = mapped_column(String(16))
    http_status: Mapped[int] = mapped_column(Integer, default=200)
    stream: Mapped[int] = mapped_column(Integer, default=0)
    duration_ms: Mapped[float] = mapped_column(Float)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    finish_reason: Mapped[str] = mapped_column(String(32), default="")
    error: Mapped[str] = mapped_column(Text, default="")
    input: Mapped[dict[str, Any]] = mapped_column(default=dict)
    output: Mapped[str] = mapped_column(Text, default="")
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    deployment: Mapped[str] = mapped_column(String(200), default="", index=True)
    cost: Mapped[float] = mapped_column(Float, default=0.0)
    cache: Mapped[str] = mapped_column(String(16), default="")
    subject: Mapped[str] = mapped_column(String(200), default="", index=True)  # end user (GDPR)
    api_key_id: Mapped[str] = mapped_column(String(32), default="", index=True)
    team_id: Mapped[str] = mapped_column(String(32), default="")
    # One entry per pipeline stage, in order: {name, started_at (ISO 8601, UTC), duration_ms, status,
    # attributes}. On the trace's row rather than a table of their own: a trace is written as one row (an
    # insert per stage and its index entry was half of the trace writer's CPU) and always read whole.
    spans: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)


class Org(Base):
    __tablename__ = "orgs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=lambda: datetime.now(UTC))


class Limits:
    """Requests/tokens per minute and a spend budget per period: on keys and on teams."""

    rpm: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tpm: Mapped[int | None] = mapped_column(Integer, nullable=True)
    budget: Mapped[float | None] = mapped_column(Float, nullable=True)
    budget_period: Mapped[str] = mapped_column(String(8), default="month")


class Team(Limits, Base):
    __tablename__ = "teams"
    __table_args__ = (UniqueConstraint("org_id", "name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    org_id: Mapped[str] = mapped_column(String(32), ForeignKey("orgs.id"))
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=lambda: datetime.now(UTC))


class User(Base):
    """A person or a service account; its role decides what its keys may do."""

    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("org_id", "name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    org_id: Mapped[str] = mapped_column(String(32), ForeignKey("orgs.id"))
    team_id: Mapped[str | None] = mapped_column(String(32), ForeignKey("teams.id"), nullable=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))  # user | service
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=lambda: datetime.now(UTC))


class ApiKey(Limits, Base):
    """An API key: only its visible prefix and a keyed hash of the whole key are stored."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    digest: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(32), ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    models: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)  # None = every model
    routes: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)  # None = all the role allows
    prompts: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)  # None = every prompt template
    expires_at: Mapped[datetime | None] = mapped_column(nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=lambda: datetime.now(UTC))
    rotated_from: Mapped[str | None] = mapped_column(String(32), nullable=True)


class AuditRow(Base):
    """One audited action. ``hash`` covers the row's content and ``prev_hash``: a hash chain."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str] = mapped_column(String(200), default="")
    source: Mapped[str] = mapped_column(String(200), default="")
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))


class PromptVersion(Base):
    """One immutable version of a prompt template (chat messages or a completion text, Jinja)."""

    __tablename__ = "prompt_versions"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(16))  # chat | text
    template: Mapped[Any] = mapped_column(JSON)  # list of {role, content} for chat, a string for text
    variables: Mapped[list[str]] = mapped_column(JSON)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)  # model and sampling defaults
    message: Mapped[str] = mapped_column(Text, default="")
    sha256: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column()


class ModelVersion(Base):
    """One immutable version of a registered model: a content-addressed artifact plus its lineage."""

    __tablename__ = "model_versions"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    artifact: Mapped[str] = mapped_column(String(64))  # sha256 of the file
    filename: Mapped[str] = mapped_column(String(400))
    size: Mapped[int] = mapped_column(BigInteger)
    format: Mapped[str] = mapped_column(String(32), default="")
    source: Mapped[str] = mapped_column(Text, default="")
    lineage: Mapped[dict[str, Any]] = mapped_column(JSON)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    description: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column()


class RegistryLabel(Base):
    """A movable name (prompt label, model alias) pointing at one version; ``previous`` allows rollback."""

    __tablename__ = "registry_labels"

    kind: Mapped[str] = mapped_column(String(16), primary_key=True)  # prompt | model
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    label: Mapped[str] = mapped_column(String(100), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    previous: Mapped[list[int]] = mapped_column(JSON)  # earlier versions, most recent last
    updated_by: Mapped[str] = mapped_column(String(200), default="")
    updated_at: Mapped[datetime] = mapped_column()


class EvalRun(Base):
    """One run of an evaluation suite: its settings as run, and where it stands."""

    __tablename__ = "eval_runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    suite: Mapped[str] = mapped_column(String(200), index=True)  # the suite's name
    suite_path: Mapped[str] = mapped_column(Text, default="")
    suite_sha256: Mapped[str] = mapped_column(String(64))  # suite file + dataset file: what --resume checks
    config: Mapped[dict[str, Any]] = mapped_column(JSON)  # the suite as run (targets, checks, repeats, seed…)
    status: Mapped[str] = mapped_column(String(16))  # running | done | interrupted
    n_expected: Mapped[int] = mapped_column(Integer)  # cases x targets x repeats
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(index=True)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)


class EvalResult(Base):
    """One case on one target (one repeat): written as soon as it is scored, at most once."""

    __tablename__ = "eval_results"
    __table_args__ = (UniqueConstraint("run_id", "target", "case_id", "repeat", name="uq_eval_result"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("eval_runs.id", ondelete="CASCADE"), index=True
    )
    target: Mapped[str] = mapped_column(String(200))
    case_id: Mapped[str] = mapped_column(String(200))
    repeat: Mapped[int] = mapped_column(Integer)
    input: Mapped[dict[str, Any]] = mapped_column(JSON)  # the case as asked (input/messages, expected, vars)
    output: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str] = mapped_column(Text, default="")
    scores: Mapped[dict[str, Any]] = mapped_column(JSON)  # check label -> {value, passed, reason}
    score: Mapped[float] = mapped_column(Float)
    passed: Mapped[bool] = mapped_column()
    latency_ms: Mapped[float] = mapped_column(Float)
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)
    cost: Mapped[float] = mapped_column(Float)
    trace_id: Mapped[str] = mapped_column(String(32), default="")
    served: Mapped[dict[str, Any]] = mapped_column(JSON)  # model, deployment, prompt version actually used
    created_at: Mapped[datetime] = mapped_column()


class StoredResponse(Base):
    """A Responses API answer kept for ``GET /v1/responses/{id}`` and ``previous_response_id``.

    ``data`` holds the response object, the conversation it answered (the items it continued and its own
    input) and how many of those items were earlier ones; redacted per ``privacy.pii`` and, with
    ``privacy.encrypt_bodies``, sealed as ``{"$sealed": <token>}``. Only the key's own team reads it.
    """

    __tablename__ = "responses"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(index=True)
    team_id: Mapped[str] = mapped_column(String(32), default="")
    api_key_id: Mapped[str] = mapped_column(String(32), default="")
    subject: Mapped[str] = mapped_column(String(200), default="", index=True)  # end user (GDPR)
    model: Mapped[str] = mapped_column(String(200))
    previous_response_id: Mapped[str] = mapped_column(String(64), default="")
    data: Mapped[dict[str, Any]] = mapped_column(JSON)


class ScanReport(Base):
    """What a scan found, as its report shows it: ``llmdock scan report RUN`` writes the page again from this
    alone (the run's probes and answers are its eval_results)."""

    __tablename__ = "scan_reports"

    run_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("eval_runs.id", ondelete="CASCADE"), primary_key=True
    )
    data: Mapped[dict[str, Any]] = mapped_column(JSON)  # llmdock.scan.report.data(): options … probes
    created_at: Mapped[datetime] = mapped_column()
