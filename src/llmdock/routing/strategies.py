"""Routing strategies: each orders the available deployments of one priority group, best first."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llmdock.routing.deployment import Deployment

Order = Callable[[Sequence["Deployment"], random.Random, int], list["Deployment"]]


def weighted(deps: Sequence[Deployment], rng: random.Random, _turn: int) -> list[Deployment]:
    """A random order where each deployment comes first with probability weight / total weight.

    Efraimidis-Spirakis keys (u ** (1 / w)) give a weighted permutation, so retries go on to the others.
    """
    positive = [d for d in deps if d.config.weight > 0]
    keyed = sorted(positive, key=lambda d: rng.random() ** (1.0 / d.config.weight), reverse=True)
    return keyed + [d for d in deps if d.config.weight <= 0]


def round_robin(deps: Sequence[Deployment], _rng: random.Random, turn: int) -> list[Deployment]:
    if not deps:
        return []
    start = turn % len(deps)
    return list(deps[start:]) + list(deps[:start])


def least_busy(deps: Sequence[Deployment], rng: random.Random, _turn: int) -> list[Deployment]:
    shuffled = list(deps)
    rng.shuffle(shuffled)  # ties broken at random, not always to the first configured
    return sorted(shuffled, key=lambda d: d.in_flight)


def lowest_latency(deps: Sequence[Deployment], rng: random.Random, _turn: int) -> list[Deployment]:
    shuffled = list(deps)
    rng.shuffle(shuffled)
    # Unmeasured deployments sort first, so each gets measured.
    return sorted(shuffled, key=lambda d: -1.0 if d.latency_ms is None else d.latency_ms)


def lowest_cost(deps: Sequence[Deployment], rng: random.Random, _turn: int) -> list[Deployment]:
    shuffled = list(deps)
    rng.shuffle(shuffled)
    return sorted(shuffled, key=lambda d: d.config.price.input_per_1m + d.config.price.output_per_1m)


STRATEGIES: dict[str, Order] = {
    "weighted": weighted,
    "round-robin": round_robin,
    "least-busy": least_busy,
    "lowest-latency": lowest_latency,
    "lowest-cost": lowest_cost,
}
