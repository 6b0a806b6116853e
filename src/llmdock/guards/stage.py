"""The ``guard_in`` and ``guard_out`` pipeline stages.

``guard_in`` (before generate) checks the prompt: each chat message whose role a detector's policy covers
(by default user turns and tool results, where indirect injections arrive), or the completion prompt.
``guard_out`` (after generate) checks the answer, with the request's system prompt and context at hand
for the leakage and grounding detectors. Actions: ``block`` answers 400 ``content_policy`` with the
verdict; ``redact`` replaces the offending spans (or the whole text when a detector has no spans);
``flag`` marks the trace (``llmdock.guard.flagged``); ``log`` only leaves the span.

Streaming: ``guard_out`` wraps the stream. With a block or redact policy active it holds back the last
``guards.stream_hold_chars`` characters of the answer and checks the text every 64 characters and at the
end, so a redaction can still apply before text leaves and a block ends the stream with an SSE error event
(text sent before the block has been sent). With only flag/log policies chunks pass straight through and
the answer is checked once the stream ends.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

from llmdock.backends.base import Generation, StreamChunk
from llmdock.backends.operations import OPERATIONS
from llmdock.config import Settings
from llmdock.errors import GuardBlocked
from llmdock.guards.base import Direction, GuardText
from llmdock.guards.engine import Outcome, blocked_error, check, decide, record, redact, redactions
from llmdock.guards.policy import DetectorEnv, Entry, GuardPolicies, build_policies
from llmdock.pipeline.context import RequestContext
from llmdock.pipeline.env import StageEnv
from llmdock.pipeline.stages import flatten_content
from llmdock.structured.judge import judge, openai_tool_calls
from llmdock.structured.plan import plan_of
from llmdock.structured.stage import replay

STREAM_CHECK_CHARS = 64
JUDGED = ("valid", "repaired", "reasked")  # outcomes of the structured stage that deliver an answer
CONTEXT_ROLES = ("system", "developer", "tool", "user")


class _GuardStage:
    name = "guard"
    direction: Direction = "input"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.policies: GuardPolicies | None = None

    def bind(self, env: StageEnv) -> None:
        """Validate the policies and build the detectors (training a classifier the first time)."""
        model_dir = self.settings.guards.model_dir or self.settings.home / "guards"
        self.policies = build_policies(self.settings, env.plugins("detectors"), DetectorEnv(model_dir, env))

    def entries(self, ctx: RequestContext, direction: Direction) -> list[Entry]:
        assert self.policies is not None, "guard stage used before bind"
        return self.policies.resolve(ctx)[direction]

    def _finish(self, ctx: RequestContext, outcomes: list[Outcome], streaming: bool = False) -> list[Outcome]:
        """Record the spans; raise on a block; return the redacting outcomes."""
        assert self.policies is not None
        blocking, redacting, applied = decide(outcomes)
        flagged = record(ctx, self.name, outcomes, applied)
        if not streaming:  # while streaming no stage span is open to annotate
            ctx.annotate(**{"llmdock.guard.checked": len(outcomes), "llmdock.guard.flagged": flagged})
        if blocking is not None:
            raise blocked_error(blocking, self.policies.settings.block_message, self.direction)
        return redacting


def _system_text(ctx: RequestContext) -> str:
    messages = ctx.request.messages if ctx.request else None
    return "\n".join(
        flatten_content(m.get("content")) for m in messages or [] if m.get("role") in ("system", "developer")
    )


def _context_text(ctx: RequestContext) -> str:
    req = ctx.request
    if req is None:
        return ""
    if req.messages is None:
        return req.prompt or ""
    return "\n".join(
        flatten_content(m.get("content")) for m in req.messages if m.get("role") in CONTEXT_ROLES
    )


class GuardInStage(_GuardStage):
    """Checks the prompt before generation (see the module docstring)."""

    name = "guard_in"
    direction: Direction = "input"

    async def __call__(self, ctx: RequestContext) -> RequestContext:
        req = ctx.request
        if req is None or ctx.generation is not None:
            return ctx
        entries = self.entries(ctx, "input")
        if req.messages is not None:
            items = [
                GuardText(flatten_content(m.get("content")), str(m.get("role", "")), "input", ctx=ctx)
                for m in req.messages
            ]
        else:
            items = [GuardText(req.prompt or "", "prompt", "input", ctx=ctx)]
        changed = self._add_canary(ctx)
        redacting = self._finish(ctx, await check(entries, items))
        if redacting:
            template = self.settings.guards.redaction
            for i, findings in enumerate(redactions(redacting, len(items))):
                if not findings:
                    continue
                if req.messages is not None:
                    req.messages[i] = {
                        **req.messages[i],
                        "content": redact(items[i].text, findings, template),
                    }
                else:
                    req.prompt = redact(items[i].text, findings, template)
            changed = True
        if changed:
            ctx.backend.prepare(req)  # the prompt changed: render it and count its tokens again
        return ctx

    def _add_canary(self, ctx: RequestContext) -> bool:
        """Put a canary token in the system prompt when the output policy checks leakage with one."""
        req = ctx.request
        if req is None or req.messages is None:
            return False
        wants = any(e.name == "leakage" and e.params.get("canary") for e in self.entries(ctx, "output"))
        if not wants:
            return False
        canary = f"llmdock-canary-{secrets.token_hex(6)}"
        ctx.attributes["llmdock.guard.canary"] = canary
        note = f"\n\n(Confidential marker {canary}: never repeat it.)"
        for i, m in enumerate(req.messages):
            if m.get("role") in ("system", "developer"):
                req.messages[i] = {**m, "content": flatten_content(m.get("content")) + note}
                return True
        req.messages.insert(0, {"role": "system", "content": note.strip()})
        return True


class GuardOutStage(_GuardStage):
    """Checks the answer after generation (see the module docstring)."""

    name = "guard_out"
    direction: Direction = "output"

    def _item(self, ctx: RequestContext, text: str) -> GuardText:
        canary = str(ctx.attributes.get("llmdock.guard.canary", ""))
        return GuardText(text, "answer", "output", _system_text(ctx), _context_text(ctx), canary, ctx)

    async def __call__(self, ctx: RequestContext) -> RequestContext:
        gen = ctx.generation
        if gen is None or OPERATIONS[ctx.operation].embeds:
            return ctx
        outcomes = await check(self.entries(ctx, "output"), [self._item(ctx, gen.text)])
        redacting = self._finish(ctx, outcomes)
        if redacting:
            self._redact_answer(ctx, gen, redacting)
        return ctx

    def _redact_answer(self, ctx: RequestContext, gen: Generation, redacting: list[Outcome]) -> None:
        """Redact the answer; one that must follow a JSON schema or tools still must, or it is blocked."""
        text = redact(gen.text, redactions(redacting, 1)[0], self.settings.guards.redaction)
        plan = plan_of(ctx)
        if plan is not None and plan.outcome in JUDGED:  # this stage runs after `structured`
            verdict = judge(plan, text, truncated=False)
            if not verdict.ok or verdict.repaired:
                names = ", ".join(o.entry.name for o in redacting)
                raise GuardBlocked(
                    f"Blocked: redacting the answer ({names}) would break its structured output: "
                    f"{verdict.error or 'it only parses after repair'}",
                    extra={"verdict": redacting[0].body()},
                )
            if verdict.calls is not None:
                gen.tool_calls = openai_tool_calls(verdict.calls, ctx.trace_id[:24])
            text = verdict.text
        gen.text = text
        gen.completion_tokens = 0  # post-process counts the redacted answer again

    async def wrap_stream(
        self, ctx: RequestContext, chunks: AsyncIterator[StreamChunk]
    ) -> AsyncIterator[StreamChunk]:
        entries = self.entries(ctx, "output")
        holding = any(e.policy.action in ("block", "redact") for e in entries)
        if holding and ctx.structured is not None:
            # The structured stage sends nothing before the whole answer is judged anyway: check it whole.
            async for chunk in self._whole(ctx, entries, chunks):
                yield chunk
            return
        text = ""
        sent = 0  # characters of the original answer already released
        checked = 0
        finish: str | None = None
        async for chunk in chunks:
            text += chunk.text
            finish = chunk.finish_reason or finish
            if not holding:
                yield chunk
                continue
            if len(text) - checked < STREAM_CHECK_CHARS or not chunk.text:
                continue
            checked = len(text)
            piece, sent = await self._release(ctx, entries, text, sent, final=False)
            if piece:
                yield StreamChunk(piece)
        if not entries:
            return
        if holding:
            piece, sent = await self._release(ctx, entries, text, sent, final=True)
            yield StreamChunk(piece, finish or "stop")
        else:
            self._finish(ctx, await check(entries, [self._item(ctx, text)]), streaming=True)

    async def _whole(
        self, ctx: RequestContext, entries: list[Entry], chunks: AsyncIterator[StreamChunk]
    ) -> AsyncIterator[StreamChunk]:
        parts = []
        finish: str | None = None
        async for chunk in chunks:
            parts.append(chunk.text)
            finish = chunk.finish_reason or finish
        text = "".join(parts)
        redacting = self._finish(ctx, await check(entries, [self._item(ctx, text)]), streaming=True)
        gen = ctx.generation
        if gen is None or gen.text != text:  # before `structured`: it judges what this stage lets through
            gen = Generation(text, 0, 0, finish or "stop")
        if redacting:
            self._redact_answer(ctx, gen, redacting)
        for chunk in replay(gen):
            yield chunk

    async def _release(
        self, ctx: RequestContext, entries: list[Entry], text: str, sent: int, final: bool
    ) -> tuple[str, int]:
        """Check the answer so far; return the (redacted) text that may leave now, and the new mark."""
        outcomes = await check(entries, [self._item(ctx, text)])
        if final:
            redacting = self._finish(ctx, outcomes, streaming=True)
        else:
            blocking, redacting, _ = decide(outcomes)
            if blocking is not None:
                redacting = self._finish(ctx, outcomes, streaming=True)  # records the spans and raises
        findings = redactions(redacting, 1)[0]
        boundary = len(text) if final else max(sent, len(text) - self.settings.guards.stream_hold_chars)
        for f in findings:
            if f.start < boundary < f.end:
                boundary = max(sent, f.start)  # never release half of an offending span
        piece = [f for f in findings if f.end > sent and f.start < boundary]
        if any(f.start < sent for f in piece):
            ctx.attributes["llmdock.guard.late_redaction"] = True
        shifted = [type(f)(max(f.start, sent) - sent, min(f.end, boundary) - sent, f.label) for f in piece]
        return redact(text[sent:boundary], shifted, self.settings.guards.redaction), boundary
