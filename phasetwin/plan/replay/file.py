"""A plan the twin can replay: feeder and day, the devices and their parameters, the scripted commands.

An offline planner writes ``replay.json`` beside the files it names (``devices.csv`` in the ``--devices`` format,
``schedule.csv`` in the ``--schedule`` format, optionally a re-phasing ``rephase.json``), all paths relative to
that folder. ``phasetwin replay --plan <folder or a file in it>`` turns it into a Scenario without a controller,
replays it and, when the plan names a ``baseline`` plan (the day without governance), replays that too and
compares the two with what the planner expected (``planned``).

    {"format": "phasetwin-replay-plan/1", "label": "S4 single-level", "feeder": "ieee13",
     "start_utc": "2024-07-01T00:00:00Z", "end_utc": "2024-07-02T00:00:00Z", "tick_s": 3600,
     "devices": "devices.csv", "schedule": "schedule.csv", "rephase": null, "baseline": "../S1",
     "sts_limits": {...}, "pess_params": {...}, "lease": {...}, "planned": {"kappa": [...], ...}}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Self

import numpy as np
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from devices.fleet import FleetSpec, read_device_list
from devices.limits import LeaseConfig, PessParams, SwitchLimits, sts_limits
from streams.errors import validation_problems
from twin.errors import ScenarioError
from twin.network import Feeder

__all__ = ["REPLAY_FILE", "PlannedFigures", "ReplayPlan", "head_currents_a", "read_replay_plan", "scenario_fields"]

REPLAY_FILE = "replay.json"
FROZEN = ConfigDict(frozen=True, extra="forbid")


class PlannedFigures(BaseModel):
    """What the planner's own model says the plan does, per planning step, for comparison with the replay."""

    model_config = FROZEN
    step_s: int = Field(gt=0)
    head_current_a: list[tuple[float, float, float]] = Field(description="phase currents leaving the transformer")
    kappa: list[float] = Field(description="current unbalance κ at the head (STS paper eq. 9)")
    model: str = Field(default="", description="how the planner computed them, e.g. 'LinDistFlow, lossless'")

    @model_validator(mode="after")
    def _same_length(self) -> Self:
        if len(self.head_current_a) != len(self.kappa):
            raise ValueError(f"head_current_a has {len(self.head_current_a)} steps but kappa has {len(self.kappa)}")
        return self


class ReplayPlan(BaseModel):
    """``replay.json``: what the twin needs to replay a plan; file names relative to the plan's folder."""

    model_config = FROZEN
    format: Literal["phasetwin-replay-plan/1"] = "phasetwin-replay-plan/1"
    label: str = Field(min_length=1, description="what the plan is, e.g. 'S4 single-level'")
    feeder: str = Field(min_length=1, description="a known feeder name (see `phasetwin feeders`)")
    start_utc: AwareDatetime
    end_utc: AwareDatetime
    tick_s: int = Field(gt=0, le=3600)
    devices: str | None = Field(default=None, description="device list CSV (customer_id,kind[,access])")
    schedule: str | None = Field(default=None, description="scripted command CSV (time_utc,device_id,action,...)")
    rephase: str | None = Field(default=None, description="re-phasing plan.json applied before the run")
    baseline: str | None = Field(default=None, description="folder of the plan to compare with (the 'before')")
    sts_limits: SwitchLimits = Field(default_factory=sts_limits)
    pess_params: PessParams = Field(default_factory=PessParams)
    lease: LeaseConfig = Field(default_factory=LeaseConfig)
    planned: PlannedFigures | None = None

    @model_validator(mode="after")
    def _period(self) -> Self:
        if self.end_utc <= self.start_utc:
            raise ValueError(f"end_utc {self.end_utc.isoformat()} must be after start_utc {self.start_utc.isoformat()}")
        return self


def read_replay_plan(path: Path) -> tuple[Path, ReplayPlan]:
    """(plan folder, plan) from a plan folder or any file in it (``replay.json``, ``plan.json``, ...).

    Raises ScenarioError naming the file and every problem when it is missing or invalid, or when a file it
    names does not exist.
    """
    folder = path if path.is_dir() else path.parent
    file = folder / REPLAY_FILE
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as err:
        raise ScenarioError(f"--plan {path}: cannot read {file} ({err.strerror}); expected the folder a planner "
                            f"wrote (e.g. runs/plan-sts-siting/S4) or a file in it") from None
    try:
        plan = ReplayPlan.model_validate_json(text)
    except ValidationError as err:
        problems = validation_problems(err, root="file")
        raise ScenarioError(f"{file} is not a valid replay plan: {problems}") from None
    missing = [f"{name} {getattr(plan, name)!r}" for name in ("devices", "schedule", "rephase", "baseline")
               if getattr(plan, name) is not None and not (folder / getattr(plan, name)).exists()]
    if missing:
        raise ScenarioError(f"{file}: {', '.join(missing)} not found in {folder}")
    return folder, plan


def scenario_fields(folder: Path, plan: ReplayPlan) -> dict[str, Any]:
    """Fields of ``phasetwin.run.scenario.Scenario`` for the plan: its devices, limits and commands (the Scenario's
    default
    controller is none). Raises ScenarioError when the device list is invalid.
    """
    explicit = read_device_list(folder / plan.devices) if plan.devices is not None else ()
    return {
        "feeder": plan.feeder, "start_utc": plan.start_utc, "end_utc": plan.end_utc, "tick_s": plan.tick_s,
        "fleet": FleetSpec(explicit=explicit, sts_limits=plan.sts_limits, pess_params=plan.pess_params,
                           lease=plan.lease),
        "schedule": folder / plan.schedule if plan.schedule is not None else None,
        "rephase": folder / plan.rephase if plan.rephase is not None else None,
        "name": plan.label,
    }


def head_currents_a(feeder: Feeder, *, p_kw: np.ndarray, q_kvar: np.ndarray, vm_lv_pu: np.ndarray) -> np.ndarray:
    """Phase currents leaving the transformer [T, 3], A: |S_φ| / |V_φ| at its LV bus (what ``kappa_trafo`` uses).

    ``p_kw``/``q_kvar`` are the transformer's phase powers into the LV bus, ``vm_lv_pu`` that bus's voltages.
    """
    v_base_v = feeder.transformer.vn_lv_kv * 1e3 / np.sqrt(3.0)
    return np.hypot(p_kw, q_kvar) * 1e3 / (vm_lv_pu * v_base_v)
