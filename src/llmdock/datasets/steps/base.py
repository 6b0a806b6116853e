"""What every cleaning step shares: its parameters' model, the context it runs in, and its report."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from llmdock.datasets.importing import Report
from llmdock.datasets.rows import Row


class StepParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass
class StepContext:
    """What a step may need beyond its rows: where the llmdock home is, the settings' model lookup, the
    pseudonym key, and the report it fills in (kept/dropped by reason, plus its own figures in ``extra``)."""

    home: Path
    model_path: Callable[[str], Path]
    pseudonym_key: Callable[[], bytes]
    default_model: str = "smollm2"
    report: Report = field(default_factory=Report)
    extra: dict[str, Any] = field(default_factory=dict)
    advance: Callable[[int], None] = lambda n: None
    # Asks a configured model through the served pipeline (model, messages, sampling) -> the answer's text;
    # given by the command that runs the steps (it owns the runtime), None where no model may be asked.
    ask: Callable[[str, list[dict[str, str]], dict[str, Any]], str] | None = None


class Step:
    name: ClassVar[str]
    Params: ClassVar[type[StepParams]] = StepParams

    def __init__(self, params: StepParams) -> None:
        self.params = params

    def run(self, rows: list[Row], ctx: StepContext) -> list[Row]:
        raise NotImplementedError

    @staticmethod
    def keep_if(rows: list[Row], ctx: StepContext, why: Callable[[Row], str | None]) -> list[Row]:
        """The rows ``why`` finds nothing against; the others dropped under the reason it gives."""
        kept = []
        for i, row in enumerate(rows):
            reason = why(row)
            if reason is None:
                kept.append(row)
            else:
                ctx.report.drop(reason, f"row {i + 1}: {reason}")
            ctx.advance(1)
        return kept
