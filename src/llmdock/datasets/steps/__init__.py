"""Cleaning steps: each takes the rows and returns the rows it keeps plus a report of what it did.

A step is a class with a ``name``, a pydantic ``Params`` model (so a recipe's mistakes are named by field)
and ``run(rows, ctx) -> rows``, counting what it dropped and changed in ``ctx.report``. ``BUILTIN_STEPS`` lists
them; the cleaning runner (``datasets.clean``) applies them in order and records each with its parameters.
"""

from __future__ import annotations

from llmdock.datasets.steps.base import Step, StepContext
from llmdock.datasets.steps.dedup import Dedup
from llmdock.datasets.steps.paraphrase import Paraphrase
from llmdock.datasets.steps.privacy import KAnonymity, Pii
from llmdock.datasets.steps.split import Augment, Split
from llmdock.datasets.steps.text import Language, Length, Normalize

BUILTIN_STEPS: tuple[type[Step], ...] = (
    Normalize,
    Length,
    Language,
    Dedup,
    Pii,
    KAnonymity,
    Split,
    Augment,
    Paraphrase,
)

__all__ = ["BUILTIN_STEPS", "Step", "StepContext"]
