"""Fitting what a stage adds to a prompt into the model's context window."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from llmdock.backends.base import Backend, GenerationRequest
from llmdock.errors import ContextWindowExceeded

T = TypeVar("T")


def shrink_to_fit(
    backend: Backend,
    req: GenerationRequest,
    items: list[T],
    write: Callable[[list[T]], None],
    drop: Callable[[list[T]], list[T]],
) -> list[T]:
    """``write(items)`` into ``req`` and prepare it; while it does not fit, ``drop`` some and try again.

    What is left once it fits is returned; ContextWindowExceeded if it does not fit even with nothing.
    """
    while True:
        write(items)
        try:
            backend.prepare(req)
            return items
        except ContextWindowExceeded:
            if not items:
                raise
            items = drop(items)
