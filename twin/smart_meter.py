"""What a smart meter reports of a quantity the twin computes: interval means, class error, quantisation, gaps.

The customers' meters and the transformer's LV meter (the reference) have classes of their own: a transformer
monitor is a power-quality instrument (class 0.2 or better; IEC 61000-4-30 class A measures voltage within
± 0.1 %), a household meter is class 0.5 to 2. A meter of accuracy class ``c`` (0.2, 0.5, 1.0, 2.0: the IEC 62053
classes, in per cent) reports each interval
value with a relative error drawn from a Gaussian of σ = c/3 %, truncated at ± c % (the class is the bound;
99.7 % of the draws lie inside it before truncation). Each reading's error is drawn independently, for voltage
and for energy alike. Voltages are then rounded to ``quantum_v`` (0.1 V or 1 V on common meters; 0 = none).
A share ``missing_share`` of the intervals of each meter is missing (NaN), drawn at random.

Everything is seeded (``seed``): the same inputs and settings give the same readings on any machine.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["ACCURACY_CLASSES", "MeterModel", "interval_means", "measure"]

ACCURACY_CLASSES = (0.2, 0.5, 1.0, 2.0)


class MeterModel(BaseModel):
    """How the meters of a study measure."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    accuracy_class: float = Field(default=1.0, description="customers' meters: IEC accuracy class, %")
    reference_class: float = Field(default=0.2, description="the transformer's LV meter: accuracy class, %")
    resolution_s: int = Field(default=900, gt=0, description="interval of the reported means, s")
    quantum_v: float = Field(default=0.1, ge=0, description="voltage resolution of the register, V (0 = none)")
    missing_share: float = Field(default=0.0, ge=0, lt=1, description="share of intervals missing per meter")
    seed: int = Field(default=0, ge=0, description="seed of the error and gap draws")

    @field_validator("accuracy_class", "reference_class")
    @classmethod
    def _known_class(cls, value: float) -> float:
        if value not in ACCURACY_CLASSES:
            raise ValueError(f"accuracy class {value} is not one of {', '.join(map(str, ACCURACY_CLASSES))}")
        return value


def interval_means(values: np.ndarray, *, step_s: int, resolution_s: int) -> np.ndarray:
    """Means of ``values[t, ...]`` (steps of ``step_s``) over whole intervals of ``resolution_s``; a trailing
    partial interval is dropped. Raises ValueError unless ``resolution_s`` is a whole multiple of ``step_s``."""
    if resolution_s % step_s:
        raise ValueError(f"meter resolution {resolution_s} s is not a whole multiple of the step {step_s} s")
    per = resolution_s // step_s
    n = values.shape[0] // per
    return values[: n * per].reshape(n, per, *values.shape[1:]).mean(axis=1)


def measure(values: np.ndarray, *, model: MeterModel, stream: int, voltage: bool,
            reference: bool = False) -> np.ndarray:
    """``values[interval, meter]`` as the meters report them: class error (the reference class for the
    transformer's meter), then (voltages, in V) quantisation, then gaps as NaN. ``stream`` separates the random
    draws of different quantities under one seed."""
    rng = np.random.default_rng([model.seed, stream])
    bound = (model.reference_class if reference else model.accuracy_class) / 100.0
    error = np.clip(rng.normal(0.0, bound / 3.0, size=values.shape), -bound, bound)
    reported = values * (1.0 + error)
    if voltage and model.quantum_v > 0:
        reported = np.round(reported / model.quantum_v) * model.quantum_v
    if model.missing_share > 0:
        reported = np.where(rng.random(values.shape) < model.missing_share, np.nan, reported)
    return reported
