"""Log-probabilities without a model: the OpenAI shapes both ways, text offsets, the perplexity arithmetic,
and what the API refuses (a backend that gives none, fields that do not go together)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from llmdock.backends.base import Generation, StreamChunk
from llmdock.backends.logprobs import Alternative, Logprobs, Placer, TokenLogprob, perplexity, token_text
from llmdock.backends.operations import CHAT, COMPLETION
from llmdock.evaluate import Case, Check, MetricError, Output
from llmdock.evaluate.metrics.perplexity import PerplexityMetric, reference_logprobs
from llmdock.runtime import Runtime
from tests.conftest import Gateway, fake_settings

PARIS = TokenLogprob(
    " Paris",
    b" Paris",
    -0.25,
    (Alternative(" Paris", b" Paris", -0.25), Alternative(" Lyon", b" Lyon", -2.5)),
    3,
)
DOT = TokenLogprob(".", b".", -0.5, (Alternative(".", b".", -0.5), Alternative("!", b"!", -1.5)), 9)


def test_a_chat_choice_carries_openai_content_logprobs() -> None:
    gen = Generation(" Paris.", 3, 2, logprobs=Logprobs([PARIS, DOT], " Paris."))
    choice = CHAT.response_choice(gen)
    assert choice["logprobs"] == {
        "content": [
            {
                "token": " Paris",
                "logprob": -0.25,
                "bytes": list(b" Paris"),
                "top_logprobs": [
                    {"token": " Paris", "logprob": -0.25, "bytes": list(b" Paris")},
                    {"token": " Lyon", "logprob": -2.5, "bytes": list(b" Lyon")},
                ],
            },
            {
                "token": ".",
                "logprob": -0.5,
                "bytes": [46],
                "top_logprobs": [
                    {"token": ".", "logprob": -0.5, "bytes": [46]},
                    {"token": "!", "logprob": -1.5, "bytes": [33]},
                ],
            },
        ]
    }
    read = CHAT.read_logprobs(choice)
    assert read is not None
    assert [(t.token, t.raw, t.logprob, t.top, t.offset) for t in read] == [
        (" Paris", b" Paris", -0.25, PARIS.top, 0),
        (".", b".", -0.5, DOT.top, 6),
    ]


def test_a_completion_choice_carries_tokens_logprobs_top_and_offsets() -> None:
    first = TokenLogprob("The", b"The", None, (), 0)
    gen = Generation(".", 3, 1, logprobs=Logprobs([first, PARIS, DOT], ".", n_prompt=2))
    assert COMPLETION.response_choice(gen)["logprobs"] == {
        "tokens": ["The", " Paris", "."],
        "token_logprobs": [None, -0.25, -0.5],
        "top_logprobs": [None, {" Paris": -0.25, " Lyon": -2.5}, {".": -0.5, "!": -1.5}],
        "text_offset": [0, 3, 9],
    }
    read = COMPLETION.read_logprobs(COMPLETION.response_choice(gen))
    assert read is not None
    assert [(t.token, t.logprob, t.offset) for t in read] == [
        ("The", None, 0),
        (" Paris", -0.25, 3),
        (".", -0.5, 9),
    ]


def test_stream_chunks_carry_their_tokens_and_plain_chunks_stay_as_they_were() -> None:
    chunk = StreamChunk(" Paris", logprobs=[PARIS])
    assert CHAT.chunk_choice(chunk)["logprobs"]["content"][0]["token"] == " Paris"
    assert COMPLETION.chunk_choice(chunk)["logprobs"]["tokens"] == [" Paris"]
    assert "logprobs" not in CHAT.chunk_choice(StreamChunk(" Paris"))
    assert COMPLETION.chunk_choice(StreamChunk(" Paris"))["logprobs"] is None
    assert CHAT.response_choice(Generation("hi", 1, 1))["logprobs"] is None


def test_upstream_fields_ask_as_the_request_does() -> None:
    from llmdock.backends.base import GenerationRequest, SamplingParams

    chat = GenerationRequest("chat", SamplingParams(), messages=[], logprobs=3)
    text = GenerationRequest("completion", SamplingParams(), prompt="x", logprobs=0, echo=True)
    assert CHAT.logprobs_fields(chat) == {"logprobs": True, "top_logprobs": 3}
    assert COMPLETION.logprobs_fields(text) == {"logprobs": 0, "echo": True}


def test_offsets_count_characters_a_split_character_where_it_ends_and_skip_an_added_bos() -> None:
    euro = "€".encode()
    tokens = [TokenLogprob(token_text(b), b, -1.0) for b in (b"<s>", b"5 ", euro[:1], euro[1:], b"!")]
    placed = Placer(10, skip_first=True).place(tokens)
    assert [t.offset for t in placed] == [10, 10, 12, 12, 13]
    assert tokens[2].token == "bytes:\\xe2"


def test_perplexity_is_exp_of_the_mean_negative_logprob() -> None:
    assert perplexity([math.log(0.5), math.log(0.25)]) == pytest.approx(math.sqrt(8))  # 1/geomean(.5,.25)
    assert perplexity([0.0]) == 1.0
    assert math.isnan(perplexity([]))


def test_only_the_reference_tokens_count() -> None:
    # "<prompt>Paris!" echoed: the prompt is 8 characters; " Pa" straddles its end and counts with the reference.
    tokens = [
        TokenLogprob("<", b"<", None, (), 0),
        TokenLogprob("prompt", b"prompt", -3.0, (), 1),
        TokenLogprob(">P", b">P", -1.0, (), 7),
        TokenLogprob("aris", b"aris", -0.5, (), 9),
        TokenLogprob("!", b"!", -2.0, (), 13),
    ]
    values = reference_logprobs(Logprobs(tokens, "", 5), prompt_chars=8)
    assert values == [-1.0, -0.5, -2.0]
    assert perplexity(values) == pytest.approx(math.exp(3.5 / 3))


# --- the API on the fake backend, which gives no log-probabilities -----------------------------------------


async def test_a_backend_without_logprobs_answers_400_naming_the_field(gateway: Gateway) -> None:
    chat = {"model": "fake", "messages": [{"role": "user", "content": "hi"}], "logprobs": True}
    resp = await gateway.client.post("/v1/chat/completions", json=chat)
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["param"] == "logprobs"
    assert "cannot return log-probabilities (its fake backend gives none)" in error["message"]
    resp = await gateway.client.post(
        "/v1/completions",
        json={"model": "fake", "prompt": "hi", "logprobs": 0, "echo": True, "max_tokens": 0},
    )
    assert (resp.status_code, resp.json()["error"]["param"]) == (400, "logprobs")


@pytest.mark.parametrize(
    ("path", "extra", "field"),
    [
        ("/v1/chat/completions", {"top_logprobs": 2}, "top_logprobs"),  # without logprobs: true
        ("/v1/chat/completions", {"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        (
            "/v1/chat/completions",
            {"max_tokens": 0},
            "max_tokens",
        ),  # only text completions score a prompt alone
        ("/v1/completions", {"logprobs": -1}, "logprobs"),
        ("/v1/completions", {"logprobs": 21}, "logprobs"),
    ],
)
async def test_bad_logprobs_fields_name_the_field(
    gateway: Gateway, path: str, extra: dict[str, object], field: str
) -> None:
    given = (
        {"prompt": "hi"} if path == "/v1/completions" else {"messages": [{"role": "user", "content": "hi"}]}
    )
    body = {"model": "fake", **given, **extra}
    resp = await gateway.client.post(path, json=body)
    assert resp.status_code == 422, resp.text  # the gateway's status for a body that does not validate
    assert resp.json()["error"]["param"] == field


async def test_echo_puts_the_prompt_before_the_answer_and_max_tokens_0_generates_nothing(
    gateway: Gateway,
) -> None:
    resp = await gateway.client.post(
        "/v1/completions", json={"model": "fake", "prompt": "once upon", "echo": True, "max_tokens": 0}
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["choices"][0]["text"] == "once upon"
    resp = await gateway.client.post(
        "/v1/completions", json={"model": "fake", "prompt": "once upon", "echo": True, "max_tokens": 2}
    )
    assert resp.json()["choices"][0]["text"] == "once uponfake completion"


# --- the perplexity metric's refusals ------------------------------------------------------------------------


async def test_perplexity_names_a_case_without_a_reference_and_a_model_without_logprobs(
    tmp_path: Path,
) -> None:
    runtime = Runtime(fake_settings(tmp_path))
    try:
        metric = PerplexityMetric(Check(type="perplexity"), runtime.stage_env)
        with pytest.raises(
            MetricError, match=r"perplexity needs `expected` and case open \(qa.jsonl:7\) has none"
        ):
            await metric.score(
                Case(id="open", input="Tell me a story.", where="qa.jsonl:7"), Output(text="x")
            )
        with pytest.raises(MetricError, match="cannot return log-probabilities"):
            PerplexityMetric(Check(type="perplexity", value="fake"), runtime.stage_env)
        with pytest.raises(MetricError, match="needs the local runtime"):
            PerplexityMetric(Check(type="perplexity"), None)
        with pytest.raises(MetricError, match="never passes"):
            PerplexityMetric(Check(type="perplexity", threshold=0.5), runtime.stage_env)
    finally:
        await runtime.close()
