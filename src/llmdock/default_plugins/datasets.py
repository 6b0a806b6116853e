"""The built-in dataset cleaning steps (normalize, length, language, dedup, pii, kanon, split, augment, paraphrase)."""

from __future__ import annotations

from llmdock.datasets.steps.base import Step
from llmdock.hookspecs import hookimpl


@hookimpl
def llmdock_dataset_steps() -> list[type[Step]]:
    from llmdock.datasets.steps import BUILTIN_STEPS

    return list(BUILTIN_STEPS)
