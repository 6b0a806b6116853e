"""``llmdock prompts sync`` and ``diff``: a directory of template files is the source of truth; new content
becomes a version, unchanged files do nothing, a bad file stops everything, deletions never delete versions."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmdock.cli.main import app
from llmdock.errors import ConfigError


def sync(*args: str) -> str:
    result = CliRunner().invoke(app, ["prompts", *args])
    if result.exception is not None:
        raise result.exception
    return result.output


def test_sync_follows_the_directory_and_diff_shows_what_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMDOCK_HOME", str(tmp_path / "home"))
    repo = tmp_path / "prompts"
    (repo / "sub").mkdir(parents=True)
    support = repo / "support.yaml"
    support.write_text(
        "messages:\n  - {role: user, content: 'Be brief: {{ q }}'}\nconfig: {max_tokens: 50}\n"
    )
    (repo / "sub" / "translate.yml").write_text("text: 'Translate: {{ t }}'\n")

    assert "support: new template (" in sync("sync", str(repo), "--dry-run")
    assert "dry run: nothing changed" in sync("sync", str(repo), "--dry-run")
    assert "support: new template -> version 1" in sync("sync", str(repo))
    again = sync("sync", str(repo))
    assert "support: unchanged" in again
    assert "translate: unchanged" in again

    support.write_text("messages:\n  - {role: user, content: 'Be kind: {{ q }}'}\nconfig: {max_tokens: 80}\n")
    (repo / "sub" / "translate.yml").unlink()
    changed = sync("sync", str(repo))
    assert "support: new version -> version 2" in changed
    assert "translate: kept (no file), latest version 1" in changed
    diff = sync("diff", "support", "1", "2")
    changed_lines = [
        line for line in diff.splitlines() if line[:1] in "+-" and line[:3] not in ("---", "+++")
    ]
    assert changed_lines == [
        "-  Be brief: {{ q }}",
        "-config.max_tokens: 50",
        "+  Be kind: {{ q }}",
        "+config.max_tokens: 80",
    ]
    assert "are the same" in sync("diff", "support", "2", "2")

    support.write_text("messages:\n  - {role: user, content: 'Third: {{ q }}'}\n")
    bad = repo / "bad.yaml"
    bad.write_text("messages:\n  - {role: user, content: ok}\n  - {role: wizard, content: x}\n")
    with pytest.raises(ConfigError) as caught:
        sync("sync", str(repo))
    assert caught.value.one_line().startswith(f"{bad}:3: messages.1.role: role must be one of")
    bad.unlink()
    assert "support: new version -> version 3" in sync("sync", str(repo))  # the failed sync saved nothing
