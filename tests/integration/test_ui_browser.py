"""The dashboard end to end: a real ``llmdock serve`` answering with the embedded model, driven in headless
Chromium (Debian's ``chromium``, through Playwright from PyPI; no browser is downloaded): sign in with a key,
see the traces of real requests, filter them (htmx), open a trace and its stages, promote a prompt label and
see the next request use it, open an evaluation run's report and its plots, the monitoring charts drawn (uPlot, under the pages' CSP), a model's lineage and an alias promoted from the keyboard, usage, and an API key created and shown once. A ``<script>``
sent in a request stays text. Screenshots go to the test's tmp dir (and to ``$LLMDOCK_ARTIFACTS`` if set)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmdock.auth.keys import Directory, load_secret
from llmdock.config import Settings
from llmdock.prompts import PromptRegistry
from llmdock.registry import ModelRegistry
from llmdock.store import Store
from llmdock.store.audit import Actor
from tests.integration.conftest import Server, start_server, stop_server
from tests.integration.test_eval_report_browser import chromium_or_skip

pytestmark = [pytest.mark.browser, pytest.mark.server, pytest.mark.model]
playwright = pytest.importorskip("playwright.sync_api")
HOSTILE = "<script>alert('x')</script>"
ACTOR = Actor("test", "ui-browser")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    """A server whose store already holds an admin key (auth on) and a prompt with two versions."""
    home = tmp_path_factory.mktemp("ui-home")
    settings = Settings(home=home)
    store = Store(settings.resolved_database_url())
    directory = Directory(store, load_secret(settings))
    directory.create_user("ada", ACTOR, role="admin")
    key, _ = directory.create_key("ada", ACTOR)
    prompts = PromptRegistry(store)
    for word in ("Reply with one word: yes.", "Reply with one word: no."):
        prompts.create("answer", ACTOR, kind="chat", template=[{"role": "system", "content": word}])
    prompts.labels.set("answer", "production", 1, ACTOR)
    store_run(store)
    weights = home / "tuned.gguf"
    weights.write_bytes(b"not a real model: the registry only keeps and hashes it")
    registry = ModelRegistry(store, home)
    for _ in range(2):
        registry.register("tuned", weights, ACTOR, progress=False, lineage=LINEAGE)
    registry.labels.set("tuned", "production", 1, ACTOR)
    store.close()
    server = start_server(
        home, env={"LLMDOCK_PROMPTS__CACHE_TTL_S": "0"}, headers={"authorization": f"Bearer {key}"}
    )
    yield server, key
    stop_server(server)


RUN = "uirun00000000001"
LINEAGE = {"base_model": "smollm2", "training_run": "ft-1", "method": "lora", "dataset": "support"}


def store_run(store: Store) -> None:
    """An evaluation run of six cases with one check (as ``llmdock eval run`` stores them)."""
    from llmdock.evaluate.case import Case, CaseResult, Output, Score
    from llmdock.evaluate.results import create_run, finish_run, save_result

    create_run(store, RUN, "capitals", "suite.yaml", "0" * 64, {}, 6, "test")
    for i in range(6):
        passed = i % 3 != 0
        checks = {"icontains": Score(float(passed), passed)}
        result = CaseResult(
            "smollm2", f"c{i}", 0, Output(f"answer {i}", 100.0 + i), checks, float(passed), passed
        )
        save_result(store, RUN, Case(id=f"c{i}", input=f"question {i}", expected="x"), result)
    finish_run(store, RUN, "done")


def chat(server: Server, key: str, content: str, **extra: object) -> dict[str, object]:
    body = {"model": "smollm2", "messages": [{"role": "user", "content": content}], "max_tokens": 2, **extra}
    resp = httpx.post(
        f"{server.v1}/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}, timeout=60
    )
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


def test_sign_in_see_filter_open_a_trace_and_promote_a_prompt(
    served: tuple[Server, str], tmp_path: Path
) -> None:
    chromium = chromium_or_skip()
    server, key = served
    with ThreadPoolExecutor(2) as pool:  # the server batches the two (n_parallel): one model call's time
        list(pool.map(lambda text: chat(server, key, text), ["Say hello.", f"Repeat: {HOSTILE}"]))
    shots = tmp_path / "screenshots"
    shots.mkdir()
    dialogs: list[str] = []
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(f"{server.url}/ui/traces")
        assert "/ui/login" in page.url
        page.fill("#key", key)
        page.click("button[type=submit]")
        page.wait_for_url("**/ui/traces")
        deadline = time.monotonic() + 20  # the ingester stores the journaled traces a moment later
        while page.locator("table.traces tbody tr").count() < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
            page.reload()
        assert page.locator("table.traces tbody tr").count() == 2
        page.screenshot(path=str(shots / "traces.png"), full_page=True)

        page.fill("input[name=text]", "repeat:")
        page.click("form.filters button[type=submit]")
        page.wait_for_url("**text=repeat*")
        page.wait_for_function("document.querySelectorAll('table.traces tbody tr').length === 1")
        page.click("table.traces tbody tr a")
        page.wait_for_selector("ol.waterfall")
        stages = page.locator("ol.waterfall .stage").all_inner_texts()
        assert {"preprocess", "generate", "postprocess"} <= set(stages)
        assert HOSTILE in page.locator(".message pre").first.inner_text()  # shown as text, not run
        page.screenshot(path=str(shots / "trace.png"), full_page=True)

        page.goto(f"{server.url}/ui/prompts/answer")
        page.select_option("form[action$='/promote'] select[name=version]", "2")
        page.click("form[action$='/promote'] button")
        page.wait_for_selector("p.done")
        assert "production now points at version 2 (was version 1)" in page.inner_text("p.done")
        page.screenshot(path=str(shots / "prompt.png"), full_page=True)
        chat(server, key, "Answer.", prompt_id="answer")
        page.goto(f"{server.url}/ui/traces")
        deadline = time.monotonic() + 20
        while page.locator("table.traces tbody tr").count() < 3 and time.monotonic() < deadline:
            time.sleep(0.5)
            page.reload()
        page.click("table.traces tbody tr a")  # the newest
        assert "answer version 2" in page.inner_text("dl.facts")

        page.goto(f"{server.url}/ui/evaluations")
        page.click(f"a[href$='/evaluations/{RUN}']")
        assert "0.667" in page.inner_text("main")  # the pass rate, with its interval
        page.click("text=The full report")
        page.wait_for_selector("svg.plot")  # the report as `llmdock eval report` writes it, under its own CSP
        assert page.locator("svg.plot").count() >= 3
        page.screenshot(path=str(shots / "evaluation-report.png"), full_page=True)

        page.goto(f"{server.url}/ui/monitoring")
        page.wait_for_selector(".chart canvas")
        assert page.locator(".chart canvas").count() == 4
        more_pages(page, server, shots)
        page.set_viewport_size({"width": 390, "height": 844})
        for name in ("traces", "models/tuned", "usage", "keys"):
            page.goto(f"{server.url}/ui/{name}")
            assert page.evaluate("document.documentElement.scrollWidth") <= 390 + 1, name  # no sideways page
        page.screenshot(path=str(shots / "keys-phone.png"), full_page=True)
        browser.close()
    assert dialogs == []
    if os.environ.get("LLMDOCK_ARTIFACTS"):
        shutil.copytree(shots, Path(os.environ["LLMDOCK_ARTIFACTS"]) / "ui-screenshots", dirs_exist_ok=True)


def more_pages(page: Any, server: Server, shots: Path) -> None:
    """Models (lineage, an alias promoted by keyboard alone), usage, and a key created and shown once."""
    page.goto(f"{server.url}/ui/models")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.click("a[href$='/models/tuned']")
    assert page.locator("#v2 ol.lineage li").all_inner_texts()[0].startswith("base")
    page.select_option("form[action$='/promote'] select[name=version]", "2")
    page.focus("form[action$='/promote'] button")
    page.keyboard.press("Enter")
    page.wait_for_selector("p.done")
    assert "production now points at version 2 (was version 1)" in page.inner_text("p.done")
    page.screenshot(path=str(shots / "model.png"), full_page=True)
    page.goto(f"{server.url}/ui/usage")
    assert "smollm2" in page.inner_text("table.usage >> nth=1")  # by model: the requests made above
    page.goto(f"{server.url}/ui/keys")
    page.fill("input[name=name]", "from-the-browser")
    page.click("form[action$='/keys/create'] button")
    key = page.inner_text("#new-key")
    assert key.startswith("ldk_")
    page.screenshot(path=str(shots / "keys.png"), full_page=True)
    page.goto(f"{server.url}/ui/keys")
    assert key not in page.content()  # shown once
    assert httpx.get(f"{server.v1}/models", headers={"authorization": f"Bearer {key}"}).status_code == 200
