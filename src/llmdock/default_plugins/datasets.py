"""The built-in dataset cleaning steps (normalize, length, language, dedup, pii, kanon, split, augment, paraphrase)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmdock.hookspecs import hookimpl

if TYPE_CHECKING:
    from llmdock.datasets.steps.base import Step


@hookimpl
def llmdock_dataset_steps() -> list[type[Step]]:
    from llmdock.datasets.steps import BUILTIN_STEPS

    return list(BUILTIN_STEPS)
