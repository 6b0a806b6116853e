"""The gradual ramp of a canary release: the challenger's share raised step by step.

``--ramp 5,10,25,50 --step-after 200`` starts the challenger at 5 % and raises its share to the next step
once it has answered 200 more requests since the last step (``--step-after 30m``: once 30 minutes have passed
since it), and only while it is not significantly worse than the stable version on any measure (the rules'
``not worse``: the experiments' sequential test, safe to evaluate at every beat). The promote rule is read only
at the last step; the rollback rule at every one. Each step bumps the experiment's revision (gateways apply
it within a second) and is audited as ``experiment.reweigh``. Assignment hashes each sticky id into a fixed
bucket and the challenger holds the highest buckets, so raising its share only moves users from the stable
version to the challenger, never back.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from llmdock.errors import InvalidRequest
from llmdock.experiments.book import ExperimentBook
from llmdock.experiments.release_rules import Evidence
from llmdock.store.audit import Actor
from llmdock.store.experiment_rows import ExperimentRow

STEP_RE = re.compile(r"^(?P<n>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>s|m|h)?$")
UNIT_MINUTES = {"s": 1 / 60, "m": 1.0, "h": 60.0}


def parse_ramp(text: str) -> list[int]:
    """``5,10,25,50`` → the shares, increasing whole percents from 1 to 99."""
    try:
        shares = [int(p) for p in text.replace(" ", "").split(",")]
    except ValueError:
        raise InvalidRequest(f"ramp {text!r}: whole percents separated by commas, e.g. 5,10,25,50",
                             param="ramp") from None  # fmt: skip
    if len(shares) < 2 or any(not 1 <= s <= 99 for s in shares) or shares != sorted(set(shares)):
        raise InvalidRequest(
            f"ramp {text!r}: two or more increasing percents from 1 to 99, e.g. 5,10,25,50", param="ramp"
        )
    return shares


def parse_step_after(text: str) -> tuple[str, float]:
    """``200`` (challenger requests since the last step) or ``30m`` / ``90s`` / ``2h`` (time since it)."""
    m = STEP_RE.match(text.strip())
    if m is None or float(m["n"]) <= 0 or (m["unit"] is None and not m["n"].isdigit()):
        raise InvalidRequest(
            f"step_after {text!r}: a number of requests (200) or a duration (30m, 90s, 2h)",
            param="step_after",
        )
    if m["unit"] is None:
        return "requests", float(m["n"])
    return "minutes", float(m["n"]) * UNIT_MINUTES[m["unit"]]


def ramp_fields(request: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """The release's ramp fields (none without ``ramp``): checked before anything is stored."""
    if not request.get("ramp"):
        if request.get("step_after"):
            raise InvalidRequest(
                "step_after: give --ramp too (the shares to step through)", param="step_after"
            )
        return {}
    shares = parse_ramp(str(request["ramp"]))
    step_after = str(request.get("step_after") or "200")
    parse_step_after(step_after)
    if request.get("share") is not None and int(request["share"]) != shares[0]:
        raise InvalidRequest(
            f"share {request['share']}: with a ramp the release starts at its first step ({shares[0]})",
            param="share",
        )
    return {
        "ramp": shares,
        "step": 0,
        "step_after": step_after,
        "step_since": now.isoformat(),
        "step_from": 0,
    }


def ramping(release: Mapping[str, Any]) -> bool:
    """Whether the release has steps left to climb (the promote rule waits for the last one)."""
    return bool(release.get("ramp")) and int(release["step"]) < len(release["ramp"]) - 1


def step_due(release: Mapping[str, Any], ev: Evidence) -> str:
    """Why the share should go up now (for the audit and the status), or "" while it should not."""
    kind, amount = parse_step_after(str(release["step_after"]))
    if kind == "requests":
        done = ev.facts["requests"] - float(release["step_from"])
        reached = f"requests >= {int(amount)} since the last step"
    else:
        since = datetime.fromisoformat(str(release["step_since"]))
        done = (datetime.now(UTC) - since).total_seconds() / 60
        reached = f"minutes >= {amount:g} since the last step"
    if done < amount or ev.worse(""):
        return ""
    return f"{reached} and not worse"


def step_up(
    book: ExperimentBook, row: ExperimentRow, variants: tuple[str, str], ev: Evidence, actor: Actor, why: str
) -> ExperimentRow:
    """Raise the challenger (``variants``: the stable one's name, the challenger's) to the next step of its
    ramp; refused (Conflict) if the row changed since it was read (another gateway stepped first)."""
    stable, challenger = variants
    rel = dict(row.guard["release"])
    rel["step"] = int(rel["step"]) + 1
    rel["share"] = share = int(rel["ramp"][rel["step"]])
    rel["step_since"], rel["step_from"] = datetime.now(UTC).isoformat(), int(ev.facts["requests"])
    guard = row.guard | {"release": rel, "reason": f"stepped to {share}%: {why}"}
    return book.reweigh(row.name, {stable: 100 - share, challenger: share}, actor, guard, row.revision)
