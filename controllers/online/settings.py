"""How an online controller runs: strategy, forecast, control period, horizon, weights, solver limits."""

from __future__ import annotations

from enum import StrEnum
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from controllers.ltupf import NetworkRows, OperatingLimits
from controllers.online.problem import ControlWeights, SolverSettings
from devices.limits import SwitchLimits


class Strategy(StrEnum):
    ROLLING_MILP = "rolling-milp"
    """Rolling-horizon MILP (``controllers.online.solve.solve``), first step applied, warm-started from the last
    plan."""
    GREEDY = "greedy"
    """Move the one customer per feeder that best evens the heaviest and lightest phase, when it pays."""
    STATIC = "static"
    """One reassignment for the whole day at the first period, never switched again."""
    NONE = "none"
    """No controller: devices run on their own (switches hold, a PESS self-consumes)."""


class ForecastKind(StrEnum):
    PERFECT = "perfect"
    """The replayed data themselves: an upper bound on what a forecast can give."""
    PERSISTENCE = "persistence"
    SAME_TIME_YESTERDAY = "yesterday"


class Objective(StrEnum):
    """What the controller minimises besides the price of switching and of battery use: presets of the
    ``ControlWeights`` unbalance prices (``objective_weights``). Voltage limits stay constraints (the LTUPF check)."""

    P_UNB = "p-unb"
    """P_unb per LV feeder (paper 000 eq. 7; the feeder's head line), λP = 0.05 per kWh alone (the weights and
    the default before issue 28). Raised the peak transformer-phase loading on Liège evenings (+9.9 % in January,
    +5.5 % in June: the batteries recharging into the evening peak)."""
    TRANSFORMER = "transformer"
    """The same index at the transformer (all LV feeders summed per phase: its phase currents and neutral),
    λT = 0.05 per kWh, and the feeders' at a fifth of it."""
    PEAK = "peak"
    """P_unb per feeder (λP = 0.05 per kWh) and the horizon's highest transformer-phase load (λM = 0.5 per kW):
    keeps the rule of issue 28 too, at about 3× the decision CPU of ``P_UNB`` (one max over the horizon: its
    LP is degenerate and it moves the plan from period to period)."""
    SHAVE = "shave"
    """The default: P_unb per feeder (λP = 0.05 per kWh) and the energy each transformer phase draws above the
    horizon's balanced peak (λE = 0.5 per kWh, ``ControlWeights.peak_excess_per_kwh``): step by step, so the local
    search prices it exactly and the MILPs stay separable over steps; above the terminal price, so a battery does
    not recharge into a peak. No KPI worse than no control on the IEEE day, Liège January and June two-day windows
    and the Kerber Dorfnetz (benchmarks/controller.py --kpi-rule, docs/controller/)."""
    COMBINED = "combined"
    """Feeders, transformer and peak together (λP = λT = 0.05 per kWh, λM = 0.5 per kW)."""


_OBJECTIVE_WEIGHTS: dict[Objective, dict[str, float]] = {
    Objective.P_UNB: {"unbalance_per_kwh": 0.05, "transformer_unbalance_per_kwh": 0.0, "peak_phase_per_kw": 0.0,
                     "peak_excess_per_kwh": 0.0},
    Objective.TRANSFORMER: {"unbalance_per_kwh": 0.01, "transformer_unbalance_per_kwh": 0.05,
                            "peak_phase_per_kw": 0.0, "peak_excess_per_kwh": 0.0},
    Objective.PEAK: {"unbalance_per_kwh": 0.05, "transformer_unbalance_per_kwh": 0.0, "peak_phase_per_kw": 0.5,
                     "peak_excess_per_kwh": 0.0},
    Objective.SHAVE: {"unbalance_per_kwh": 0.05, "transformer_unbalance_per_kwh": 0.0, "peak_phase_per_kw": 0.0,
                      "peak_excess_per_kwh": 0.5},
    Objective.COMBINED: {"unbalance_per_kwh": 0.05, "transformer_unbalance_per_kwh": 0.05, "peak_phase_per_kw": 0.5,
                         "peak_excess_per_kwh": 0.0},
}
DEFAULT_OBJECTIVE = Objective.SHAVE
"""The controller's default (docs/controller/: every KPI against no control, the decision CPU)."""


def objective_weights(objective: Objective, base: ControlWeights | None = None) -> ControlWeights:
    """``base`` (default ``ControlWeights()``) with the unbalance prices of ``objective``; switching, battery and
    terminal prices kept."""
    return (base or ControlWeights()).model_copy(update=_OBJECTIVE_WEIGHTS[objective])


def default_solver(**overrides: object) -> SolverSettings:
    """The online controller's solver settings (see ``ControllerSettings.solver``) with ``overrides``: what the
    CLI and studies start from, so that an option such as ``--time-limit`` changes that one value only."""
    base = {"time_limit_s": 0.5, "full_milp_max_free": 0, "neighbourhood_passes": 1, "neighbourhood_size": 3,
            "neighbourhood_node_limit": 20, "defer_search": True,
            "neighbourhood_threads": 1}
    return SolverSettings.model_validate(base | overrides)


class SwitchingBudget(BaseModel):
    """How often the plan may switch each PSD/STS: a hard constraint of every plan (the MILP, its descent and the
    LTUPF repair), below the device's own interlocks. Unset: the device's own limit."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    ops_per_day: int | None = Field(
        default=None, ge=0, description="switch operations per device per UTC day at most; None: the device's "
        "max_operations_per_day (a PSD's default is 12); a lower device limit still applies",
    )
    min_dwell_s: float | None = Field(
        default=None, ge=0, description="time between two operations of a device at least, s; None: the device's "
        "min_dwell_s (900 s by default); a longer device dwell still applies",
    )

    def limits(self, device: SwitchLimits) -> SwitchLimits:
        """The limits the plan keeps for a device whose own limits are ``device``: the tighter of both."""
        ops = device.max_operations_per_day if self.ops_per_day is None else min(self.ops_per_day,
                                                                                 device.max_operations_per_day)
        dwell = device.min_dwell_s if self.min_dwell_s is None else max(self.min_dwell_s, device.min_dwell_s)
        if ops == device.max_operations_per_day and dwell == device.min_dwell_s:
            return device
        return device.model_copy(update={"max_operations_per_day": ops, "min_dwell_s": dwell})


class ControllerSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    strategy: Strategy = Strategy.ROLLING_MILP
    forecast: ForecastKind = ForecastKind.PERFECT
    period_s: int = Field(default=900, gt=0, description="control period = horizon step length, s")
    horizon_steps: int = Field(default=16, ge=1, description="steps in the rolling horizon (16 × 15 min = 4 h)")
    weights: ControlWeights = Field(default_factory=lambda: objective_weights(DEFAULT_OBJECTIVE),
                                    description="the objective's prices (default: the 'shave' preset, Objective)")
    solver: SolverSettings = Field(
        default_factory=lambda: default_solver(),
        description="descent and one pass of neighbourhood MILPs of 3 customers (no full MILP), stopped at a 1 % "
                    "gap; the previous plan kept while the descent gains < 5 %, up to 11 periods in a row: on the "
                    "default day the same P_unb as 0.5 s of wall clock at a fraction of the work "
                    "(benchmarks/controller.py --replay-day); the 0.5 s limit applies in real time only",
    )
    command_lifetime_s: float | None = Field(
        default=None, gt=0, description="a command not executed this long after its issue expires; None = until "
        "the end of the control period it was decided for (period_s + one tick: a command is issued in the last tick "
        "before its period and executed in the first tick of it)",
    )
    budget: SwitchingBudget = Field(default_factory=SwitchingBudget,
                                    description="switch operations per device per day and minimum dwell of the plan")
    controller_id: str = Field(default="phasetwin-controller", min_length=1)
    ltupf_check: bool = Field(default=True, description="check every first step with LTUPF; repair by PSD moves")
    limits: OperatingLimits = Field(default_factory=OperatingLimits, description="voltage and thermal limits")
    repair_ahead: bool = Field(
        default=True,
        description="prepare the next period's LTUPF check and repair once this period's commands are out, on the "
        "first step the search ahead predicts, linearised at the grid state of now; the next decision takes it when "
        "its inputs are the same (controllers/online/feasibility.py). False: check and repair at the decision, "
        "linearised at the latest grid state",
    )
    repair_time_limit_s: float = Field(
        default=5.0, gt=0,
        description="wall-clock limit of one LTUPF repair search in real time (run only when a plan violates limits)",
    )
    repair_node_limit: int = Field(
        default=10, ge=1, description="branch-and-bound nodes of one LTUPF repair MILP (its budget in virtual time; "
        "single moves and pairs are tried first, the MILP gets the hard cases: on two Liège winter days 100 nodes "
        "found one more repair than 20 in 6.6 s more; on 36 MILP repairs of four winter windows 10 nodes found the "
        "same 2 as 20 in 25 % less time)",
    )
    repair_network_rows: NetworkRows = Field(
        default=NetworkRows.DENSE, description="the network in the LTUPF repair MILP: dense rows V = w − Z·I at the "
        "load bus-phases, or sparse nodal rows Y·V + I = J (controllers/ltupf/nodal.py: the same solutions; on the "
        "Liège January window 2.2× less MILP CPU, but the node-limited search stops at other assignments; on the "
        "IEEE feeder's 906 buses 6-20× more: docs/controller/README.md)",
    )

    @model_validator(mode="after")
    def _limit_below_period(self) -> Self:
        if self.solver.time_limit_s >= self.period_s:
            raise ValueError(
                f"solver.time_limit_s {self.solver.time_limit_s} must be below period_s {self.period_s}"
            )
        return self

    def lifetime_s(self, tick_s: int) -> float:
        """The command lifetime in force at ticks of ``tick_s``."""
        return self.command_lifetime_s if self.command_lifetime_s is not None else float(self.period_s + tick_s)
