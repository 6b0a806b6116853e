"""A URL target asks any OpenAI-compatible server over a real socket: through the gateway's keep-alive pool,
or through httpx when a proxy variable covers the URL; a server that fails or cannot be reached makes the
case errored with a one-line reason, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmdock.errors import ConfigError
from llmdock.evaluate import Case, Output
from llmdock.evaluate.suite import TargetSpec, load_suite
from llmdock.evaluate.targets import UrlTarget, failure
from tests.upstream import Upstream

CASE = Case(id="q1", input="Where is Paris?", expected="France", where="qa.jsonl:1")


async def ask_once(url: str) -> tuple[UrlTarget, Output]:
    """One case asked of ``url`` by a new target, closed afterwards."""
    target = UrlTarget(TargetSpec(url=url, model="m"))
    try:
        return target, await target.answer(CASE, seed=0, max_tokens=8)
    finally:
        await target.close()


async def test_cases_share_one_kept_alive_connection_and_read_the_answer_and_usage() -> None:
    upstream = Upstream("far")
    target = UrlTarget(TargetSpec(url=upstream.url, model="m", params={"temperature": 0}))
    try:
        outputs = [await target.answer(CASE, seed=s, max_tokens=8) for s in range(3)]
        assert target.pool is not None
        assert len(target.pool._idle) == 1  # the three calls went one after another over one connection
    finally:
        await target.close()
        upstream.stop()
    assert [o.text for o in outputs] == ["reply from far"] * 3
    assert (outputs[0].prompt_tokens, outputs[0].completion_tokens) == (3, 3)
    assert outputs[0].served == {"model": "m", "url": upstream.url}
    assert [b["seed"] for b in upstream.bodies] == [0, 1, 2]
    assert upstream.bodies[0]["temperature"] == 0
    assert upstream.last_authorization == "Bearer unused"


async def test_a_failing_or_unreachable_server_makes_the_case_errored_with_its_reason() -> None:
    upstream = Upstream("far", mode="500")
    _, broken = await ask_once(upstream.url)
    upstream.stop()
    assert broken.error == "HTTP 500: far is broken"
    _, refused = await ask_once(upstream.url)  # the server stopped: connection refused
    assert refused.error.startswith(f"{upstream.url}: ")
    assert "Connect" in refused.error or "refused" in refused.error


async def test_through_a_proxy_variable_the_target_asks_via_httpx(monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = Upstream("proxy")  # answers the absolute-form request a proxy gets
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    try:
        target, output = await ask_once("http://upstream.invalid/v1")
    finally:
        proxy.stop()
    assert output.error == ""
    assert output.text == "reply from proxy"
    assert target.pool is None
    assert target.client is not None


def test_a_url_that_is_not_http_is_a_suite_error_at_its_line(tmp_path: Path) -> None:
    (tmp_path / "cases.jsonl").write_text('{"input": "hi"}\n')
    path = tmp_path / "suite.yaml"
    path.write_text(
        "dataset: cases.jsonl\ntargets:\n  - url: localhost:8000/v1\n    model: m\nassert:\n  - type: equals\n"
    )
    with pytest.raises(ConfigError) as info:
        load_suite(path)
    assert info.value.one_line().startswith(f"{path}:3: targets.0: ")
    assert "`url` is an http:// or https:// address, not 'localhost:8000/v1'" in info.value.one_line()


def test_an_answer_that_is_not_a_chat_completion_is_named_not_a_traceback() -> None:
    assert failure(200, {"object": "list"}, b'{"object": "list"}') == (
        'HTTP 200 without a chat completion: {"object": "list"}'
    )
    assert failure(404, None, b"Not Found") == "HTTP 404: Not Found"
    assert failure(400, {"error": {"message": "bad seed"}}, b"...") == "HTTP 400: bad seed"
    assert failure(502, {"error": "upstream gone"}, b"...") == "HTTP 502: upstream gone"
