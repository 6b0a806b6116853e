"""Canary releases: a share of one served model's traffic goes to a challenger registry version, is judged live,
and the release is promoted or rolled back by rule.

A release is an experiment (``experiments.book``) named ``release-MODEL-TIME`` that takes the model's traffic
(``match: {model: MODEL}``), with two variants: ``stable`` (the model as served) and ``challenger`` (the
registered version, served as ``MODEL@release`` with the model's own deployment settings, loaded beside it by
every gateway: ``routing.follow``). Its row keeps the release under ``guard["release"]``: the model, the
registered name and alias the model serves, the challenger, the rules. Assignment, stickiness and statistics
are the experiments' own; the rules (``release_rules``) are evaluated by the experiment watcher of every
gateway every ``GUARD_S`` seconds (the first to act wins, the others find it ended).

Promoting concludes the experiment with the challenger as the winner, which moves the alias to its version:
every gateway then follows the alias. Rolling back stops the experiment: gateways drop the challenger within
a second. Both are audited (``experiment.conclude`` / ``experiment.stop``, and ``model.promote``).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from llmdock.config import ModelConfig
from llmdock.errors import Conflict, InvalidRequest, LlmdockError, NotFound
from llmdock.experiments.book import RUNNING, ExperimentBook
from llmdock.experiments.release_rules import (
    DEFAULT_PROMOTE,
    DEFAULT_ROLLBACK,
    evidence,
    holds,
    parse_rule,
)
from llmdock.experiments.results import variant_stats
from llmdock.experiments.spec import STICKY, ExperimentSpec, VariantSpec
from llmdock.registry.labels import LATEST
from llmdock.registry.models import URI_PREFIX, ModelRef, ModelRegistry, parse_uri
from llmdock.store.audit import Actor
from llmdock.store.experiment_rows import ExperimentRow

STABLE, CHALLENGER = "stable", "challenger"
RULES_ACTOR = Actor("release-rules", "gateway")


def challenger_route(model: str) -> str:
    """The name a gateway serves a release's challenger under."""
    return f"{model}@release"


def served_alias(model: str, cfg: ModelConfig) -> ModelRef:
    """The registry alias every deployment of ``model`` serves: what a promotion moves."""
    refs = set()
    for dep, _ in cfg.deployment_configs():
        path = str(dep.backend_params().get("model_path", ""))
        refs.add(parse_uri(path) if path.startswith(URI_PREFIX) else None)
    ref = refs.pop() if len(refs) == 1 else None
    if ref is None or ref.version is not None or ref.alias in (None, LATEST):
        raise InvalidRequest(
            f"model {model!r} is not served from one registry alias; a release promotes by moving it: "
            "serve it with model_path: models:/NAME@production",
            param="model",
        )
    return ref


def start_release(
    book: ExperimentBook,
    registry: ModelRegistry,
    models: Mapping[str, ModelConfig],
    request: dict[str, Any],
    actor: Actor,
) -> ExperimentRow:
    """Check everything, then create the release's experiment (audited as ``experiment.create``). ``request``:
    model, challenger (a registry URI), share (percent), promote_when, rollback_when, sticky."""
    model, share = request["model"], int(request["share"])
    if model not in models:
        raise NotFound(f"no model {model!r} (served: {', '.join(sorted(models))})", param="model")
    ref = served_alias(model, models[model])
    if not 1 <= share <= 99:
        raise InvalidRequest(f"share {share}: a whole percent from 1 to 99", param="share")
    uri = str(request["challenger"])
    cref = parse_uri(uri) if uri.startswith(URI_PREFIX) else None
    if cref is None or cref.name != ref.name:
        raise InvalidRequest(
            f"challenger {uri!r}: give a version of {ref.name} (models:/{ref.name}/N or models:/{ref.name}@alias): "
            f"{model} serves {ref}",
            param="challenger",
        )
    version = registry.get(cref).version
    stable = registry.labels.get(ref.name, str(ref.alias))
    if stable == version:
        raise Conflict(f"{ref} is version {version} already: nothing to release", param="challenger")
    promote = parse_rule(request.get("promote_when") or DEFAULT_PROMOTE, "promote_when")
    rollback = parse_rule(request.get("rollback_when") or DEFAULT_ROLLBACK, "rollback_when")
    sticky = request.get("sticky") or "user"
    if sticky not in STICKY:
        raise InvalidRequest(f"sticky {sticky!r}: one of {', '.join(STICKY)}", param="sticky")
    slug = re.sub(r"[^a-z0-9_.-]+", "-", model.lower()).strip("-")[:32] or "model"
    now = datetime.now(UTC)
    release = {
        "model": model, "registered": ref.name, "alias": ref.alias, "stable_version": stable,
        "challenger": uri, "version": version, "share": share,
        "promote_when": promote.text, "rollback_when": rollback.text,
    }  # fmt: skip
    spec = ExperimentSpec(
        f"release-{slug}-{now:%Y%m%d%H%M%S}{now.microsecond // 1000:03d}",
        [
            VariantSpec(STABLE, model=model, weight=100 - share),
            VariantSpec(
                CHALLENGER,
                model=challenger_route(model),
                weight=share,
                registry=f"{URI_PREFIX}{ref.name}/{version}",
            ),
        ],  # fmt: skip
        sticky=STICKY[STICKY.index(sticky)],
        match={"model": model},
        label=str(ref.alias),
        release=release,
    )
    return book.create(spec, actor, {*models, challenger_route(model)})


def releases(book: ExperimentBook, model: str | None = None) -> list[ExperimentRow]:
    """Releases (of ``model``), newest first."""
    rows = [r for r in book.rows() if "release" in r.guard]
    return [r for r in rows if model is None or r.guard["release"]["model"] == model]


def latest_release(book: ExperimentBook, model: str) -> ExperimentRow:
    found = releases(book, model)
    if not found:
        raise NotFound(f"model {model!r} has no release", param="model")
    return found[0]


def running_release(book: ExperimentBook, model: str) -> ExperimentRow:
    row = latest_release(book, model)
    if row.status != RUNNING:
        raise Conflict(f"the last release of {model!r} ({row.name}) is {row.status} already", param="model")
    return row


def decide(book: ExperimentBook, row: ExperimentRow) -> tuple[str, str] | None:
    """("rollback" | "promote", the rule's alternative that holds) — rollback first — or None: keep going."""
    rel = row.guard["release"]
    stats = variant_stats(book.store, row)
    started = row.starts_at if row.starts_at.tzinfo else row.starts_at.replace(tzinfo=UTC)
    minutes = (datetime.now(UTC) - started).total_seconds() / 60
    ev = evidence(stats[STABLE], stats[CHALLENGER], minutes)
    for action, rule in (("rollback", rel["rollback_when"]), ("promote", rel["promote_when"])):
        if why := holds(parse_rule(rule, f"{action}_when"), ev):
            return action, why
    return None


def promote(book: ExperimentBook, row: ExperimentRow, actor: Actor, reason: str) -> ExperimentRow:
    """Move the alias to the challenger's version and end the release (gateways follow the alias)."""
    rel = row.guard["release"]
    pinned = {challenger_route(rel["model"]): (rel["registered"], int(rel["version"]))}
    return book.conclude(row.name, CHALLENGER, actor, pinned, reason=f"promoted: {reason}")


def rollback(book: ExperimentBook, row: ExperimentRow, actor: Actor, reason: str) -> ExperimentRow:
    """End the release; the alias stays, gateways drop the challenger."""
    return book.stop(row.name, actor, reason=f"rolled back: {reason}")


def judge_releases(book: ExperimentBook, rows: Collection[ExperimentRow]) -> list[tuple[str, str, str]]:
    """Apply the rules of the running releases among ``rows``: (release, action, why) for each one ended."""
    done = []
    for row in rows:
        if row.status != RUNNING or "release" not in row.guard:
            continue
        decision = decide(book, row)
        if decision is None:
            continue
        action, why = decision
        try:
            (promote if action == "promote" else rollback)(book, row, RULES_ACTOR, why)
        except LlmdockError:  # another gateway acted first (or someone by hand)
            continue
        done.append((row.name, action, why))
    return done


def release_view(book: ExperimentBook, row: ExperimentRow) -> dict[str, Any]:
    """``llmdock release status``: the release, each variant's facts and the comparisons, what the rules say."""
    from llmdock.experiments.report import experiment_report

    report = experiment_report(book.store, row)
    view: dict[str, Any] = {"name": row.name, "status": row.status, **row.guard["release"]}
    view["reason"] = row.guard.get("reason", "")
    view["started"] = row.starts_at.isoformat()
    view["variants"] = report.variants
    view["differences"] = [asdict(d) for d in report.differences.get(CHALLENGER, [])]
    decision = decide(book, row) if row.status == RUNNING else None
    view["rules_now"] = "keep going" if decision is None else f"{decision[0]}: {decision[1]}"
    return view
