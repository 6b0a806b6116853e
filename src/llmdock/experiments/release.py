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
a second. Both are audited (``experiment.conclude`` / ``experiment.stop``, and ``model.promote``). A
challenger that fails to load on a gateway is rolled back by that gateway at once (a release nobody can serve
teaches nothing); a release with a ramp (``release_ramp``) climbs its shares before the promote rule is read.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Collection, Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from llmdock.config import ModelConfig
from llmdock.errors import Conflict, InvalidRequest, LlmdockError, NotFound
from llmdock.experiments.book import RUNNING, ExperimentBook
from llmdock.experiments.release_ramp import ramp_fields, ramping, step_due, step_up
from llmdock.experiments.release_rules import (
    DEFAULT_PROMOTE,
    DEFAULT_ROLLBACK,
    Evidence,
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
    model, challenger (a registry URI), share (percent), promote_when, rollback_when, sticky, and optionally
    ramp (``5,10,25,50``: the shares to climb, the first one instead of share) and step_after."""
    model, now = request["model"], datetime.now(UTC)
    ramp = ramp_fields(request, now)
    share = int(ramp["ramp"][0] if ramp else request.get("share") or 10)
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
    release = {
        "model": model, "registered": ref.name, "alias": ref.alias, "stable_version": stable,
        "challenger": uri, "version": version, "share": share,
        "promote_when": promote.text, "rollback_when": rollback.text, **ramp,
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


def decide(
    book: ExperimentBook, row: ExperimentRow, load_error: str = ""
) -> tuple[str, str, Evidence | None] | None:
    """("rollback" | "step" | "promote", why, the evidence read) — rollback first, a step of the ramp before
    promotion — or None: keep going. ``load_error``: why this gateway could not load the challenger (rolled
    back without reading the traces)."""
    if load_error:
        where = f"{socket.gethostname()}:{os.getpid()}"
        return "rollback", f"the challenger failed to load on {where}: {load_error}", None
    rel = row.guard["release"]
    stats = variant_stats(book.store, row)
    started = row.starts_at if row.starts_at.tzinfo else row.starts_at.replace(tzinfo=UTC)
    minutes = (datetime.now(UTC) - started).total_seconds() / 60
    ev = evidence(stats[STABLE], stats[CHALLENGER], minutes)
    if why := holds(parse_rule(rel["rollback_when"], "rollback_when"), ev):
        return "rollback", why, ev
    if ramping(rel):
        return ("step", why, ev) if (why := step_due(rel, ev)) else None
    if why := holds(parse_rule(rel["promote_when"], "promote_when"), ev):
        return "promote", why, ev
    return None


def promote(book: ExperimentBook, row: ExperimentRow, actor: Actor, reason: str) -> ExperimentRow:
    """Move the alias to the challenger's version and end the release (gateways follow the alias)."""
    rel = row.guard["release"]
    pinned = {challenger_route(rel["model"]): (rel["registered"], int(rel["version"]))}
    return book.conclude(row.name, CHALLENGER, actor, pinned, reason=f"promoted: {reason}")


def rollback(book: ExperimentBook, row: ExperimentRow, actor: Actor, reason: str) -> ExperimentRow:
    """End the release; the alias stays, gateways drop the challenger."""
    return book.stop(row.name, actor, reason=f"rolled back: {reason}")


def judge_releases(
    book: ExperimentBook, rows: Collection[ExperimentRow], load_errors: Mapping[str, str] | None = None
) -> list[tuple[str, str, str]]:
    """Apply the rules of the running releases among ``rows``: (release, action, why) for each one ended or
    stepped. ``load_errors``: served name -> why this gateway could not load it (a challenger that cannot
    load is rolled back)."""
    done = []
    for row in rows:
        if row.status != RUNNING or "release" not in row.guard:
            continue
        failed = (load_errors or {}).get(challenger_route(row.guard["release"]["model"]), "")
        decision = decide(book, row, failed)
        if decision is None:
            continue
        action, why, ev = decision
        try:
            if action == "step":
                assert ev is not None  # a step is always read from the traces
                step_up(book, row, (STABLE, CHALLENGER), ev, RULES_ACTOR, why)
            else:
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
    if row.status == RUNNING and ramping(row.guard["release"]) and decision is None:
        view["rules_now"] = (
            f"keep going: the next step after {row.guard['release']['step_after']} (and not worse)"
        )
    return view
