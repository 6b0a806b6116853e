"""LangChain's own standard integration suites (``langchain-tests``) against a real ``llmdock serve``.

``ChatOpenAI`` and ``OpenAIEmbeddings`` (``langchain-openai``) are pointed at the server as a user would point
them, with the embedded models (chat: smollm2, embeddings: all-minilm-l6-v2). Every test of the suites runs:
it passes, or a capability flag below is honestly false (the server cannot do it: images, audio, PDF), or it
is marked xfail with the reason measured on SmolLM2 (model quality only; the same path is proven on the
stand-in for a stronger model, see ``conftest.py``).

Run: ``bash scripts/pytest.sh -m clients tests/clients``.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_openai import ChatOpenAI, OpenAIEmbeddings
from langchain_tests.integration_tests import ChatModelIntegrationTests, EmbeddingsIntegrationTests

from tests.clients.conftest import STAND_IN, StrongerModelStandIn
from tests.integration.conftest import Server

pytestmark = [
    pytest.mark.clients,
    pytest.mark.server,
    pytest.mark.model,
]
SESSION_LOOP = pytest.mark.asyncio(loop_scope="session")  # the suites' async tests share one event loop
# Measured: asked "What is the weather in San Francisco, CA?" with get_weather bound (tool_choice auto), SmolLM2
# at temperature 0 answers in words, in both output versions; the grammar admits a call, the model does not
# choose it. The same test passes on the stand-in for a stronger model (the last test of this module).
AGENT_LOOP_ON_SMOLLM2 = (
    "model quality: SmolLM2-135M answers the weather question in text instead of calling get_weather "
    "(tool_choice auto, temperature 0); the protocol path passes on the stronger-model stand-in"
)
# Measured: asked for a cat joke as JSON with 'setup' and 'punchline', SmolLM2 at temperature 0 writes a setup
# longer than max_tokens allows. The invoke is re-asked into an object that fits and passes; the stream is
# bounded from its first token (strings of at most 24 characters at max_tokens 128) and SmolLM2 closes the
# object after the cut setup: '{ "setup": "A cat is a cat, a cat is" }', which LangChain's Joke parser refuses.
JSON_MODE_ON_SMOLLM2 = (
    "model quality: SmolLM2-135M's joke does not fit max_tokens=128; bounded to fit, the streamed object "
    "closes after 'setup' without 'punchline'"
)
NO_CACHE = {"Cache-Control": "no-cache"}  # the tests are about the model and the API, not the cache


@pytest.fixture(scope="session", autouse=True)
def _point_the_suites_at_the_server(clients_server: Server) -> None:
    TestLlmdockChatModel.base_url = clients_server.v1
    TestLlmdockEmbeddings.base_url = clients_server.v1


@SESSION_LOOP
class TestLlmdockChatModel(ChatModelIntegrationTests):
    base_url = ""

    @property
    def chat_model_class(self) -> type[BaseChatModel]:
        return ChatOpenAI

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {
            "model": "smollm2",
            "base_url": self.base_url,
            "api_key": "unused",
            "temperature": 0,
            "max_tokens": 128,
            "stream_usage": True,
            "default_headers": NO_CACHE,
            "timeout": 300,
            "max_retries": 0,
        }

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def returns_usage_metadata(self) -> bool:
        return True

    @property
    def supports_model_override(self) -> bool:
        return (
            True  # the server serves several chat models; the override is the stand-in (fast, no second load)
        )

    @property
    def model_override_value(self) -> str:
        return STAND_IN

    @property
    def supports_image_inputs(self) -> bool:
        return False  # SmolLM2 reads text only; llmdock refuses image parts with a 400

    @property
    def supports_image_urls(self) -> bool:
        return False

    @property
    def supports_pdf_inputs(self) -> bool:
        return False

    @property
    def supports_audio_inputs(self) -> bool:
        return False

    @property
    def supports_image_tool_message(self) -> bool:
        return False

    @property
    def supports_pdf_tool_message(self) -> bool:
        return False

    @property
    def supports_anthropic_inputs(self) -> bool:
        return False  # Anthropic's message format: ChatOpenAI speaks OpenAI's

    @pytest.mark.xfail(reason=JSON_MODE_ON_SMOLLM2, strict=True)
    def test_json_mode(self, model: BaseChatModel) -> None:
        super().test_json_mode(model)

    @pytest.mark.xfail(reason=AGENT_LOOP_ON_SMOLLM2, strict=True)
    @pytest.mark.parametrize("model", [{}, {"output_version": "v1"}], indirect=True)
    def test_agent_loop(self, model: BaseChatModel) -> None:
        super().test_agent_loop(model)


@SESSION_LOOP
class TestLlmdockEmbeddings(EmbeddingsIntegrationTests):
    base_url = ""

    @property
    def embeddings_class(self) -> type[OpenAIEmbeddings]:
        return OpenAIEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {
            "model": "all-minilm-l6-v2",
            "base_url": self.base_url,
            "api_key": "unused",
            # OpenAI's token-window splitting needs tiktoken's encodings (downloaded at first use) and OpenAI's
            # own tokenizer; llmdock's model counts its own tokens, so the texts are sent as they are.
            "check_embedding_ctx_length": False,
            "default_headers": NO_CACHE,
        }


@pytest.mark.parametrize("output_version", ["v0", "v1"])
def test_the_agent_loop_runs_on_the_stand_in_for_a_stronger_model(
    clients_server: Server, stand_in: StrongerModelStandIn, output_version: str
) -> None:
    """LangChain's own test_agent_loop, on a model routed through llmdock to an upstream that calls tools."""
    model = ChatOpenAI(
        model=STAND_IN,
        base_url=clients_server.v1,
        api_key="unused",  # type: ignore[arg-type]
        temperature=0,
        max_tokens=128,  # type: ignore[call-arg]
        stream_usage=True,
        output_version=output_version,
        default_headers=NO_CACHE,
    )
    before = len(stand_in.bodies)
    ChatModelIntegrationTests.test_agent_loop(TestLlmdockChatModel(), model)
    first, second = stand_in.bodies[before:]
    assert first["tools"][0]["function"]["name"] == "get_weather"
    call_id = second["messages"][1]["tool_calls"][0]["id"]
    assert second["messages"][2] == {"role": "tool", "content": "It's sunny.", "tool_call_id": call_id}
