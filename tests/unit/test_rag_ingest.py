"""Knowledge bases: ingest is incremental and resumable, skips bad files with a reason, keeps headings, and
refuses a model whose vectors have another dimension count (with fake embeddings: no model weights)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pypdf import PdfWriter

from llmdock.config import ModelConfig
from llmdock.errors import ConfigError
from llmdock.rag import bases
from llmdock.rag.ingest import Ingest
from llmdock.rag.retrieve import Retriever
from llmdock.runtime import Runtime
from tests.conftest import fake_settings

DOCS = {
    "guide.md": "# Guide\n\nIntro text about widgets.\n\n## Install\n\nRun the frobnicator installer twice.\n",
    "notes.txt": "Plain notes about gizmos and their care.\n",
    "page.html": "<html><head><title>Page</title></head><body><h1>Top</h1><p>Sprockets rotate.</p>"
    "<h2>Detail <a class='headerlink'>¶</a></h2><p>Cogs mesh with sprockets.</p></body></html>",
}


def _corpus(root: Path) -> Path:
    docs = root / "docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text)
    (docs / "blob.dat").write_bytes(b"\x00\x01\x02binary")
    (docs / "empty.txt").write_text("")
    (docs / "latin1.txt").write_bytes("café".encode("latin-1"))
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4 not really a pdf")
    writer = PdfWriter()
    writer.add_blank_page(200, 200)
    writer.encrypt(user_password="secret", owner_password="owner")
    with (docs / "locked.pdf").open("wb") as out:
        writer.write(out)
    return docs


@pytest.fixture
async def runtime(tmp_path: Path):  # type: ignore[no-untyped-def]
    rt = Runtime(fake_settings(tmp_path))
    yield rt
    await rt.close()


async def test_ingest_skips_bad_files_with_a_reason_and_keeps_headings(
    runtime: Runtime, tmp_path: Path
) -> None:
    docs = _corpus(tmp_path)
    assert runtime.store is not None
    kb = bases.create(runtime.store, "kb", "fake-embed")
    report = await Ingest(runtime.stage_env, runtime.store, kb).run([docs])
    assert report.added == 3
    skipped = {Path(p).name: why for p, why in report.skipped}
    assert skipped == {
        "blob.dat": "binary file (not text, Markdown, HTML or PDF)",
        "empty.txt": "empty file",
        "latin1.txt": "not UTF-8 (byte 0xe9 at offset 3): convert it to UTF-8",
        "broken.pdf": skipped["broken.pdf"],
        "locked.pdf": "encrypted PDF (needs a password)",
    }
    assert skipped["broken.pdf"].startswith("unreadable PDF")
    hits = await Retriever(runtime.stage_env, runtime.store).search(
        "kb", "frobnicator installer", mode="bm25"
    )
    assert hits[0].source.endswith("guide.md")
    assert hits[0].headings == ["Guide", "Install"]
    html = await Retriever(runtime.stage_env, runtime.store).search("kb", "cogs mesh", mode="bm25", k=1)
    assert html[0].headings == ["Top", "Detail"]  # the permalink ¶ is not part of the heading


async def test_reingest_skips_unchanged_files_updates_changed_and_removes_deleted(
    runtime: Runtime, tmp_path: Path
) -> None:
    docs = _corpus(tmp_path)
    assert runtime.store is not None
    kb = bases.create(runtime.store, "kb", "fake-embed")
    first = await Ingest(runtime.stage_env, runtime.store, kb).run([docs])
    (docs / "notes.txt").write_text("Plain notes about gizmos and their care.\n\nNew: gadgets too.\n")
    (docs / "page.html").unlink()
    again = await Ingest(runtime.stage_env, runtime.store, bases.get(runtime.store, "kb")).run([docs])
    assert (again.added, again.updated, again.unchanged, again.removed) == (0, 1, 1, 1)
    assert again.embedded < first.embedded  # the unchanged paragraph of notes.txt kept its vector
    info = bases.get(runtime.store, "kb")
    assert info.documents == 2
    assert not await Retriever(runtime.stage_env, runtime.store).search("kb", "sprockets", mode="bm25")


async def test_an_interrupted_ingest_continues_where_it_stopped(runtime: Runtime, tmp_path: Path) -> None:
    docs = _corpus(tmp_path)
    assert runtime.store is not None
    kb = bases.create(runtime.store, "kb", "fake-embed")
    runtime.settings.rag.embed_batch = 1  # every file is written before the next is read
    done: list[str] = []

    def stop_after_two(path: Path, what: str) -> None:
        done.append(what)
        if what == "added" and done.count("added") == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await Ingest(runtime.stage_env, runtime.store, kb, stop_after_two).run([docs])
    resumed = await Ingest(runtime.stage_env, runtime.store, bases.get(runtime.store, "kb")).run([docs])
    assert (resumed.added, resumed.unchanged) == (1, 2)
    assert bases.get(runtime.store, "kb").documents == 3


async def test_a_model_with_other_dimensions_is_refused_and_nothing_changes(tmp_path: Path) -> None:
    docs = _corpus(tmp_path)
    settings = fake_settings(tmp_path)
    rt = Runtime(settings)
    assert rt.store is not None
    kb = bases.create(rt.store, "kb", "fake-embed")
    await Ingest(rt.stage_env, rt.store, kb).run([docs])
    await rt.close()
    (docs / "notes.txt").write_text("Changed notes.\n")
    wider = {
        "fake": ModelConfig(backend="fake"),
        "fake-embed": ModelConfig(backend="fake", task="embedding", dimensions=16),
    }
    rt = Runtime(fake_settings(tmp_path, models=wider))
    assert rt.store is not None
    before = bases.get(rt.store, "kb")
    with pytest.raises(ConfigError, match="holds 8-dimension vectors.*now gives 16: nothing was changed"):
        await Ingest(rt.stage_env, rt.store, before).run([docs])
    after = bases.get(rt.store, "kb")
    assert (after.version, after.chunks) == (before.version, before.chunks)
    await rt.close()
