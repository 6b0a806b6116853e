"""The embedded backend: a GGUF model run in-process by llama-cpp-python.

One ``Llama`` object per model, shared by all requests. llama.cpp contexts are not thread-safe, so all work
on a model runs on that model's single worker thread, in arrival order; the event loop never blocks on it.
Streaming runs the token loop on the worker thread and hands chunks to the loop; when the client goes away
the loop sets a flag that stops generation at the next token.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

from pydantic import Field

from llmdock.backends.base import (
    BackendParams,
    Generation,
    GenerationRequest,
    InProcessBackend,
    StreamChunk,
)
from llmdock.backends.model_files import resolve_model_path
from llmdock.errors import BackendError, ConfigError

# Turn formats for models whose GGUF carries no chat template (e.g. Gemma 3 base).
TURN_FORMATS: dict[str, tuple[str, list[str]]] = {
    "gemma": (
        "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else 'user' }}\n"
        "{{ m['content'] }}<end_of_turn>\n{% endfor %}<start_of_turn>model\n",
        ["<end_of_turn>"],
    ),
    "chatml": (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "<|im_start|>assistant\n",
        ["<|im_end|>"],
    ),
}


class LlamaCppParams(BackendParams):
    model_path: str
    n_ctx: int = Field(default=2048, gt=0)
    n_threads: int = Field(default=0, ge=0, description="0 = the settings' n_threads, else all cores")
    n_batch: int = Field(default=512, gt=0)
    chat_template: str | None = Field(
        default=None, description="None = the GGUF's own template; a TURN_FORMATS name; or a Jinja template"
    )
    stop: list[str] = Field(default_factory=list, description="Extra stop strings for this model")
    defaults: dict[str, Any] = Field(
        default_factory=lambda: {"temperature": 0.2, "top_p": 0.9},
        description="Sampling defaults used when a request leaves a value unset",
    )
    lazy: bool = False


class LlamaCppBackend(InProcessBackend):
    kind = "llamacpp"
    Params = LlamaCppParams
    params: LlamaCppParams

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.context_window = self.spec.context_window or self.params.n_ctx
        self._llm: Any = None
        self._formatter: Any = None

    # --- loading --------------------------------------------------------------------------------------

    def _load(self) -> None:
        from llama_cpp import Llama, llama_chat_format

        where = self.where("model_path")
        path = resolve_model_path(self.params.model_path, self.settings.home, where=where)
        threads = self.params.n_threads or self.settings.n_threads or os.cpu_count() or 1
        try:
            llm = Llama(
                model_path=str(path),
                n_ctx=self.params.n_ctx,
                n_threads=threads,
                n_threads_batch=threads,
                n_batch=self.params.n_batch,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise ConfigError(f"cannot load model {str(path)!r}: {exc}", where=where) from None
        eos_id, bos_id = llm.token_eos(), llm.token_bos()
        eos = llm._model.token_get_text(eos_id) if eos_id != -1 else ""
        bos = llm._model.token_get_text(bos_id) if bos_id != -1 else ""
        template = self.params.chat_template
        extra_stop: list[str] = []
        if template is None:
            template = llm.metadata.get("tokenizer.chat_template")
        elif template in TURN_FORMATS:
            template, extra_stop = TURN_FORMATS[template]
        if template:
            self._formatter = llama_chat_format.Jinja2ChatFormatter(
                template=template, eos_token=eos, bos_token=bos, stop_token_ids=[eos_id]
            )
        self._extra_stop = extra_stop
        self._bos_text = bos
        self._llm = llm

    async def close(self) -> None:
        await super().close()
        llm, self._llm = self._llm, None
        if llm is not None:
            llm.close()

    def info(self) -> dict[str, Any]:
        info = super().info()
        info["chat_template"] = "gguf" if self.params.chat_template is None else self.params.chat_template
        return info

    # --- prompts --------------------------------------------------------------------------------------
    def _tokenize(self, text: str) -> list[int]:
        add_bos = not (self._bos_text and text.startswith(self._bos_text))
        tokens: list[int] = self._llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)
        return tokens

    def count_tokens(self, text: str) -> int:
        if self._llm is None:
            return super().count_tokens(text)
        return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def prepare(self, req: GenerationRequest) -> None:
        if self._llm is None:
            raise BackendError(f"model {self.name!r} is not loaded")
        stop = list(self.params.stop) + list(self._extra_stop)
        if req.operation == "chat":
            if self._formatter is None:
                raise BackendError(
                    f"model {self.name!r} has no chat template; set chat_template in its config"
                )
            rendered = self._formatter(messages=req.messages or [])
            req.prompt_text = rendered.prompt
            if rendered.stop:
                stop += [rendered.stop] if isinstance(rendered.stop, str) else list(rendered.stop)
        else:
            req.prompt_text = req.prompt or ""
        req.prompt_tokens = self._tokenize(req.prompt_text)
        req.n_prompt_tokens = len(req.prompt_tokens)
        req.stop = stop + list(req.params.stop)
        req.params.with_defaults(self.params.defaults)
        if req.params.max_tokens is None:
            req.params.max_tokens = max(1, self.context_window - req.n_prompt_tokens)
        self.check_window(req)

    def _completion_kwargs(self, req: GenerationRequest) -> dict[str, Any]:
        p = req.params
        kwargs: dict[str, Any] = {
            "prompt": req.prompt_tokens,
            "max_tokens": p.max_tokens,
            "temperature": p.temperature if p.temperature is not None else 0.2,
            "top_p": p.top_p if p.top_p is not None else 1.0,
            "stop": req.stop or None,
            "presence_penalty": p.presence_penalty or 0.0,
            "frequency_penalty": p.frequency_penalty or 0.0,
        }
        if p.seed is not None:
            kwargs["seed"] = p.seed
        if req.grammar:
            from llama_cpp.llama_grammar import LlamaGrammar

            kwargs["grammar"] = LlamaGrammar.from_string(req.grammar, verbose=False)
        return kwargs

    # --- generation ----------------------------------------------------------------------------------
    def _generate_sync(self, req: GenerationRequest) -> Generation:
        out = self._llm.create_completion(**self._completion_kwargs(req))
        choice = out["choices"][0]
        usage = out["usage"]
        return Generation(
            text=choice["text"],
            prompt_tokens=usage["prompt_tokens"],
            completion_tokens=usage["completion_tokens"],
            finish_reason=choice.get("finish_reason") or "stop",
        )

    async def generate(self, req: GenerationRequest) -> Generation:
        await self.ensure_started()
        result: Generation = await self.run(self._generate_sync, req)
        return result

    def _stream_sync(
        self,
        req: GenerationRequest,
        emit: Any,
        cancelled: threading.Event,
    ) -> None:
        chunks: Iterator[dict[str, Any]] = self._llm.create_completion(
            stream=True, **self._completion_kwargs(req)
        )
        try:
            for chunk in chunks:
                if cancelled.is_set():
                    break
                choice = chunk["choices"][0]
                emit(StreamChunk(text=choice["text"], finish_reason=choice.get("finish_reason")))
        except Exception as exc:  # report to the consumer on the loop; it raises a BackendError
            emit(exc)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
            emit(None)

    async def stream(self, req: GenerationRequest) -> AsyncIterator[StreamChunk]:
        await self.ensure_started()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[StreamChunk | BaseException | None] = asyncio.Queue()
        cancelled = threading.Event()

        def emit(item: StreamChunk | BaseException | None) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        future = self.run(self._stream_sync, req, emit, cancelled)
        try:
            while True:
                item = await queue.get()
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise BackendError(f"generation failed: {item}")
                yield item
        finally:
            # Stops the token loop at the next token if the consumer left early (client disconnect).
            cancelled.set()
            future.add_done_callback(lambda f: f.exception())
