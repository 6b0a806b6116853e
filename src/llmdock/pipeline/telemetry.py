"""Turns finished requests into trace records (store) and OpenTelemetry spans (OTLP, when configured).

Attribute names follow the OpenTelemetry GenAI semantic conventions (``gen_ai.*``). OTLP export is on
when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set; spans are batched
by the SDK's BatchSpanProcessor, off the request path.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from llmdock.backends.operations import OPERATIONS
from llmdock.pipeline.context import RequestContext
from llmdock.store.ingest_client import IngestedWriter
from llmdock.store.trace_policy import TraceSampling
from llmdock.store.trace_records import TraceRecord
from llmdock.store.trace_writer import TraceWriter


def trace_record(ctx: RequestContext, *, store_bodies: bool = True) -> TraceRecord:
    req = ctx.request
    gen = ctx.generation
    params = req.params if req else None
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": OPERATIONS[ctx.operation].otel_name,
        "gen_ai.request.model": ctx.model,
        "gen_ai.provider.name": _provider(ctx),
        "llmdock.source": ctx.source,
        **ctx.attributes,
    }
    if params is not None:
        for name in ("temperature", "top_p", "max_tokens", "seed", "presence_penalty", "frequency_penalty"):
            value = getattr(params, name)
            if value is not None:
                attributes[f"gen_ai.request.{name}"] = value
        if params.stop:
            attributes["gen_ai.request.stop_sequences"] = list(params.stop)
    inputs: dict[str, Any] = {}
    if store_bodies:
        if req is not None and req.messages is not None:
            inputs["messages"] = req.messages
        elif req is not None:
            inputs["prompt"] = req.prompt
        elif ctx.inputs:
            inputs["input"] = ctx.inputs
        if ctx.reasoning:  # kept with the bodies: redacted and sealed like the messages
            inputs["reasoning"] = ctx.reasoning
    prompt_tokens, completion_tokens = token_counts(ctx)
    served = req.route.get("served", {}) if req else {}
    cache = str(ctx.attributes.get("llmdock.cache", ""))
    cost = request_cost(ctx, prompt_tokens, completion_tokens)
    if cost:
        attributes["llmdock.cost"] = cost
    return TraceRecord(
        id=ctx.trace_id,
        created_at=ctx.created_at,
        operation=ctx.operation,
        model=ctx.model,
        backend=str(attributes["gen_ai.provider.name"]),
        status=ctx.status,
        http_status=ctx.http_status,
        stream=ctx.stream,
        duration_ms=(time.perf_counter() - ctx.started) * 1000,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        finish_reason=gen.finish_reason if gen else "",
        error=ctx.error,
        input=inputs,
        output=(gen.text if gen else "") if store_bodies else "",
        attributes=attributes,
        deployment=str(served.get("deployment", "")),
        cost=cost,
        cache=cache,
        subject=ctx.subject,
        api_key_id=ctx.api_key_id,
        team_id=ctx.team_id,
        spans=list(ctx.spans),
    )


def token_counts(ctx: RequestContext) -> tuple[int, int]:
    """(prompt, completion) tokens of a finished request, as reported to the client and on the trace."""
    req, gen = ctx.request, ctx.generation
    prompt = req.n_prompt_tokens if req else (ctx.embedding.prompt_tokens if ctx.embedding else 0)
    if gen and gen.prompt_tokens:
        prompt = gen.prompt_tokens
    return prompt, gen.completion_tokens if gen else 0


def request_cost(ctx: RequestContext, prompt_tokens: int, completion_tokens: int) -> float:
    """What the request cost at the serving deployment's price; cache hits cost nothing."""
    served = ctx.request.route.get("served", {}) if ctx.request else {}
    price = served.get("price")
    if price is None or "hit" in str(ctx.attributes.get("llmdock.cache", "")):
        return 0.0
    cost: float = price.cost(prompt_tokens, completion_tokens)
    return cost


def _provider(ctx: RequestContext) -> str:
    """The kind of backend that served (or would have served) the request."""
    deployments = getattr(ctx.backend, "deployments", None)
    return deployments[0].backend.kind if deployments else ctx.backend.kind


class OtlpExporter:
    """Re-creates each finished trace as OpenTelemetry spans (one root, one child per stage)."""

    def __init__(self) -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        self.provider = TracerProvider(resource=Resource.create({"service.name": "llmdock"}))
        self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        self.tracer = self.provider.get_tracer("llmdock")

    def export(self, rec: TraceRecord) -> None:
        from opentelemetry import trace as otel_trace

        start_ns = int(rec.created_at.timestamp() * 1e9)
        root = self.tracer.start_span(
            f"{rec.attributes.get('gen_ai.operation.name', rec.operation)} {rec.model}",
            start_time=start_ns,
            attributes=_otel_attrs(
                {
                    **rec.attributes,
                    "gen_ai.usage.input_tokens": rec.prompt_tokens,
                    "gen_ai.usage.output_tokens": rec.completion_tokens,
                    "llmdock.trace_id": rec.id,
                    "llmdock.status": rec.status,
                }
            ),
        )
        parent = otel_trace.set_span_in_context(root)
        for span in rec.spans:
            s_start = int(span.started_at.timestamp() * 1e9)
            child = self.tracer.start_span(
                f"llmdock.stage {span.name}",
                context=parent,
                start_time=s_start,
                attributes=_otel_attrs(span.attributes),
            )
            if span.status != "ok":
                child.set_status(otel_trace.Status(otel_trace.StatusCode.ERROR, span.status))
            child.end(end_time=s_start + int(span.duration_ms * 1e6))
        if rec.status == "error":
            root.set_status(otel_trace.Status(otel_trace.StatusCode.ERROR, rec.error[:200]))
        root.end(end_time=start_ns + int(rec.duration_ms * 1e6))

    def shutdown(self) -> None:
        self.provider.force_flush()
        self.provider.shutdown()


def _otel_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        if isinstance(value, str | bool | int | float) or (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        ):
            out[key] = value
        elif value is not None:
            out[key] = str(value)
    return out


def otlp_configured() -> bool:
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


class TraceSink:
    """The pipeline's sink: store the trace (batched, off the hot path) and export it over OTLP if set.

    ``observers`` see every finished trace record too (the gateway's Prometheus metrics tally them: see
    llmdock.monitor.metrics); they run on the request path, so they must be cheap and must not raise.
    """

    def __init__(
        self,
        writer: TraceWriter | IngestedWriter | None,
        *,
        store_bodies: bool = True,
        otlp: OtlpExporter | None = None,
        sampling: TraceSampling | None = None,
    ):
        self.writer = writer
        self.store_bodies = store_bodies
        self.otlp = otlp
        # trace.sample / trace.sampling: which stored traces keep bodies and spans (None: all of them).
        # Observers and OTLP see every trace whole (OTLP has its own sampler: OTEL_TRACES_SAMPLER).
        self.sampling = None if sampling is None or sampling.keeps_all else sampling
        self.observers: list[Callable[[TraceRecord], None]] = []

    def __call__(self, ctx: RequestContext) -> None:
        rec = trace_record(ctx, store_bodies=self.store_bodies)
        for observe in self.observers:
            observe(rec)
        if self.otlp is not None:
            self.otlp.export(rec)
        if self.writer is not None:
            if self.sampling is not None:
                self.sampling.apply(rec)
            if self.writer.prepare is not None:  # it takes them off the record before the trace is written
                rec.pii_analyses = ctx.pii_analyses
            ctx.durable = self.writer.submit(rec)
