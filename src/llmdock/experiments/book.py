"""Experiments in the store: created checked (nothing half-made), listed, stopped, concluded; all audited.

Every change bumps the row's ``revision`` to one past the highest, so gateways see it on their next poll
(``experiments.live``). Concluding moves the label to the winner: a prompt winner's template label to its
version (audited as ``prompt.promote``), a model winner's registered-model alias to the version it serves
(``model.promote``); then it ends the split.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select

from llmdock.config import ModelConfig
from llmdock.errors import Conflict, InvalidRequest, NotFound
from llmdock.experiments.spec import ExperimentSpec, VariantSpec, check_name, default_match, overlaps
from llmdock.prompts import PromptRegistry
from llmdock.registry.labels import LATEST, Labels, check_label
from llmdock.registry.models import URI_PREFIX, ModelRef, parse_uri
from llmdock.store import audit
from llmdock.store.audit import Actor
from llmdock.store.engine import Store
from llmdock.store.experiment_rows import ExperimentRow
from llmdock.store.lease import guarded_update

RUNNING = "running"


def _utc(when: datetime | None) -> datetime | None:
    return None if when is None else when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)


def served_versions(models: Mapping[str, ModelConfig], store: Store) -> dict[str, tuple[str, int]]:
    """Served models whose deployments all serve one registered model version, pinned (``models:/NAME/3``) or
    through an alias (``models:/NAME@candidate``; ``models:/NAME`` is the latest version), as the store has it
    now: served name -> (registered name, version). Concluding with such a model moves that registered model's
    alias of the experiment's label to that version (a gateway serving that alias follows it)."""
    refs: dict[str, ModelRef] = {}
    for served, cfg in models.items():
        found = set()
        for dep, _ in cfg.deployment_configs():
            path = str(dep.backend_params().get("model_path", ""))
            found.add(parse_uri(path) if path.startswith(URI_PREFIX) else None)
        ref = found.pop() if len(found) == 1 else None
        if ref is not None:
            refs[served] = ref
    pointing = Labels(store, "model").pointing({r.name for r in refs.values() if r.version is None})
    versions = {
        served: (
            ref.name,
            ref.version if ref.version is not None else pointing.get((ref.name, ref.alias or LATEST)),
        )
        for served, ref in refs.items()
    }
    return {served: (name, v) for served, (name, v) in versions.items() if v is not None}


def windows_overlap(a: ExperimentRow, starts: datetime, ends: datetime | None) -> bool:
    a_start, a_end = _utc(a.starts_at), _utc(a.ends_at)
    assert a_start is not None
    return (ends is None or a_start < ends) and (a_end is None or starts < a_end)


class ExperimentBook:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.prompts = PromptRegistry(store)

    def _next_revision(self, s: Any) -> int:
        return int(s.scalar(select(func.max(ExperimentRow.revision))) or 0) + 1

    def revision(self) -> tuple[int, int]:
        """(highest revision, number of experiments): what a gateway polls to know its copy is stale."""
        with self.store.session() as s:
            top, count = s.execute(select(func.max(ExperimentRow.revision), func.count())).one()
        return int(top or 0), int(count)

    def _resolve(self, v: VariantSpec, models: Collection[str]) -> None:
        if v.model is not None and v.model not in models:
            raise NotFound(
                f"variant {v.name!r}: no model {v.model!r} (served: {', '.join(sorted(models))})",
                param="variant",
            )
        if v.prompt is None:
            return
        ref = v.prompt_ref or str(v.prompt_version)
        try:
            row = (
                self.prompts.get(v.prompt, version=int(ref))
                if ref.isdigit()
                else self.prompts.get(v.prompt, label=ref)
            )
        except NotFound as exc:
            raise NotFound(f"variant {v.name!r}: {exc.message}", param="variant") from None
        v.prompt_version = row.version

    def create(self, spec: ExperimentSpec, actor: Actor, models: Collection[str]) -> ExperimentRow:
        """Check everything, then insert one row (audited as ``experiment.create``)."""
        check_name(spec.name, "experiment")
        check_label(spec.label)
        names = [v.name for v in spec.variants]
        if len(names) < 2 or len(set(names)) != len(names):
            raise InvalidRequest(
                "an experiment needs two or more variants with distinct names", param="variant"
            )
        total = sum(v.weight for v in spec.variants)
        if total != 100 or any(v.weight <= 0 for v in spec.variants):
            raise InvalidRequest(
                f"variant weights sum to {total}; they must be positive and sum to 100", param="weights"
            )
        for v in spec.variants:
            self._resolve(v, models)
        match = default_match(spec.variants, spec.match)
        now = datetime.now(UTC)
        starts, ends = _utc(spec.starts_at) or now, _utc(spec.ends_at)
        if ends is not None and ends <= starts:
            raise InvalidRequest("the end must come after the start", param="end")
        guard = (
            spec.guard.to_json() | {"label": spec.label} | ({"release": spec.release} if spec.release else {})
        )
        with self.store.session() as s, s.begin():
            if s.get(ExperimentRow, spec.name) is not None:
                raise Conflict(f"experiment {spec.name!r} exists already", param="name")
            for other in s.scalars(select(ExperimentRow).where(ExperimentRow.status == RUNNING)):
                if overlaps(other.match, match) and windows_overlap(other, starts, ends):
                    raise Conflict(
                        f"running experiment {other.name!r} already takes this traffic ({other.match}); "
                        "conclude or stop it first, or narrow --match",
                        param="match",
                    )
            row = ExperimentRow(
                name=spec.name,
                status=RUNNING,
                variants=[v.to_json() for v in spec.variants],
                match=match,
                sticky=spec.sticky,
                guard=guard,
                starts_at=starts,
                ends_at=ends,
                winner="",
                revision=self._next_revision(s),
                created_by=actor.name,
                created_at=now,
                updated_at=now,
            )
            s.add(row)
        after = {"variants": row.variants, "match": match, "sticky": spec.sticky, "guard": guard}
        audit.record(self.store, "experiment.create", actor, target=spec.name, after=after)
        return row

    def get(self, name: str) -> ExperimentRow:
        with self.store.session() as s:
            row = s.get(ExperimentRow, name)
        if row is None:
            raise NotFound(f"no experiment {name!r}", param="name")
        return row

    def rows(self, status: str | None = None) -> list[ExperimentRow]:
        q = select(ExperimentRow).order_by(ExperimentRow.created_at.desc())
        if status is not None:
            q = q.where(ExperimentRow.status == status)
        with self.store.session() as s:
            return list(s.scalars(q))

    def _change(
        self, name: str, actor: Actor, action: str, revision: int | None = None, **values: Any
    ) -> ExperimentRow:
        """Update a running experiment's row (bumping its revision), audited as ``experiment.<action>``; with
        ``revision``, only if the row is still at it (else Conflict: someone changed it first)."""
        with self.store.session() as s, s.begin():
            row = s.get(ExperimentRow, name, with_for_update=True)
            if row is None:
                raise NotFound(f"no experiment {name!r}", param="name")
            if row.status != RUNNING:
                raise Conflict(f"experiment {name!r} is {row.status} already", param="name")
            before = {k: getattr(row, k) for k in values}
            at = row.revision if revision is None else revision
            changed = values | {"revision": self._next_revision(s), "updated_at": datetime.now(UTC)}
            if not guarded_update(
                s, ExperimentRow, [ExperimentRow.name == name, ExperimentRow.revision == at], changed
            ):
                raise Conflict(f"experiment {name!r} changed meanwhile", param="name")
        audit.record(self.store, f"experiment.{action}", actor, target=name, before=before, after=values)
        return row

    def stop_variant(self, name: str, variant: str, reason: str, actor: Actor) -> ExperimentRow:
        """Stop one variant (a guard rail): its traffic goes to the others; the last one standing ends it."""
        row = self.get(name)
        variants = [VariantSpec.from_json(v) for v in row.variants]
        if variant not in {v.name for v in variants}:
            raise NotFound(f"experiment {name!r} has no variant {variant!r}", param="variant")
        for v in variants:
            if v.name == variant:
                if v.stopped:  # another worker's guard rail got there first
                    raise Conflict(f"variant {variant!r} of {name!r} is stopped already", param="variant")
                v.stopped = reason
        live = [v for v in variants if not v.stopped]
        values: dict[str, Any] = {"variants": [v.to_json() for v in variants]}
        if not live:
            values["status"] = "stopped"
        return self._change(name, actor, "stop_variant", **values)

    def reweigh(
        self, name: str, weights: Mapping[str, int], actor: Actor, guard: dict[str, Any], revision: int
    ) -> ExperimentRow:
        """New shares for a running experiment's variants and its ``guard`` replaced (a canary release's ramp),
        if it is still at ``revision``; audited as ``experiment.reweigh``."""
        variants = [v | {"weight": weights.get(v["name"], v["weight"])} for v in self.get(name).variants]
        return self._change(name, actor, "reweigh", revision, variants=variants, guard=guard)

    def stop(self, name: str, actor: Actor, reason: str = "") -> ExperimentRow:
        """End the split without a winner (labels stay where they are); ``reason`` is kept with the row."""
        return self._change(name, actor, "stop", status="stopped", ends_at=datetime.now(UTC),
                            **self._reason(name, reason))  # fmt: skip

    def _reason(self, name: str, reason: str) -> dict[str, Any]:
        return {"guard": self.get(name).guard | {"reason": reason}} if reason else {}

    def conclude(
        self,
        name: str,
        winner: str,
        actor: Actor,
        served: Mapping[str, tuple[str, int]] | None = None,
        reason: str = "",
    ) -> ExperimentRow:
        """Move the label to the winner's prompt version, and, when the winner's model serves a registered
        version (``served``, from ``served_versions``), that registered model's alias of the same name to it
        (both audited by the registry); then end the split."""
        row = self.get(name)
        variants = {v["name"]: VariantSpec.from_json(v) for v in row.variants}
        if winner not in variants:
            raise NotFound(
                f"experiment {name!r} has no variant {winner!r} (variants: {', '.join(variants)})",
                param="winner",
            )
        if row.status != RUNNING:
            raise Conflict(f"experiment {name!r} is {row.status} already", param="name")
        v = variants[winner]
        label = str(row.guard.get("label", "production"))
        if v.prompt is not None and v.prompt_version is not None:
            self.prompts.labels.set(v.prompt, label, v.prompt_version, actor)
        if v.model is not None and served and v.model in served:
            registered, version = served[v.model]
            Labels(self.store, "model").set(registered, label, version, actor)
        return self._change(
            name, actor, "conclude", status="concluded", winner=winner, ends_at=datetime.now(UTC),
            **self._reason(name, reason),
        )  # fmt: skip
