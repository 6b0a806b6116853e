"""The embedded backend: a GGUF model run in-process by llama.cpp, with continuous batching.

One model per backend, shared by all requests. Generation goes through a :class:`BatchEngine`
(llama_batch.py): up to ``n_parallel`` requests are decoded together, one token each per ``llama_decode``
call, each with its own sampler (seed, penalties, grammar) and its own slot of ``n_ctx`` tokens in the KV
cache. Loading, the decode loop and unloading all run on the model's single worker thread; prompts are
rendered and tokenized on the event loop (the vocabulary is read-only). When a client goes away, its
sequence is dropped at the next step and its slot is free for the next request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TYPE_CHECKING, Any

from pydantic import Field, model_validator

from llmdock.backends.base import (
    BackendParams,
    Generation,
    GenerationRequest,
    InProcessBackend,
    StreamChunk,
)
from llmdock.backends.logprobs import Logprobs, Placer, TokenLogprob
from llmdock.backends.model_files import resolve_model_file
from llmdock.errors import BackendError, BackendUnavailable, ConfigError, InvalidRequest

if TYPE_CHECKING:  # llama_batch imports llama_cpp, which loads the library: only when a model loads
    from llmdock.backends.llama_batch import BatchEngine
    from llmdock.backends.llama_sequence import Delta

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
    n_ctx: int = Field(default=2048, gt=0, description="Context window of each sequence (its KV-cache slot)")
    n_parallel: int = Field(
        default=4, ge=1, le=256, description="Sequences decoded together in one batch (continuous batching)"
    )
    n_threads: int = Field(default=0, ge=0, description="0 = the settings' n_threads, else all cores")
    n_batch: int = Field(default=512, gt=0, description="Tokens per llama_decode call (prompt chunks)")
    chat_template: str | None = Field(
        default=None, description="None = the GGUF's own template; a TURN_FORMATS name; or a Jinja template"
    )
    stop: list[str] = Field(default_factory=list, description="Extra stop strings for this model")
    defaults: dict[str, Any] = Field(
        default_factory=lambda: {"temperature": 0.2, "top_p": 0.9},
        description="Sampling defaults used when a request leaves a value unset",
    )
    lazy: bool = False
    lora_path: str = Field(
        default="",
        description="A GGUF LoRA adapter applied on top of model_path (a path or models:/NAME@alias)",
    )
    lora_scale: float = Field(default=1.0, gt=0.0, description="How strongly the LoRA adapter applies")

    @model_validator(mode="after")
    def _batch_holds_every_sequence(self) -> LlamaCppParams:
        if self.n_batch < self.n_parallel:
            raise ValueError(f"n_batch ({self.n_batch}) must be at least n_parallel ({self.n_parallel})")
        return self


class LlamaCppBackend(InProcessBackend):
    kind = "llamacpp"
    Params = LlamaCppParams
    enforces_grammar = True
    gives_logprobs = True
    params: LlamaCppParams

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        n_ctx = self.params.n_ctx
        if self.spec.context_window and self.spec.context_window > n_ctx:
            raise ConfigError(
                f"context_window {self.spec.context_window} is larger than n_ctx {n_ctx}, the KV cache of "
                "each sequence; raise n_ctx or lower context_window",
                where=self.where("context_window"),
            )
        self.context_window = self.spec.context_window or n_ctx
        # n_parallel requests run at once; max_queue more may wait for a slot.
        self._limit = self.params.n_parallel + self.spec.max_queue
        self._model: Any = None
        self._engine: BatchEngine | None = None
        self._formatter: Any = None

    # --- loading --------------------------------------------------------------------------------------

    def _load(self) -> None:
        import llama_cpp
        from llama_cpp import llama_chat_format
        from llama_cpp._internals import LlamaModel

        from llmdock.backends.llama_batch import BatchEngine

        where = self.where("model_path")
        path, self.origin = resolve_model_file(self.params.model_path, self.settings, where=where)
        threads = self.params.n_threads or self.settings.n_threads or os.cpu_count() or 1
        logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)  # llama.cpp's own log: errors only
        llama_cpp.llama_backend_init()
        try:
            # llama-cpp-python's model wrapper (loading, vocabulary, metadata, tokenizer); its Llama class
            # holds one sequence per context, so the context and decode loop are the engine's own.
            model: Any = LlamaModel(
                path_model=str(path), params=llama_cpp.llama_model_default_params(), verbose=False
            )
        except (ValueError, RuntimeError) as exc:
            raise ConfigError(f"cannot load model {str(path)!r}: {exc}", where=where) from None
        try:
            engine = BatchEngine(
                model,
                n_parallel=self.params.n_parallel,
                n_ctx=self.params.n_ctx,
                n_batch=self.params.n_batch,
                n_threads=threads,
                run=self._executor.submit,
            )
        except ValueError as exc:
            model.close()
            raise ConfigError(f"cannot serve model {str(path)!r}: {exc}", where=self.where("n_ctx")) from None
        if self.params.lora_path:
            self._apply_lora(model, engine)
        eos_id, bos_id = model.token_eos(), model.token_bos()
        eos = model.token_get_text(eos_id) if eos_id != -1 else ""
        bos = model.token_get_text(bos_id) if bos_id != -1 else ""
        template = self.params.chat_template
        extra_stop: list[str] = []
        if template is None:
            template = model.metadata().get("tokenizer.chat_template")
        elif template in TURN_FORMATS:
            template, extra_stop = TURN_FORMATS[template]
        if template:
            self._formatter = llama_chat_format.Jinja2ChatFormatter(
                template=template, eos_token=eos, bos_token=bos, stop_token_ids=[eos_id]
            )
        self._extra_stop = extra_stop
        self._bos_text = bos
        self._bos_id = bos_id
        self._model = model
        self._engine = engine

    def _apply_lora(self, model: Any, engine: Any) -> None:
        """The GGUF LoRA of ``lora_path`` on top of the base (freed by llama.cpp with the model)."""
        import llama_cpp

        where = self.where("lora_path")
        path, origin = resolve_model_file(self.params.lora_path, self.settings, where=where)
        adapter = llama_cpp.llama_adapter_lora_init(model.model, str(path).encode())
        try:
            if not adapter:
                raise ValueError(f"{str(path)!r} is not a GGUF LoRA adapter llama.cpp can load")
            engine.use_lora(adapter, self.params.lora_scale)
        except ValueError as exc:
            engine.free()
            model.close()
            raise ConfigError(f"cannot apply the LoRA adapter: {exc}", where=where) from None
        self.origin = self.origin | {f"lora_{k}": v for k, v in origin.items()}

    def _unload(self) -> None:
        """Free the context, then the model (worker thread, after the decode loop has stopped)."""
        engine, self._engine = self._engine, None
        model, self._model = self._model, None
        if engine is not None:
            engine.free()
        if model is not None:
            model.close()

    async def close(self) -> None:
        if self._engine is not None:
            self._engine.shutdown()  # ends running and waiting requests at the next step
            with contextlib.suppress(RuntimeError):  # the executor is already shut down
                await self.run(self._unload)
        await super().close()

    def info(self) -> dict[str, Any]:
        info = super().info()
        info["chat_template"] = "gguf" if self.params.chat_template is None else self.params.chat_template
        info["n_parallel"] = self.params.n_parallel
        if self._engine is not None:
            info["batching"] = self._engine.stats()
        return info

    # --- prompts --------------------------------------------------------------------------------------
    def _tokenize(self, text: str) -> list[int]:
        add_bos = not (self._bos_text and text.startswith(self._bos_text))
        tokens: list[int] = self._model.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)
        return tokens

    def count_tokens(self, text: str) -> int:
        if self._model is None:
            return super().count_tokens(text)
        return len(self._model.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def _chat_prompt(self, messages: list[dict[str, Any]]) -> tuple[str, list[str]]:
        """Messages rendered by the model's chat template, and the stop strings the template adds."""
        if self._formatter is None:
            raise BackendError(f"model {self.name!r} has no chat template; set chat_template in its config")
        rendered = self._formatter(messages=messages)
        stop = rendered.stop or []
        return rendered.prompt, [stop] if isinstance(stop, str) else list(stop)

    def prepare(self, req: GenerationRequest) -> None:
        if self._model is None:
            raise BackendError(f"model {self.name!r} is not loaded")
        req.prompt_text, template_stop = req.op.read_input(req, self._chat_prompt, _text_prompt)
        stop = list(self.params.stop) + list(self._extra_stop) + template_stop
        req.prompt_tokens = self._tokenize(req.prompt_text)
        req.n_prompt_tokens = len(req.prompt_tokens)
        req.stop = stop + list(req.params.stop)
        req.params.with_defaults(self.params.defaults)
        if req.params.max_tokens is None:
            req.params.max_tokens = max(1, self.context_window - req.n_prompt_tokens)
        self.check_window(req)

    # --- generation ----------------------------------------------------------------------------------
    async def _deltas(self, req: GenerationRequest, *, stream: bool) -> AsyncGenerator[Delta, None]:
        """Run ``req`` as one sequence of the batch engine; its deltas as they come."""
        from llmdock.backends.llama_batch import EngineClosed
        from llmdock.backends.llama_sampler import Sampling
        from llmdock.backends.llama_sequence import Sequence

        await self.ensure_started()
        engine = self._engine
        if engine is None:
            raise BackendUnavailable(f"model {self.name!r} is not loaded")
        p = req.params
        try:
            sampler = engine.sampler(
                Sampling(
                    temperature=p.temperature if p.temperature is not None else 0.2,
                    top_p=p.top_p if p.top_p is not None else 1.0,
                    seed=p.seed if p.seed is not None else random.getrandbits(32),
                    presence_penalty=p.presence_penalty or 0.0,
                    frequency_penalty=p.frequency_penalty or 0.0,
                    grammar=req.grammar,
                )
            )
        except ValueError as exc:
            raise InvalidRequest(f"cannot constrain the output: {exc}", param="response_format") from None
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Delta | BaseException] = asyncio.Queue()

        def emit(item: Delta | BaseException) -> None:  # called on the worker thread
            with contextlib.suppress(RuntimeError):  # the event loop is gone: nobody is listening
                loop.call_soon_threadsafe(queue.put_nowait, item)

        seq = Sequence(
            req.prompt_tokens or [],
            max_tokens=p.max_tokens if p.max_tokens is not None else self.context_window,
            stop=req.stop,
            sampler=sampler,
            emit=emit,
            stream=stream,
            logprobs=req.logprobs,
            echo=req.echo,
        )
        try:
            engine.submit(seq)
        except EngineClosed as exc:
            sampler.close()
            raise BackendUnavailable(f"model {self.name!r} cannot take the request: {exc}") from None
        except ValueError as exc:
            sampler.close()
            raise InvalidRequest(str(exc), param=req.op.param) from None
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise BackendError(f"generation failed: {item}")
                yield item
                if item.finish_reason is not None:
                    return
        finally:
            seq.cancel()  # the consumer left early (client disconnect): free the slot at the next step

    async def generate(self, req: GenerationRequest) -> Generation:
        scored = self._scored(req)
        async with contextlib.aclosing(self._deltas(req, stream=False)) as deltas:
            async for delta in deltas:
                if delta.finish_reason is not None:
                    return Generation(
                        text=delta.text,
                        prompt_tokens=req.n_prompt_tokens,
                        completion_tokens=delta.completion_tokens,
                        finish_reason=delta.finish_reason,
                        logprobs=None if scored is None else scored.whole(delta),
                    )
        raise BackendError("generation ended without a finish reason")

    async def stream(self, req: GenerationRequest) -> AsyncIterator[StreamChunk]:
        scored = self._scored(req)
        # aclosing: when the client leaves, the sequence is cancelled now, not when the generator is collected.
        async with contextlib.aclosing(self._deltas(req, stream=True)) as deltas:
            async for delta in deltas:
                if delta.text or delta.finish_reason:
                    logprobs = None if scored is None else scored.take(delta)
                    yield StreamChunk(text=delta.text, finish_reason=delta.finish_reason, logprobs=logprobs)

    def _scored(self, req: GenerationRequest) -> ScoredTokens | None:
        if req.logprobs is None:
            return None
        tokens = req.prompt_tokens or []
        implicit_bos = (
            bool(tokens) and tokens[0] == self._bos_id and not req.prompt_text.startswith(self._bos_text)
        )
        return ScoredTokens(req.prompt_text, echo=req.echo, n_prompt=len(tokens), implicit_bos=implicit_bos)


class ScoredTokens:
    """A request's scored tokens as the engine's deltas bring them, with their text offsets: with echo the
    prompt's first (offsets into the prompt), then the answer's (offsets after the prompt with echo, else
    into the answer). Tokens past the answer's end (inside a stop string that cut it) are dropped."""

    def __init__(self, prompt: str, *, echo: bool, n_prompt: int, implicit_bos: bool) -> None:
        self.n_prompt = n_prompt if echo else 0
        self._prompt_left = self.n_prompt
        self._prompt = Placer(0, skip_first=implicit_bos)
        self._start = len(prompt) if echo else 0
        self._answer = Placer(self._start)
        self._end = self._start
        self._text: list[str] = []

    def take(self, delta: Delta) -> list[TokenLogprob]:
        """The tokens of one delta (of a stream, or the whole answer)."""
        items = delta.logprobs or []
        k = min(self._prompt_left, len(items))
        self._prompt_left -= k
        out = self._prompt.place(items[:k]) + self._answer.place(items[k:])
        self._end += len(delta.text)
        self._text.append(delta.text)
        if delta.finish_reason is not None:
            out = [t for i, t in enumerate(out) if i < k or t.offset < self._end]
        return out

    def whole(self, delta: Delta) -> Logprobs:
        """The whole answer's, from its one delta."""
        tokens = self.take(delta)
        return Logprobs(tokens, "".join(self._text), self.n_prompt)


def _text_prompt(prompt: str) -> tuple[str, list[str]]:
    return prompt, []
