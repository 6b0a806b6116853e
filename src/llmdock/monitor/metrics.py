"""The gateway's Prometheus metrics: what each finished request did, and what the routes are doing now.

The request path only tallies. :meth:`RequestMetrics.record` is a trace-sink observer: it adds a finished
request's :class:`TraceRecord` to plain dictionaries (a few dictionary updates; bench/metrics_overhead.py
measures it). Every ``metrics.flush_interval_s``, and before each scrape, :meth:`RequestMetrics.flush` moves
the tallies into prometheus-client's instruments and samples the gauges (breakers, in-flight and queued
requests, the trace writer's backlog). Under ``llmdock serve --workers N`` the instruments write to
prometheus-client's per-process files (multiprocess mode), so any worker's ``/metrics`` reports the server.

Every label comes from the configuration or a fixed set (model, deployment, route, HTTP status, stage,
detector, action, error code): no user, key, trace id or text is ever a label.
"""

from __future__ import annotations

import asyncio
import logging
import re
from bisect import bisect_left
from collections.abc import Callable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary

from llmdock.routing.router import ModelRoute
from llmdock.store.trace_records import TraceRecord

log = logging.getLogger("llmdock.monitor")

# Seconds: stages take from well under a millisecond (pre-process, cache) to minutes (long generations).
BUCKETS_S = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
)
BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}
_CODE = re.compile(r"[a-z_]{1,40}")
Labels = tuple[str, ...]

# name -> (kind, help, label names); kind: counter | histogram | gauge:<multiprocess mode>
INSTRUMENTS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "llmdock_requests_total": (
        "counter",
        "Finished requests by model, serving deployment, route (chat, completion, embedding, responses) "
        "and HTTP status",
        ("model", "deployment", "route", "status"),
    ),
    "llmdock_request_errors_total": (
        "counter",
        "Failed requests by model, route and llmdock error code",
        ("model", "route", "code"),
    ),
    "llmdock_request_duration_seconds": (
        "histogram",
        "Whole-request latency inside the gateway",
        ("model", "route"),
    ),
    "llmdock_stage_duration_seconds": (
        "histogram",
        "Latency of each pipeline stage (and of each guard detector: guard_in.NAME, guard_out.NAME)",
        ("model", "stage"),
    ),
    "llmdock_time_to_first_token_seconds": (
        "histogram",
        "Streamed requests: from the request's start to its first chunk",
        ("model",),
    ),
    "llmdock_tokens_total": (
        "counter",
        "Tokens by model and direction (input, output)",
        ("model", "direction"),
    ),
    "llmdock_cost_total": (
        "counter",
        "What requests cost at their deployment's price (the price's currency units)",
        ("model", "deployment"),
    ),
    "llmdock_cache_lookups_total": (
        "counter",
        "Cache stage outcomes by model (hit, semantic-hit, miss, bypass, skip, off)",
        ("model", "result"),
    ),
    "llmdock_guard_verdicts_total": (
        "counter",
        "Guard detector verdicts by stage, detector and action applied (pass when not flagged, error when "
        "the detector failed)",
        ("stage", "detector", "action"),
    ),
    "llmdock_breaker_state": (
        "gauge:livemax",
        "Circuit breaker of each deployment: 0 closed, 1 half-open, 2 open (the worst over workers)",
        ("model", "deployment"),
    ),
    "llmdock_in_flight_requests": (
        "gauge:livesum",
        "Requests running or queued at each deployment, summed over workers",
        ("model", "deployment"),
    ),
    "llmdock_queued_requests": (
        "gauge:livesum",
        "Requests waiting for a batch slot of a local model, summed over workers",
        ("model", "deployment"),
    ),
    "llmdock_trace_writer_pending": (
        "gauge:livesum",
        "Finished traces not yet in the store, summed over workers",
        (),
    ),
    # Online evaluation (monitor/online_eval.py): written by the evaluating worker, off the request path.
    "llmdock_online_eval_score": (
        "summary",
        "Online-evaluation scores by model and metric (the rule's metric name); mean = rate(_sum) / rate(_count)",
        ("model", "metric"),
    ),
    "llmdock_online_eval_traces_total": (
        "counter",
        "Traces the online evaluator finished, by model and outcome (scored, error, skipped, dropped)",
        ("model", "outcome"),
    ),
    "llmdock_online_eval_backlog": (
        "gauge:livesum",
        "Claimed traces waiting to be scored by the online evaluator",
        (),
    ),
}


class Tally:
    """What requests did since the last flush: counter amounts and histogram rows by label values."""

    __slots__ = ("counters", "histograms")

    def __init__(self) -> None:
        self.counters: dict[tuple[str, Labels], float] = {}
        # [sum, count in bucket 0, …, count in the +Inf bucket]: Prometheus's buckets, not cumulative
        self.histograms: dict[tuple[str, Labels], list[float]] = {}

    def add(self, name: str, labels: Labels, amount: float = 1.0) -> None:
        key = (name, labels)
        self.counters[key] = self.counters.get(key, 0.0) + amount

    def observe(self, name: str, labels: Labels, seconds: float) -> None:
        key = (name, labels)
        row = self.histograms.get(key)
        if row is None:
            row = self.histograms[key] = [0.0] * (len(BUCKETS_S) + 2)
        row[0] += seconds
        row[1 + bisect_left(BUCKETS_S, seconds)] += 1


def tally_record(t: Tally, rec: TraceRecord) -> None:
    """Add one finished request to ``t``."""
    model = rec.model
    route = str(rec.attributes.get("llmdock.api") or rec.operation)
    t.add("llmdock_requests_total", (model, rec.deployment, route, str(rec.http_status)))
    if rec.status == "error":
        code = rec.error.partition(":")[0]
        t.add("llmdock_request_errors_total", (model, route, code if _CODE.fullmatch(code) else "other"))
    t.observe("llmdock_request_duration_seconds", (model, route), rec.duration_ms / 1000)
    if rec.prompt_tokens:
        t.add("llmdock_tokens_total", (model, "input"), rec.prompt_tokens)
    if rec.completion_tokens:
        t.add("llmdock_tokens_total", (model, "output"), rec.completion_tokens)
    if rec.cost:
        t.add("llmdock_cost_total", (model, rec.deployment), rec.cost)
    if rec.cache:
        t.add("llmdock_cache_lookups_total", (model, rec.cache))
    for span in rec.spans:
        t.observe("llmdock_stage_duration_seconds", (model, span.name), span.duration_ms / 1000)
        attrs = span.attributes
        if "flagged" in attrs and "." in span.name:  # a guard detector's span: guard_in.injection …
            stage, _, detector = span.name.partition(".")
            action = "error" if "error" in attrs else (str(attrs["action"]) if attrs["flagged"] else "pass")
            t.add("llmdock_guard_verdicts_total", (stage, detector, action))
        elif span.name == "generate":
            ttft = attrs.get("llmdock.time_to_first_token_ms")
            if ttft is not None:
                t.observe("llmdock_time_to_first_token_seconds", (model,), ttft / 1000)


def _instrument(name: str, registry: CollectorRegistry) -> Counter | Histogram | Gauge | Summary:
    kind, doc, labels = INSTRUMENTS[name]
    if kind == "counter":
        return Counter(name, doc, labels, registry=registry)
    if kind == "summary":
        return Summary(name, doc, labels, registry=registry)
    if kind == "histogram":
        return Histogram(name, doc, labels, buckets=BUCKETS_S, registry=registry)
    if kind == "gauge:livemax":
        return Gauge(name, doc, labels, registry=registry, multiprocess_mode="livemax")
    return Gauge(name, doc, labels, registry=registry, multiprocess_mode="livesum")


class RequestMetrics:
    """The gateway's instruments, the tally the request path adds to, and the gauges sampled at each flush.

    ``routes`` are the served models; ``backlog`` returns the trace writer's pending count (None: no writer).
    """

    def __init__(
        self,
        routes: Mapping[str, ModelRoute],
        backlog: Callable[[], int | None] | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.registry = registry or CollectorRegistry()
        self.instruments = {name: _instrument(name, self.registry) for name in INSTRUMENTS}
        self.routes = routes
        self.backlog = backlog
        self._tally = Tally()
        self._children: dict[tuple[str, Labels], Any] = {}
        self._task: asyncio.Task[None] | None = None

    def record(self, rec: TraceRecord) -> None:
        """The trace sink's observer: tally one finished request (the request path's whole cost)."""
        tally_record(self._tally, rec)

    # What the online evaluator reports (its EvalMetrics protocol); called on the event loop, off the request
    # path, straight into the instruments: a scored trace is rare next to a request.
    def online_score(self, model: str, metric: str, value: float) -> None:
        self._child("llmdock_online_eval_score", (model, metric)).observe(value)

    def online_traces(self, model: str, outcome: str, n: int = 1) -> None:
        self._child("llmdock_online_eval_traces_total", (model, outcome)).inc(n)

    def online_backlog(self, n: int) -> None:
        self._child("llmdock_online_eval_backlog", ()).set(n)

    def _child(self, name: str, labels: Labels) -> Any:
        key = (name, labels)
        child = self._children.get(key)
        if child is None:
            metric = self.instruments[name]
            child = self._children[key] = metric.labels(*labels) if labels else metric
        return child

    def flush(self) -> None:
        """Publish what was tallied since the last flush, and sample the gauges."""
        tally, self._tally = self._tally, Tally()
        for (name, labels), amount in tally.counters.items():
            self._child(name, labels).inc(amount)
        for (name, labels), row in tally.histograms.items():
            child = self._child(name, labels)
            # prometheus-client has no call adding a batch of observations: its children keep a value for
            # the sum and one per bucket (not cumulative), which observe() itself increments.
            child._sum.inc(row[0])
            for bucket, count in zip(child._buckets, row[1:], strict=True):
                if count:
                    bucket.inc(count)
        self._sample()

    def _sample(self) -> None:
        for model, route in self.routes.items():
            for dep in route.deployments:
                labels = (model, dep.id)
                self._child("llmdock_breaker_state", labels).set(BREAKER_STATES[dep.breaker.state])
                self._child("llmdock_in_flight_requests", labels).set(dep.in_flight)
                self._child("llmdock_queued_requests", labels).set(_queued(dep.backend))
        pending = self.backlog() if self.backlog is not None else None
        if pending is not None:
            self._child("llmdock_trace_writer_pending", ()).set(pending)

    def start(self, interval_s: float) -> None:
        """Flush every ``interval_s`` on the running loop, off the request path, until :meth:`stop`."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(interval_s))

    async def _run(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                self.flush()
            except Exception:  # metrics must never take the gateway down
                log.exception("cannot publish metrics")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self.flush()


def _queued(backend: Any) -> int:
    """Requests waiting for a slot of a local model's batch engine (0 for backends without a queue)."""
    return int(backend.info().get("batching", {}).get("waiting_sequences", 0))
