"""The operation codecs (backends/operations.py) and the one map of upstream transport errors."""

from __future__ import annotations

import httpx
import pytest

from llmdock.backends.base import Generation, GenerationRequest, SamplingParams, StreamChunk
from llmdock.backends.http1 import ConnectionClosed, InvalidResponse
from llmdock.backends.operations import CHAT, COMPLETION, EMBEDDING, OPERATIONS
from llmdock.backends.upstream_errors import TRANSPORT_FAILURES, transport_error
from llmdock.errors import BackendError, BackendUnavailable, InvalidRequest, RateLimited


def test_a_request_finds_its_codec_by_name() -> None:
    assert GenerationRequest("chat", SamplingParams(), messages=[]).op is CHAT
    assert GenerationRequest("completion", SamplingParams(), prompt="").op is COMPLETION
    assert {name: op.name for name, op in OPERATIONS.items()} == {
        "chat": "chat",
        "completion": "completion",
        "embedding": "embedding",
    }


def test_what_differs_between_operations() -> None:
    assert [op.param for op in (CHAT, COMPLETION, EMBEDDING)] == ["messages", "prompt", "input"]
    assert [op.otel_name for op in (CHAT, COMPLETION, EMBEDDING)] == ["chat", "text_completion", "embedding"]
    assert [op.upstream_path for op in (CHAT, COMPLETION, EMBEDDING)] == [
        "/chat/completions",
        "/completions",
        "/embeddings",
    ]
    assert [op.embeds for op in (CHAT, COMPLETION, EMBEDDING)] == [False, False, True]


def test_input_is_read_from_the_field_of_the_operation() -> None:
    chat = GenerationRequest("chat", SamplingParams(), messages=[{"role": "user", "content": "hi"}])
    completion = GenerationRequest("completion", SamplingParams(), prompt="once")
    for req, expected in ((chat, "messages:1"), (completion, "prompt:once")):
        assert req.op.read_input(req, lambda m: f"messages:{len(m)}", lambda p: f"prompt:{p}") == expected
    assert getattr(chat, CHAT.param) == chat.messages
    assert getattr(completion, COMPLETION.param) == "once"
    two = GenerationRequest(
        "chat", SamplingParams(), messages=[{"role": "system", "content": "be brief"}, {"role": "user"}]
    )
    assert CHAT.text_of(two) == "be brief\n"
    assert COMPLETION.text_of(completion) == "once"


def test_a_template_goes_in_front_of_the_input() -> None:
    chat = GenerationRequest("chat", SamplingParams(), messages=[{"role": "user", "content": "hi"}])
    CHAT.apply_template(chat, "be brief", chat_template=False, name="t")
    assert chat.messages == [{"role": "user", "content": "be brief"}, {"role": "user", "content": "hi"}]
    completion = GenerationRequest("completion", SamplingParams(), prompt="end")
    COMPLETION.apply_template(completion, "start ", chat_template=False, name="t")
    assert completion.prompt == "start end"
    with pytest.raises(InvalidRequest, match="'t' is a chat template"):
        COMPLETION.apply_template(completion, [], chat_template=True, name="t")


def test_upstream_choices_and_deltas_are_read_per_operation() -> None:
    calls = [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    assert CHAT.read_choice({"message": {"content": "hi"}}) == ("hi", None)
    assert CHAT.read_choice({"message": {"content": None, "tool_calls": calls}}) == (None, calls)
    assert COMPLETION.read_choice({"text": "hi"}) == ("hi", None)
    assert CHAT.read_delta({"delta": {"content": "h"}}) == ("h", [])
    assert CHAT.read_delta({"delta": {"tool_calls": calls}}) == (None, calls)
    assert COMPLETION.read_delta({"text": "h"}) == ("h", [])


def test_answers_are_shaped_per_operation() -> None:
    gen = Generation("hi", 1, 1)
    assert CHAT.response_choice(gen) == {
        "index": 0,
        "message": {"role": "assistant", "content": "hi"},
        "finish_reason": "stop",
        "logprobs": None,
    }
    assert COMPLETION.response_choice(gen) == {
        "index": 0,
        "text": "hi",
        "finish_reason": "stop",
        "logprobs": None,
    }
    assert CHAT.opening_choice() == {
        "index": 0,
        "delta": {"role": "assistant", "content": ""},
        "finish_reason": None,
    }
    assert COMPLETION.opening_choice() is None
    chunk = StreamChunk("h", "stop")
    assert CHAT.chunk_choice(chunk) == {"index": 0, "delta": {"content": "h"}, "finish_reason": "stop"}
    assert CHAT.chunk_choice(StreamChunk("")) == {"index": 0, "delta": {}, "finish_reason": None}
    assert COMPLETION.chunk_choice(chunk) == {
        "index": 0,
        "text": "h",
        "logprobs": None,
        "finish_reason": "stop",
    }


@pytest.mark.parametrize(
    ("raised", "error", "message"),
    [
        (TimeoutError(), BackendUnavailable, "upstream timed out"),
        (httpx.ReadTimeout("slow"), BackendUnavailable, "upstream timed out"),
        (InvalidResponse("upstream sent junk"), BackendError, "upstream sent junk"),
        (ConnectionClosed("closed early"), BackendUnavailable, "upstream unreachable: closed early"),
        (ConnectionRefusedError(), BackendUnavailable, "upstream unreachable: ConnectionRefusedError"),
        (httpx.ConnectError("refused"), BackendUnavailable, "upstream unreachable: refused"),
    ],
)
def test_transport_failures_map_to_llmdock_errors_in_one_place(
    raised: BaseException, error: type[BackendError], message: str
) -> None:
    assert isinstance(raised, TRANSPORT_FAILURES)
    mapped = transport_error(raised, "upstream http://x/v1")
    assert type(mapped) is error
    assert mapped.message == message
    assert mapped.where == "upstream http://x/v1"


def test_other_exceptions_are_not_transport_failures() -> None:
    for other in (RateLimited("slow down"), ValueError("bad json")):
        assert not isinstance(other, TRANSPORT_FAILURES)
        with pytest.raises(TypeError, match="not a transport failure"):
            transport_error(other, "upstream")
