"""The built-in evaluation metrics: each on a passing and a failing output, the bad checks and cases they
refuse, and their registration through the ``llmdock_metrics`` hook (a third-party metric too)."""

from __future__ import annotations

from typing import Any

import pytest
import sacrebleu
from rouge_score.rouge_scorer import RougeScorer

from llmdock.backends.base import EmbeddingResult
from llmdock.evaluate import BaseMetric, Case, Check, MetricError, MetricFactory, Output, Score
from llmdock.evaluate.metrics import BUILTIN_METRICS
from llmdock.hookspecs import hookimpl
from llmdock.plugins import load_plugins

METRICS = {cls.name: cls for cls in BUILTIN_METRICS}

CAPITAL = Case(id="capital", input="What is the capital of France?", expected="Paris", where="qa.jsonl:3")
NO_REFERENCE = Case(id="open-ended", input="Tell me a story.", where="qa.jsonl:7")


async def score(
    type_: str,
    text: str,
    case: Case = CAPITAL,
    env: Any = None,
    **check: Any,
) -> Score:
    metric = METRICS[type_](Check(type=type_, **check), env)
    return await metric.score(case, Output(text=text))


def reference(expected: str) -> Case:
    return Case(id="ref", input="…", expected=expected, where="ref.jsonl:1")


# --- text checks: 1 or 0, pass at 1 ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_", "check", "good", "bad"),
    [
        ("equals", {}, "  Paris\n", "Paris, France"),
        ("equals", {"value": "Lyon"}, "Lyon", "Paris"),  # value overrides the reference
        ("contains", {}, "The capital is Paris.", "The capital is Lyon."),
        ("contains", {"value": "capital"}, "The capital is Lyon.", "It is Paris."),
        ("icontains", {}, "PARIS, of course", "Lyon, of course"),
        ("not-contains", {"value": "sorry"}, "Paris.", "I'm sorry, I can't."),
        ("regex", {"value": r"\b\d{3}-\d{4}\b"}, "Call 555-1234 now", "Call 5551234 now"),
        ("starts-with", {"value": "Yes"}, "  Yes, it is.", "No. Yes."),
        ("starts-with", {}, "Paris is the capital.", "The capital is Paris."),
    ],
)
async def test_text_checks_score_1_or_0(type_: str, check: dict[str, Any], good: str, bad: str) -> None:
    passed = await score(type_, good, **check)
    assert passed == Score(1.0, True)
    failed = await score(type_, bad, **check)
    assert (failed.value, failed.passed) == (0.0, False)
    assert failed.reason.startswith(type_)


async def test_a_threshold_of_0_lets_a_failed_boolean_pass() -> None:
    assert await score("contains", "Lyon", threshold=0) == Score(0.0, True, "")


# --- overlap with a reference: 0..1, pass at 0.5 --------------------------------------------------------


async def test_token_f1_is_squads() -> None:
    # SQuAD normalisation: case, punctuation and articles go; tokens [eiffel, tower] vs [eiffel, tower, in, paris]
    good = await score("token-f1", "The Eiffel Tower!", reference("Eiffel tower in Paris"))
    assert good.value == pytest.approx(2 / 3)
    assert good.passed
    bad = await score("token-f1", "the Louvre", reference("Eiffel tower in Paris"))
    assert bad == Score(0.0, False)
    assert (
        await score("token-f1", "the Eiffel Tower", reference("Eiffel tower in Paris"), threshold=0.7)
    ).passed is False
    assert (await score("token-f1", "a", reference("the"))).value == 1.0  # both normalise to nothing


SENTENCES = (
    "The quick brown fox jumps over the lazy dog near the river bank.",  # the reference
    "The quick brown fox jumped over the lazy dog by the river bank.",  # close
    "A slow green turtle walked under a busy bridge in the city.",  # far
)


@pytest.mark.parametrize(
    ("type_", "direct"),
    [
        ("bleu", lambda hyp, ref: sacrebleu.sentence_bleu(hyp, [ref]).score / 100),
        ("chrf", lambda hyp, ref: sacrebleu.sentence_chrf(hyp, [ref]).score / 100),
        (
            "rouge-1",
            lambda hyp, ref: RougeScorer(["rouge1"], use_stemmer=True).score(ref, hyp)["rouge1"].fmeasure,
        ),
        (
            "rouge-2",
            lambda hyp, ref: RougeScorer(["rouge2"], use_stemmer=True).score(ref, hyp)["rouge2"].fmeasure,
        ),
        (
            "rouge-l",
            lambda hyp, ref: RougeScorer(["rougeL"], use_stemmer=True).score(ref, hyp)["rougeL"].fmeasure,
        ),
    ],
)
async def test_library_metrics_give_the_librarys_values(type_: str, direct: Any) -> None:
    ref, close, far = SENTENCES
    good = await score(type_, close, reference(ref))
    assert good.value == pytest.approx(direct(close, ref), abs=1e-12)
    assert good.passed
    assert 0.5 <= good.value < 1
    bad = await score(type_, far, reference(ref))
    assert bad.value == pytest.approx(direct(far, ref), abs=1e-12)
    assert not bad.passed
    assert (await score(type_, ref, reference(ref))).value == pytest.approx(1.0)
    assert (await score(type_, close, reference(ref), threshold=0.99)).passed is False
    assert (await score(type_, close, value=close)).value == pytest.approx(1.0)  # value overrides `expected`


async def test_rouge_stems_words() -> None:
    # Porter stemming: cats/cat, running/runs/run
    assert (await score("rouge-1", "cats running", reference("cat runs"))).value == pytest.approx(1.0)


# --- formats ---------------------------------------------------------------------------------------------

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name"],
}


async def test_is_json() -> None:
    assert await score("is-json", ' {"name": "Ada"}\n') == Score(1.0, True)
    failed = await score("is-json", "Sure! {name: Ada}")
    assert (failed.value, failed.passed) == (0.0, False)
    assert failed.reason.startswith("not JSON")


@pytest.mark.parametrize("type_", ["json-schema", "is-json"])  # is-json takes a schema, as in promptfoo
async def test_json_schema(type_: str) -> None:
    assert await score(type_, '{"name": "Ada", "age": 36}', value=PERSON) == Score(1.0, True)
    assert (await score(type_, '{"name": "Ada"}', value='{"required": ["name"]}')).passed
    failed = await score(type_, '{"name": "Ada", "age": "old"}', value=PERSON)
    assert (failed.value, failed.passed) == (0.0, False)
    assert failed.reason == "schema: age: 'old' is not of type 'integer'"
    assert (await score(type_, "not json", value=PERSON)).reason.startswith("not JSON")


# --- usage: the figure itself, pass when at or under the threshold ----------------------------------------


@pytest.mark.parametrize(
    ("type_", "field", "unit"),
    [("latency", "latency_ms", " ms"), ("tokens", "completion_tokens", " tokens"), ("cost", "cost", "")],
)
async def test_usage_metrics(type_: str, field: str, unit: str) -> None:
    metric = METRICS[type_](Check(type=type_, threshold=100), None)
    assert await metric.score(CAPITAL, Output(**{field: 100})) == Score(100.0, True)
    assert await metric.score(CAPITAL, Output(**{field: 250})) == Score(250.0, False, f"250{unit} > 100")
    unbounded = METRICS[type_](Check(type=type_), None)  # no threshold: recorded, always passes
    assert await unbounded.score(CAPITAL, Output(**{field: 10_000})) == Score(10_000.0, True)


# --- similarity through the configured embedding model --------------------------------------------------


class FakeEnv:
    """Embeds each text as a fixed vector; ``None`` when no embedding model is configured."""

    def __init__(self, vectors: dict[str, list[float]] | None) -> None:
        self.vectors = vectors
        self.calls: list[list[str]] = []

    async def embed(self, texts: list[str]) -> EmbeddingResult | None:
        self.calls.append(texts)
        if self.vectors is None:
            return None
        return EmbeddingResult(vectors=[self.vectors[text] for text in texts], prompt_tokens=len(texts))


async def test_similar_is_the_cosine_of_the_embeddings() -> None:
    env = FakeEnv({"Paris": [3.0, 4.0], "It is Paris.": [4.0, 3.0], "Lyon": [4.0, -3.0], "City": [1.0, 0.0]})
    good = await score("similar", "It is Paris.", env=env)
    assert good == Score(pytest.approx(24 / 25), True)
    assert env.calls == [["It is Paris.", "Paris"]]
    bad = await score("similar", "Lyon", env=env)
    assert bad == Score(0.0, False)
    assert (await score("similar", "It is Paris.", env=env, threshold=0.97)).passed is False
    assert (await score("similar", "City", env=env, value="Lyon")).value == pytest.approx(0.8)


async def test_similar_needs_an_embedding_model() -> None:
    with pytest.raises(MetricError, match="needs the local runtime's embedding model"):
        METRICS["similar"](Check(type="similar"), None)
    with pytest.raises(MetricError, match=r"no embedding model is configured .* case capital \(qa.jsonl:3\)"):
        await score("similar", "Paris", env=FakeEnv(None))


# --- bad checks and cases without a reference ------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_", "check", "message"),
    [
        ("regex", {"value": "(unclosed"}, r"regex: bad pattern '\(unclosed': missing \)"),
        ("regex", {}, "regex: needs a `value`"),
        ("not-contains", {}, "not-contains: needs a `value`"),
        ("contains", {"value": ["a", "b"]}, "contains: `value` must be text, not list"),
        ("json-schema", {}, "json-schema: needs the JSON schema as `value`"),
        (
            "json-schema",
            {"value": {"type": "nonsense"}},
            "json-schema: bad JSON schema: 'nonsense' is not valid",
        ),
        ("json-schema", {"value": "{not json"}, "json-schema: `value` is not a JSON schema"),
        ("is-json", {"value": [1]}, r"is-json: `value` must be a JSON schema \(an object\)"),
        ("latency", {"threshold": -1}, "latency: threshold must be ≥ 0"),
    ],
)
def test_bad_checks_are_metric_errors(type_: str, check: dict[str, Any], message: str) -> None:
    with pytest.raises(MetricError, match=message):
        METRICS[type_](Check(type=type_, **check), None)


@pytest.mark.parametrize("type_", [cls.name for cls in BUILTIN_METRICS if cls.needs_reference])
async def test_a_case_without_expected_is_named(type_: str) -> None:
    env = FakeEnv({})
    with pytest.raises(MetricError, match=r"needs `expected` and case open-ended \(qa.jsonl:7\) has none"):
        await score(type_, "Once upon a time", NO_REFERENCE, env=env)
    assert env.calls == []


def test_the_reference_metrics_are_the_comparisons() -> None:
    needing = {cls.name for cls in BUILTIN_METRICS if cls.needs_reference}
    assert needing == {"equals", "contains", "icontains", "starts-with", "token-f1", "bleu", "chrf"} | {
        "rouge-1",
        "rouge-2",
        "rouge-l",
        "similar",
        "perplexity",  # of `expected` under the model (tests/unit/test_logprobs.py)
    }


# --- registration ----------------------------------------------------------------------------------------

BUILTIN_NAMES = {
    "equals",
    "contains",
    "icontains",
    "not-contains",
    "regex",
    "starts-with",
    "token-f1",
    "bleu",
    "chrf",
    "rouge-1",
    "rouge-2",
    "rouge-l",
    "sentiment",
    "is-json",
    "json-schema",
    "latency",
    "tokens",
    "cost",
    "similar",
    # the guard detectors as metrics (tests/unit/test_eval_guard_metrics.py)
    *(
        f"guard:{d}"
        for d in "toxicity pii secrets refusal leakage grounding injection urls banned_topics language regex".split()
    ),
    "guard",
    "llm-rubric",  # tests/unit/test_eval_judge.py
    "perplexity",  # tests/unit/test_logprobs.py
    # the RAG judge metrics (tests/unit/test_rag_kbeval.py), registered by default_plugins/rag.py
    *("faithfulness", "answer-correctness", "context-precision", "context-recall", "context-recall-claims"),
}


class WordCountMetric(BaseMetric):
    name = "word-count"
    description = "The output's words; passes at the threshold."

    async def score(self, case: Case, output: Output) -> Score:
        value = float(len(output.text.split()))
        return Score(value, self.passes(value))


class ShoutingEquals(WordCountMetric):
    name = "equals"


class WordCountPlugin:
    @hookimpl
    def llmdock_metrics(self) -> list[MetricFactory]:
        return [WordCountMetric, ShoutingEquals]


def test_the_builtins_register_through_the_hook() -> None:
    plugins = load_plugins(entry_points=False)
    assert set(plugins.metrics) == BUILTIN_NAMES
    assert plugins.registered()["metrics"] == plugins.metrics
    assert "llmdock.default_plugins.metrics" in plugins.names
    for name, factory in plugins.metrics.items():
        assert factory.name == name
        assert "Passes" in factory.description, name  # each documents when it passes


async def test_a_third_party_metric_is_found_and_replaces_a_builtin_of_its_name() -> None:
    metrics = load_plugins(entry_points=False, extra=[WordCountPlugin()]).metrics
    assert set(metrics) == BUILTIN_NAMES | {"word-count"}
    assert metrics["equals"] is ShoutingEquals
    metric = metrics["word-count"](Check(type="word-count", threshold=3), None)
    assert await metric.score(CAPITAL, Output(text="it is Paris")) == Score(3.0, True)
