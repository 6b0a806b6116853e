"""Traces leave over OTLP/HTTP with GenAI semantic-convention attributes when the standard env var is set."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from llmdock.backends.base import GenerationRequest, SamplingParams
from llmdock.pipeline import RequestContext
from llmdock.runtime import Runtime
from tests.conftest import fake_settings


class Collector:
    """A minimal OTLP/HTTP trace receiver on a free loopback port."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                req = ExportTraceServiceRequest()
                req.ParseFromString(body)
                collector.requests.append(req)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def spans(self) -> list[object]:
        return [
            s for r in self.requests for rs in r.resource_spans for ss in rs.scope_spans for s in ss.spans
        ]


@pytest.fixture
def collector() -> Iterator[Collector]:
    c = Collector()
    yield c
    c.server.shutdown()


async def test_a_request_is_exported_as_one_root_span_and_one_child_per_stage(
    tmp_path: Path, collector: Collector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
    runtime = Runtime(fake_settings(tmp_path))
    assert runtime.otlp is not None
    req = GenerationRequest(
        "chat", SamplingParams(temperature=0.5, max_tokens=20), messages=[{"role": "user", "content": "hi"}]
    )
    ctx = await runtime.pipeline.run(RequestContext("chat", "fake", runtime.backend("fake"), request=req))
    await runtime.close()  # shutdown flushes the batch processor

    spans = collector.spans()
    by_name = {s.name: s for s in spans}  # type: ignore[attr-defined]
    assert set(by_name) == {
        "chat fake",
        "llmdock.stage preprocess",
        "llmdock.stage cache",
        "llmdock.stage generate",
        "llmdock.stage structured",
        "llmdock.stage postprocess",
    }
    root = by_name["chat fake"]
    attrs = {a.key: a.value for a in root.attributes}
    assert attrs["gen_ai.operation.name"].string_value == "chat"
    assert attrs["gen_ai.request.model"].string_value == "fake"
    assert attrs["gen_ai.request.temperature"].double_value == 0.5
    assert attrs["gen_ai.usage.output_tokens"].int_value == ctx.generation.completion_tokens  # type: ignore[union-attr]
    assert attrs["llmdock.trace_id"].string_value == ctx.trace_id
    for name in ("preprocess", "generate", "postprocess"):
        child = by_name[f"llmdock.stage {name}"]
        assert child.parent_span_id == root.span_id
        assert child.trace_id == root.trace_id
