"""The ``search:`` section of a fine-tuning config: which hyperparameters optuna searches, over what range.

```yaml
search:
  validation_split: validation      # the rows whose loss judges a trial (a dataset's split)
  eval_every: 5                     # steps between validation losses: where a poor trial is pruned
  space:
    training.learning_rate: {low: 1.0e-5, high: 1.0e-2, log: true}
    lora.r: {choices: [4, 8, 16]}
    training.warmup_steps: {low: 0, high: 10}   # integers when both bounds are
```
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# What a trial may change: the settings that change the weights, not the data or the export.
TUNABLE = frozenset(
    {
        "lora.r",
        "lora.alpha",
        "lora.dropout",
        "training.learning_rate",
        "training.batch_size",
        "training.grad_accum",
        "training.warmup_steps",
        "training.weight_decay",
        "training.max_steps",
        "training.max_length",
    }
)


class SearchRange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    low: float | None = None
    high: float | None = None
    log: bool = Field(default=False, description="sample on a log scale (low > 0)")
    choices: list[float | int | str] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_kind(self) -> SearchRange:
        if self.choices is not None:
            if self.low is not None or self.high is not None:
                raise ValueError("give choices, or low and high, not both")
            return self
        if self.low is None or self.high is None:
            raise ValueError("give low and high (or choices)")
        if self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("log: true needs low > 0")
        return self

    def integers(self) -> bool:
        return (
            self.low is not None
            and self.high is not None
            and self.low.is_integer()
            and self.high.is_integer()
        )


class SearchSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    validation_split: str = Field(default="validation", description="rows that judge a trial")
    eval_every: int = Field(default=5, ge=1, description="steps between validation losses (pruning points)")
    startup_trials: int = Field(default=2, ge=0, description="trials run whole before pruning starts")
    seed: int = 7
    study: str = Field(default="", description="the study's name in the store [finetune:<name>]")
    space: dict[str, SearchRange] = Field(min_length=1)

    @field_validator("space")
    @classmethod
    def _known(cls, value: dict[str, SearchRange]) -> dict[str, SearchRange]:
        unknown = sorted(set(value) - TUNABLE)
        if unknown:
            raise ValueError(f"cannot search {', '.join(unknown)}: one of {', '.join(sorted(TUNABLE))}")
        return value


def suggest(trial: Any, space: dict[str, SearchRange]) -> dict[str, Any]:
    """One value per searched hyperparameter, from optuna's trial."""
    params: dict[str, Any] = {}
    for key, rng in sorted(space.items()):
        if rng.choices is not None:
            params[key] = trial.suggest_categorical(key, rng.choices)
        elif rng.integers():
            params[key] = trial.suggest_int(key, int(rng.low or 0), int(rng.high or 0), log=rng.log)
        else:
            params[key] = trial.suggest_float(key, float(rng.low or 0), float(rng.high or 0), log=rng.log)
    return params


def apply(data: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """The config's data with each dotted key set (``training.learning_rate``)."""
    out = copy.deepcopy(data)
    for key, value in params.items():
        section, field = key.split(".", 1)
        out.setdefault(section, {})[field] = value
    return out
