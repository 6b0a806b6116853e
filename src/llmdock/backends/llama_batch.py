"""Continuous batching for llama.cpp: one decode loop serving several requests in one context.

llama.cpp decodes tokens of several independent sequences in one ``llama_decode`` call: each token of a
``llama_batch`` names its sequence id and the KV cache keeps the sequences apart. On a CPU a step with four
tokens costs little more than a step with one (the weights are read once per step, not once per token), so
decoding concurrent requests together multiplies aggregate tokens/s. vLLM and llama.cpp's own server work
this way; llama-cpp-python's ``Llama`` does not (one sequence per context), hence this module.

:class:`BatchEngine` owns one context with ``n_parallel`` slots (one KV-cache sequence id each, ``n_ctx``
tokens each). Requests (:class:`Sequence`) wait in a FIFO queue; between steps the engine admits them into
free slots and retires finished or cancelled ones. Each step puts one token per generating sequence into
the batch, fills the rest (up to ``n_batch``) with prompt tokens of newly admitted sequences, calls
``llama_decode`` once and samples every sequence that got logits with that sequence's own sampler chain
(its temperature, seed, penalties and grammar).

Threading: a llama.cpp context must not be used from two threads at once, so the loop runs on the model's
single worker thread (``run`` schedules it there), and only while there is work. Requests are submitted
from the event loop; results come back through each sequence's ``emit``, called on the worker thread.

A slot keeps its tokens in the KV cache after its request ends; a new request takes the free slot whose
cache shares the longest prefix with its prompt and decodes only the rest (a repeated system prompt or chat
history is not decoded twice). A cancelled request's cache is dropped.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import llama_cpp

from llmdock.backends.llama_logprobs import TokenScorer, token_piece
from llmdock.backends.llama_sampler import SamplerChain, Sampling
from llmdock.backends.llama_sequence import Delta, Sequence, Slot, common_prefix

# A KV buffer per sequence, not one shared buffer. Shared, a sequence's attention runs over the cells of
# all sequences (masked) and its sums round differently with what else is in the cache: greedy answers
# then change with the company a request keeps. Apart, a sequence's answer is the one it gets alone.
# The price: llama.cpp splits a batch where its sequence ids are not consecutive (slots 0 and 2 busy,
# 1 free), so admission prefers low slot numbers.
KV_UNIFIED = False
COPY_MIN_TOKENS = 64


class EngineClosed(RuntimeError):
    """The model was unloaded while the request was waiting or running."""


class BatchEngine:
    """Decodes up to ``n_parallel`` sequences together in one llama.cpp context of the given model.

    ``run(fn)`` must call ``fn`` on the model's worker thread (e.g. a one-thread executor's ``submit``).
    Construct and :meth:`free` the engine on that thread too.
    """

    def __init__(
        self,
        model: Any,
        *,
        n_parallel: int,
        n_ctx: int,
        n_batch: int,
        n_threads: int,
        run: Callable[[Callable[[], None]], object],
    ) -> None:
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx * n_parallel
        params.n_batch = params.n_ubatch = n_batch
        params.n_seq_max = n_parallel
        params.n_threads = params.n_threads_batch = n_threads
        params.kv_unified = KV_UNIFIED
        # As llama-cpp-python's Llama, which the backend used before (auto may pick it on CPU, slower here).
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        self._model = model
        self._vocab = model.vocab
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self._vocab))
        self._ctx = llama_cpp.llama_init_from_model(model.model, params)
        if not self._ctx:
            raise ValueError(f"llama.cpp could not create a context of {n_parallel} x {n_ctx} tokens")
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self._batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
        self.n_parallel = n_parallel
        self.n_ctx = min(n_ctx, int(llama_cpp.llama_n_ctx_seq(self._ctx)))  # tokens per slot
        self.n_batch = n_batch
        self._run = run
        self._slots = [Slot(i) for i in range(n_parallel)]
        self._waiting: deque[Sequence] = deque()
        self._lock = threading.Lock()
        self._running = False
        self._closing = False
        self._pieces: dict[int, bytes] = {}
        self._scorer = TokenScorer(self._vocab, self.n_vocab)  # log-probabilities, for requests that ask
        # Counters for info(): how much batching really happened.
        self.steps = 0
        self.decoded_tokens = 0
        self.max_sequences_per_step = 0
        self.reused_tokens = 0  # prompt tokens found in a slot's cache instead of decoded

    # --- called from any thread -----------------------------------------------------------------------
    def sampler(self, sampling: Sampling) -> SamplerChain:
        """A sampler chain for this model's vocabulary (raises ValueError for an invalid grammar)."""
        return SamplerChain(self._vocab, self.n_vocab, sampling)

    def complete(self, prompt: list[int], sampler: SamplerChain, max_tokens: int) -> Future[Delta]:
        """One request outside an event loop (benches, tests): its whole answer as one delta, in a future.
        The engine closes ``sampler`` when the request ends."""
        done: Future[Delta] = Future()

        def emit(item: Delta | BaseException) -> None:
            if isinstance(item, BaseException):
                done.set_exception(item)
            else:
                done.set_result(item)

        self.submit(
            Sequence(prompt, max_tokens=max_tokens, stop=[], sampler=sampler, emit=emit, stream=False)
        )
        return done

    def submit(self, seq: Sequence) -> None:
        """Queue ``seq``; the decode loop admits it into the next free slot."""
        if not 0 < len(seq.prompt) < self.n_ctx:
            raise ValueError(f"a prompt of {len(seq.prompt)} tokens does not fit a slot of {self.n_ctx}")
        with self._lock:
            if self._closing:
                raise EngineClosed("the model is being unloaded")
            self._waiting.append(seq)
            if self._running:
                return
            self._running = True
        self._run(self._drain)

    def shutdown(self) -> None:
        """Fail waiting and running requests at the next step and stop the loop."""
        with self._lock:
            self._closing = True
            if self._running:
                return
            self._running = True
        self._run(self._drain)

    def stats(self) -> dict[str, int]:
        return {
            "active_sequences": sum(1 for s in self._slots if s.sequence is not None),
            "waiting_sequences": len(self._waiting),
            "steps": self.steps,
            "decoded_tokens": self.decoded_tokens,
            "max_sequences_per_step": self.max_sequences_per_step,
            "reused_prompt_tokens": self.reused_tokens,
        }

    # --- the worker thread ----------------------------------------------------------------------------
    def use_lora(self, adapter: Any, scale: float) -> None:
        """Apply a GGUF LoRA adapter (``llama_adapter_lora_init``) on top of the model in this context."""
        if llama_cpp.llama_set_adapter_lora(self._ctx, adapter, scale) != 0:
            raise ValueError("llama.cpp refused the LoRA adapter for this model")

    def free(self) -> None:
        """Release the context and batch (worker thread, after :meth:`shutdown`)."""
        if self._ctx is not None:
            llama_cpp.llama_batch_free(self._batch)
            llama_cpp.llama_free(self._ctx)
            self._ctx = None

    def _drain(self) -> None:
        """The decode loop: admit, step, retire, until no request is left."""
        try:
            while True:
                with self._lock:
                    if self._closing:
                        self._fail_all(EngineClosed("the model was unloaded"))
                        return
                    free = [s for s in self._slots if s.sequence is None]
                    admitted = [self._waiting.popleft() for _ in range(min(len(free), len(self._waiting)))]
                    if not admitted and len(free) == len(self._slots):
                        return
                for seq in admitted:
                    try:
                        self._admit(seq, free)
                    except Exception as exc:  # not in a slot: it would wait for ever
                        seq.sampler.close()
                        seq.emit(exc)
                try:
                    self._step()
                except Exception as exc:  # a failed decode ends the requests in it, not the loop
                    self._fail_active(exc)
        finally:
            with self._lock:
                self._running = False
                restart = bool(self._waiting) and not self._closing
                self._running = restart
            if restart:  # a request arrived between the last check and the end of the loop
                self._run(self._drain)

    def _admit(self, seq: Sequence, free: list[Slot]) -> None:
        if seq.cancelled:
            seq.sampler.close()
            return
        # The lowest free slot keeps busy sequence ids consecutive (see KV_UNIFIED). If another free slot
        # has cached much more of this prompt, its cache is copied over (a memcpy of the slot's buffer,
        # cheaper than decoding COPY_MIN_TOKENS prompt tokens).
        slot = min(free, key=lambda s: s.seq_id)
        free.remove(slot)
        keep = common_prefix(slot.tokens, seq.prompt)
        best = max(free, key=lambda s: common_prefix(s.tokens, seq.prompt), default=None)
        if (
            best is not None
            and not seq.echo
            and common_prefix(best.tokens, seq.prompt) - keep >= COPY_MIN_TOKENS
        ):
            llama_cpp.llama_memory_seq_cp(self._memory, best.seq_id, slot.seq_id, -1, -1)
            slot.tokens = list(best.tokens)
            keep = common_prefix(slot.tokens, seq.prompt)
        # Keep the shared prefix, but always decode at least the last prompt token: its logits are needed.
        # An echo of the prompt's log-probabilities needs the logits of every prompt token: none is kept.
        keep = 0 if seq.echo else min(keep, len(seq.prompt) - 1)
        if seq.echo:
            seq.scored.append(self._scorer.first(seq.prompt[0]))
        self.reused_tokens += keep
        if keep < len(slot.tokens) and not llama_cpp.llama_memory_seq_rm(self._memory, slot.seq_id, keep, -1):
            llama_cpp.llama_memory_seq_rm(self._memory, slot.seq_id, -1, -1)  # cannot cut: drop it all
            keep = 0
        del slot.tokens[keep:]
        seq.pending = seq.prompt[keep:]
        slot.sequence = seq

    def _step(self) -> None:
        batch = self._batch
        n = 0
        fed: list[tuple[Slot, list[int], int]] = []  # (slot, its tokens, batch index of the first)
        # One token with logits for each sequence that is generating or down to its last prompt token.
        # The last prompt token always goes alone, never inside a prompt chunk: llama.cpp's logits for
        # a token differ in the last bits between a long chunk and a short step, and a prompt found in
        # the cache is resumed at its last token, so this way an answer does not depend on the cache.
        for slot in self._slots:
            seq = slot.sequence
            if seq is None:
                continue
            if seq.cancelled:
                self._retire(slot, keep_cache=False)
                continue
            seq.out_index = -1
            if len(seq.pending) <= 1:
                token = seq.pending[0] if seq.pending else seq.next_token
                self._put(n, token, len(slot.tokens), slot.seq_id, True)
                seq.out_index = n
                fed.append((slot, [token], n))
                n += 1
        for slot in self._slots:  # then the rest of the prompts, as many tokens as fit
            seq = slot.sequence
            if seq is None or len(seq.pending) <= 1 or n == self.n_batch:
                continue
            chunk = seq.pending[: min(self.n_batch - n, len(seq.pending) - 1)]
            start = len(slot.tokens)
            for i, token in enumerate(chunk):
                self._put(n + i, token, start + i, slot.seq_id, seq.echo)
            fed.append((slot, chunk, n))
            n += len(chunk)
        if n == 0:
            return
        batch.n_tokens = n
        code = llama_cpp.llama_decode(self._ctx, batch)
        if code != 0:
            raise RuntimeError(f"llama_decode returned {code}")
        self.steps += 1
        self.decoded_tokens += n
        sampled = 0
        for slot, tokens, at in fed:
            seq = slot.sequence
            assert seq is not None
            slot.tokens += tokens
            if seq.echo and seq.out_index < 0:  # a prompt chunk decoded with its logits
                scorer, top = self._scorer, seq.logprobs or 0
                seq.scored += [
                    scorer.score(self._ctx, at + i, seq.pending[i + 1], top) for i in range(len(tokens))
                ]
            if seq.pending:
                del seq.pending[: len(tokens)]
            if seq.out_index >= 0:
                sampled += 1
                self._sample(slot, seq)
        self.max_sequences_per_step = max(self.max_sequences_per_step, sampled)

    def _sample(self, slot: Slot, seq: Sequence) -> None:
        if seq.max_tokens == 0:  # the prompt alone (its log-probabilities, with echo)
            self._finish(slot, seq, "", "length")
            return
        token = seq.sampler.sample(self._ctx, seq.out_index)
        if seq.logprobs is not None and not llama_cpp.llama_vocab_is_eog(self._vocab, token):
            seq.scored.append(
                self._scorer.score(self._ctx, seq.out_index, token, seq.logprobs, self._piece(token))
            )
        self._advance(slot, seq, token)

    def _put(self, i: int, token: int, pos: int, seq_id: int, logits: bool) -> None:
        batch = self._batch
        batch.token[i] = token
        batch.pos[i] = pos
        batch.n_seq_id[i] = 1
        batch.seq_id[i][0] = seq_id
        batch.logits[i] = logits

    def _advance(self, slot: Slot, seq: Sequence, token: int) -> None:
        """Take one sampled token: end the sequence or send its new text."""
        if llama_cpp.llama_vocab_is_eog(self._vocab, token):
            self._finish(slot, seq, "", "stop")
            return
        seq.generated += 1
        text = seq.text.feed(self._piece(token))
        if seq.text.stopped:
            self._finish(slot, seq, text, "stop")
        elif seq.generated >= seq.max_tokens or len(slot.tokens) >= self.n_ctx:
            self._finish(slot, seq, text, "length")
        else:
            seq.next_token = token
            if seq.stream and text:
                seq.emit(Delta(text, None, seq.generated, seq.take_scored()))

    def _finish(self, slot: Slot, seq: Sequence, text: str, reason: str) -> None:
        text += seq.text.finish()
        self._retire(slot, keep_cache=True)  # first: whoever gets the last delta finds the slot free
        seq.emit(Delta(text if seq.stream else seq.text.text, reason, seq.generated, seq.take_scored()))

    def _retire(self, slot: Slot, *, keep_cache: bool) -> None:
        seq = slot.sequence
        slot.sequence = None
        if seq is not None:
            seq.sampler.close()
        if not keep_cache:
            llama_cpp.llama_memory_seq_rm(self._memory, slot.seq_id, -1, -1)
            slot.tokens.clear()

    def _piece(self, token: int) -> bytes:
        piece = self._pieces.get(token)
        if piece is None:
            piece = self._pieces[token] = token_piece(self._vocab, token, special=False)
        return piece

    def _fail_active(self, exc: BaseException) -> None:
        for slot in self._slots:
            seq = slot.sequence
            if seq is not None:
                self._retire(slot, keep_cache=False)
                seq.emit(exc)

    def _fail_all(self, exc: BaseException) -> None:
        self._fail_active(exc)
        while self._waiting:
            seq = self._waiting.popleft()
            seq.sampler.close()
            seq.emit(exc)
