"""What long one-off fine-tuning steps show on stderr: a spinner, then how long the step took.

stdout carries the command's answer; nothing is drawn when stderr is not a terminal (logs and pipes), but
the closing line is printed either way.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console


@contextmanager
def status(message: str) -> Iterator[None]:
    """A spinner while one step runs, then a line saying it is done and how long it took."""
    console = Console(stderr=True)
    started = time.monotonic()
    if console.is_terminal:
        with console.status(message):
            yield
    else:
        yield
    console.print(f"{message}: done in {time.monotonic() - started:.1f} s", highlight=False)
