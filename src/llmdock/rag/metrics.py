"""RAG answer metrics: faithfulness, answer correctness, context precision and context recall.

Each is evaluate's ``llm-rubric`` judge with a fixed rubric (same judge model choice, JSON verdict, cache
and stored judge prompt; ``value`` may still name the judge ``model``). What they grade:

- ``faithfulness``: the answer against the context the model was given. An answer that says the sources do
  not answer the question, when they do not, is faithful: an unanswerable question scores, never NaN.
- ``answer-correctness``: the answer against the case's reference answer (``expected``).
- ``context-precision``: how much of the context given is relevant to the question.
- ``context-recall``: how much of the reference answer the context given contains.
- ``context-recall-claims``: the same per claim, as Ragas counts it: the reference answer split into its
  sentences, each judged (pass/fail) present in the context or not; the value is the share present.

"The context given" is what the ground stage wrote into the question's turn, read from the conversation the
target served (``Output.messages``); when nothing was added there (no knowledge base, a URL target), the
case's own ``context``. Except ``context-recall-claims``, each is one judge call over the whole context (a
small judge model is asked for fewer, simpler verdicts); ``context-recall-claims`` asks one pass/fail
verdict per claim.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar

from llmdock.evaluate.case import Case, Check, MetricError, Output, Score
from llmdock.evaluate.metrics.base import clip
from llmdock.evaluate.metrics.judge import PASS_AT, LlmRubricMetric

if TYPE_CHECKING:  # the pipeline's modules load only when a RAG metric runs, not when the plugins register
    from llmdock.pipeline.env import StageEnv


def given_context(case: Case, output: Output) -> str:
    """The context the model answered from: the last user turn it was sent, when that is more than the case's
    own question (the ground stage's sources are in it), else the case's ``context``."""
    from llmdock.pipeline.stages import flatten_content

    users = [m for m in output.messages or [] if m.get("role") == "user"]
    if users:
        sent = flatten_content(users[-1].get("content"))
        own = case.input if case.input is not None else None
        if own is None and case.messages:
            own_users = [m for m in case.messages if m.get("role") == "user"]
            own = flatten_content(own_users[-1].get("content")) if own_users else None
        if own is not None and sent.strip() != own.strip():
            return sent
    return case.context or ""


class RagJudgeMetric(LlmRubricMetric):
    """``llm-rubric`` with this metric's rubric; ``value`` (optional) is ``{model, prompt, max_tokens, cache}``."""

    rubric: ClassVar[str]
    grades: ClassVar[str] = "answer"  # what the judge sees as the answer to grade: answer | context

    def __init__(self, check: Check, env: StageEnv | None) -> None:
        value = check.value if check.value is not None else {}
        if not isinstance(value, dict) or "rubric" in value:
            raise MetricError(f"{check.label}: `value` is optional: {{model, prompt, max_tokens, cache}}")
        fixed = Check(check.type, {"rubric": self.rubric, **value}, check.threshold, check.weight, check.name)
        super().__init__(fixed, env)
        self.check = check

    def variables(self, case: Case, output: Output) -> dict[str, Any]:
        found = super().variables(case, output)
        context = given_context(case, output)
        if self.grades == "context":
            found["output"] = context or "(no context was given)"
            found["context"] = ""
        else:
            found["context"] = context if not self.needs_reference else ""
        if not self.needs_reference:
            found["expected"] = ""
        return found


class FaithfulnessMetric(RagJudgeMetric):
    name = "faithfulness"
    rubric = (
        "Faithfulness: every statement in the answer is supported by the context. Score the share of the "
        "answer's statements the context supports; an answer that adds facts the context does not give, or "
        "contradicts it, scores low. If the context does not answer the question and the answer says so, "
        "score 1."
    )
    description = (
        "RAG: a judge (`llm-rubric`) scores 0..1 how much of the answer the context the model was given "
        "supports (the ground stage's sources, else the case's `context`); saying the sources do not "
        "answer, when they do not, is faithful. Passes at 0.5 unless a threshold is set. Needs a local runtime."
    )


class AnswerCorrectnessMetric(RagJudgeMetric):
    name = "answer-correctness"
    needs_reference = True
    rubric = (
        "Correctness: the answer states the same facts as the reference answer (wording may differ). Score "
        "the share of the reference's facts the answer gets right; a contradiction of the reference scores 0."
    )
    description = (
        "RAG: a judge (`llm-rubric`) scores 0..1 how much of the reference answer (`expected`) the answer "
        "gets right. Passes at 0.5 unless a threshold is set. Needs a local runtime."
    )


class ContextPrecisionMetric(RagJudgeMetric):
    name = "context-precision"
    grades = "context"
    rubric = (
        "Context precision: the 'answer to grade' is the context retrieved for the question. Score the "
        "share of it that is relevant to answering the question (1: all of it, 0: none of it)."
    )
    description = (
        "RAG: a judge (`llm-rubric`) scores 0..1 how much of the context the model was given is relevant "
        "to the question (one call over the whole context). Passes at 0.5 unless a threshold is set. "
        "Needs a local runtime."
    )


class ContextRecallMetric(RagJudgeMetric):
    name = "context-recall"
    grades = "context"
    needs_reference = True
    rubric = (
        "Context recall: the 'answer to grade' is the context retrieved for the question. Score the share "
        "of the reference answer's facts that the context contains (1: all of them, 0: none)."
    )
    description = (
        "RAG: a judge (`llm-rubric`) scores 0..1 how much of the reference answer (`expected`) the context "
        "the model was given contains. Passes at 0.5 unless a threshold is set. Needs a local runtime."
    )


@functools.cache
def _sentencizer() -> Any:
    import spacy

    nlp = spacy.blank("en")  # rules only: no model to load
    nlp.add_pipe("sentencizer")
    return nlp


def claims(text: str) -> list[str]:
    """The reference answer's claims: its sentences (spaCy's rule-based sentencizer), empty ones left out."""
    return [s.text.strip() for s in _sentencizer()(text).sents if any(c.isalnum() for c in s.text)]


class ContextRecallClaimsMetric(RagJudgeMetric):
    """Ragas' context recall: each claim of the reference answer judged present in the context or not."""

    name = "context-recall-claims"
    grades = "context"
    needs_reference = True
    rubric = (
        "Claim check: the 'answer to grade' is the context retrieved for the question, and the reference "
        "answer is one claim. Pass if the context states that claim (in any wording); fail if it does not."
    )
    description = (
        "RAG: the reference answer (`expected`) split into claims (its sentences), each judged by "
        "`llm-rubric` (pass/fail) present in the context the model was given or not; the value is the "
        "share present (Ragas' context recall). A reference with no claim scores 0. Passes at 0.5 unless a "
        "threshold is set. Needs a local runtime."
    )

    def __init__(self, check: Check, env: StageEnv | None) -> None:
        value = check.value if isinstance(check.value, dict) else {}
        super().__init__(replace(check, value={"verdict": "pass", **value}), env)
        self.check = check

    async def score(self, case: Case, output: Output) -> Score:
        found = claims(case.expected or "")
        if not found:
            return Score(0.0, False, "the reference answer states no claim to look for")
        verdicts = []
        for claim in found:  # one at a time: a small judge serves one call at once anyway
            verdicts.append(await super().score(replace(case, expected=claim), output))
        share = sum(v.value for v in verdicts) / len(verdicts)
        listed = "; ".join(
            f"{'found' if v.passed else 'missing'}: {clip(c, 60)}"
            for c, v in zip(found, verdicts, strict=True)
        )
        kept = sum(v.passed for v in verdicts)
        reason = f"{kept} of {len(found)} claims of the reference are in the context ({listed})"
        return Score(share, self.passes(share, PASS_AT), reason)


RAG_METRICS = (
    FaithfulnessMetric,
    AnswerCorrectnessMetric,
    ContextPrecisionMetric,
    ContextRecallMetric,
    ContextRecallClaimsMetric,
)
