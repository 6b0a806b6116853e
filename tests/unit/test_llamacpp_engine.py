"""The llama.cpp backend's parts that need no model: text assembly with stop strings, parameters, admission."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmdock.backends.base import Backend
from llmdock.backends.llama_sequence import TextTail
from llmdock.config import load_settings
from llmdock.errors import ConfigError, Overloaded
from llmdock.plugins import load_plugins
from llmdock.runtime import build_backends


def feed_all(tail: TextTail, pieces: list[bytes]) -> list[str]:
    return [tail.feed(p) for p in pieces]


def test_text_without_stop_strings_is_sent_as_it_comes() -> None:
    tail = TextTail([])
    assert feed_all(tail, [b"Hello", b" world"]) == ["Hello", " world"]
    assert tail.finish() == ""


def test_a_stop_string_spanning_tokens_ends_the_text_and_none_of_it_is_sent() -> None:
    tail = TextTail(["<end>"])
    sent = feed_all(tail, [b"Hi th", b"ere<e", b"nd> more"])
    assert sent == ["Hi th", "ere", ""]
    assert tail.stopped
    assert tail.text == "Hi there"
    assert tail.finish() == ""


def test_text_that_only_looked_like_a_stop_string_is_sent_later() -> None:
    tail = TextTail(["<end>"])
    assert tail.feed(b"a <e") == "a "  # "<e" could begin "<end>": held back
    assert tail.feed(b"x") == "<ex"
    assert tail.feed(b" <") == " "
    assert not tail.stopped
    assert tail.finish() == "<"  # the answer ended: what was held back is sent


def test_the_earliest_of_several_stop_strings_wins() -> None:
    tail = TextTail(["\n\n", "User:"])
    tail.feed(b"one User: two\n\n")
    assert tail.text == "one "


def test_a_character_split_across_tokens_is_sent_whole() -> None:
    tail = TextTail([])
    euro = "€".encode()
    assert tail.feed(b"5 " + euro[:1]) == "5 "
    assert tail.feed(euro[1:]) == "€"


def config_error(tmp_path: Path, **params: object) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        llamacpp_backend(tmp_path, **params)
    return info.value


def llamacpp_backend(tmp_path: Path, **params: object) -> Backend:
    """Build (not load) a llama.cpp backend ``mine`` from a config file with ``params`` under the model."""
    lines = "".join(f"    {k}: {v}\n" for k, v in params.items())
    cfg = tmp_path / "llmdock.yaml"
    cfg.write_text(f"models:\n  mine:\n    backend: llamacpp\n    model_path: x.gguf\n{lines}")
    return build_backends(load_settings(cfg), load_plugins())["mine"].deployments[0].backend


def test_n_batch_smaller_than_n_parallel_names_the_model(tmp_path: Path) -> None:
    err = config_error(tmp_path, n_parallel=8, n_batch=4)
    assert "models.mine" in (err.where or "")
    assert "n_parallel" in err.message


def test_context_window_beyond_the_per_sequence_cache_is_refused(tmp_path: Path) -> None:
    err = config_error(tmp_path, n_ctx=1024, context_window=4096)
    assert "models.mine.context_window" in (err.where or "")
    assert "n_ctx 1024" in err.message


def test_n_parallel_requests_run_and_max_queue_more_wait_before_overload(tmp_path: Path) -> None:
    backend = llamacpp_backend(tmp_path, n_parallel=3, max_queue=2)
    for _ in range(5):
        backend.admit()
    with pytest.raises(Overloaded):
        backend.admit()
