"""The message contract: every payload on the bus, as pydantic models.

In process (LocalBus) the objects travel as they are; over MQTT they travel as JSON made by ``model_dump_json``
and are validated on arrival with ``model_validate_json``. Arrays are numpy in memory and nested lists in JSON.
JSON Schema and AsyncAPI documents are generated from these models, never written by hand.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Self

import numpy as np
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    WithJsonSchema,
    field_validator,
    model_validator,
)

CONTRACT_VERSION = "1.0.0"


def _float_array(value: Any) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as err:
        raise ValueError(f"expected an array of numbers, got {type(value).__name__}") from err
    return arr


FloatArray = Annotated[
    np.ndarray,
    PlainValidator(_float_array),
    PlainSerializer(lambda a: a.tolist(), return_type=list),
    WithJsonSchema({"type": "array", "items": {"anyOf": [{"type": "number"}, {"type": "array"}]}}),
]

PerPhase = tuple[float, float, float]


class Message(BaseModel):
    """Base of every payload: frozen, unknown fields rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @classmethod
    def trusted(cls, **values: Any) -> Self:
        """Build without validation, for in-process producers whose values were validated upstream (hot loops).

        Every field must be given. Four times cheaper than ``model_construct`` because it skips defaults and
        field-name resolution; ``tests/streams`` checks it equals the validated message.
        """
        message = cls.__new__(cls)
        object.__setattr__(message, "__dict__", values)
        object.__setattr__(message, "__pydantic_fields_set__", set(values))
        object.__setattr__(message, "__pydantic_extra__", None)
        object.__setattr__(message, "__pydantic_private__", None)
        return message


class _Timed(Message):
    feeder: str = Field(description="twin (network) name, as in the topic")
    tick: int = Field(ge=0, description="tick index since the start of the run")
    time_utc: AwareDatetime = Field(description="simulation time of the tick start, timezone-aware")

    @field_validator("time_utc")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        offset = value.utcoffset()
        if offset is None or offset.total_seconds() != 0:
            raise ValueError(f"time_utc {value.isoformat()} must be in UTC (offset +00:00)")
        return value


class ClockTick(_Timed):
    """Published at the start of every tick on ``.../twin/clock``."""

    tick_s: int = Field(gt=0)
    speed: float = Field(ge=0, description="simulated seconds per wall second / tick_s scale; 0 = as fast as possible")


class MeterReading(_Timed):
    """One customer's mean power over the tick, per terminal (terminal j is wired to the customer's j-th phase)."""

    meter_id: str
    p_kw: tuple[float, ...] = Field(min_length=1, max_length=3, description="load-positive active power")
    q_kvar: tuple[float, ...] = Field(min_length=1, max_length=3, description="load-positive reactive power")


class MeterFrame(_Timed):
    """Every meter of a feeder for one tick, as a head-end system delivers an interval: row i is
    ``meter_ids[i]``'s terminals (unused terminals 0). Equivalent to one ``MeterReading`` per meter."""

    meter_ids: tuple[str, ...] = Field(min_length=1)
    p_kw: FloatArray = Field(description="[n_meters, 3] load-positive active power per terminal")
    q_kvar: FloatArray = Field(description="[n_meters, 3] load-positive reactive power per terminal")

    @model_validator(mode="after")
    def _shapes(self) -> Self:
        expected = (len(self.meter_ids), 3)
        for name in ("p_kw", "q_kvar"):
            shape = getattr(self, name).shape
            if shape != expected:
                raise ValueError(f"{name} has shape {list(shape)}; expected {list(expected)} (meter_ids × 3)")
        return self


class GridState(_Timed):
    """Power-flow result of one tick. Arrays are in the feeder's bus and line order (see TwinStatus.layout)."""

    engine: str
    vm_pu: FloatArray = Field(description="[n_bus, 3] voltage magnitude per bus and phase, p.u.")
    va_deg: FloatArray = Field(description="[n_bus, 3] voltage angle per bus and phase, degrees")
    i_ka: FloatArray = Field(description="[n_line, 3] line current per phase at the from end, kA")
    i_n_ka: FloatArray = Field(description="[n_line] neutral current at the from end, kA")
    p_trafo_kw: PerPhase = Field(description="active power into the LV side per phase, kW")
    q_trafo_kvar: PerPhase
    loss_kw: float
    phase_load_kw: FloatArray = Field(description="[n_lv_feeders, 3] aggregate customer load per phase (eq. 8)")
    p_unb_kw: FloatArray = Field(description="[n_lv_feeders] P_unb summand of eq. 7 per LV feeder, kW")
    vm_min_pu: PerPhase = Field(description="lowest |V| per phase over the LV buses, p.u.")
    vm_max_pu: PerPhase = Field(description="highest |V| per phase over the LV buses, p.u.")
    vuf_max_pct: float = Field(description="highest voltage unbalance factor |V2|/|V1| over the LV buses, %")
    i_n_max_a: float = Field(description="highest neutral current over the lines, A")
    kappa_trafo: float = Field(description="current unbalance κ of the transformer LV side (STS paper eq. 9)")


class RunState(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"


class TwinStatus(_Timed):
    """Health of the run, published every tick on ``.../twin/status``; counters never reset within a run."""

    state: RunState
    ticks_total: int = Field(ge=0)
    overruns: int = Field(ge=0, description="ticks that finished after the next tick was due (real time only)")
    max_lateness_s: float = Field(ge=0)
    powerflow_failures: int = Field(ge=0)
    readings_missing: int = Field(ge=0, description="expected meter readings that did not arrive in their tick")
    readings_rejected: int = Field(ge=0)
    detail: str = ""


class DeadLetter(Message):
    """A payload that could not be used, with the reason; published on ``.../deadletter``."""

    topic: str
    reason: str
    payload: str = Field(description="the first 1,000 characters of the raw payload")
    received_utc: AwareDatetime


ALL_MESSAGES: tuple[type[Message], ...] = (ClockTick, MeterReading, MeterFrame, GridState, TwinStatus, DeadLetter)
