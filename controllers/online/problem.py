"""What the online controller is given and what it returns: plain typed data, no bus, no network object.

Sign convention (as everywhere in phasetwin): load-positive. ``p_kw > 0`` draws from the grid; PV and battery
discharge are negative load. A PESS *injection* ``net_kw = pv − curtail + discharge − charge`` therefore
*reduces* the aggregate load of the phase(s) it is connected to.

Time: step t of a problem covers ``[start_utc + t·step_s, start_utc + (t+1)·step_s)``; every forecast value is
the mean over its step, in kW. A switch "at step t" means the device is on a different phase during step t than
during step t−1 (for t = 0: than the phase in force now).

Objective units: every part is in currency units (the unit of ``SwitchLimits.cost_per_operation`` and of the
``PessParams`` costs). The unbalance part is λP · P_unb with P_unb = Σ_t Σ_f Σ_φ |A_{f,φ,t} − μ_{f,t}| · step_h in
kWh (re-phasing paper 000 eq. 7, integrated over the step), so λP is a price per kWh of phase deviation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Self

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from controllers.errors import ControllerError
from controllers.solver_backend import Backend
from devices.limits import PessParams, SwitchLimits
from twin.phase import Phase

FROZEN = ConfigDict(frozen=True, extra="forbid")
ALL_PHASES = (Phase.A, Phase.B, Phase.C)
NO_PHASE = -1
"""Phase code of a three-phase PESS in ``Decisions.pess_phase`` (it injects on all three)."""


class ProblemError(ControllerError):
    """A control problem is inconsistent. ``problems`` holds every problem found, not only the first."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        numbered = "\n".join(f"  {i}. {p}" for i, p in enumerate(self.problems, start=1))
        super().__init__(f"control problem: {len(self.problems)} problem(s):\n{numbered}")


class PessConnection(StrEnum):
    """How a PESS inverter is connected: its injection split equally over three phases, on one fixed phase, or
    on one phase chosen by a static transfer switch (STS, paper 003 eqs. 25–29)."""

    THREE_PHASE = "three_phase"
    SINGLE_PHASE = "single_phase"
    SWITCHABLE = "switchable"


class TerminalMode(StrEnum):
    """How the stored energy at the end of the horizon is tied to the unit's target.

    ``SOFT`` (default): a shortfall below the target costs ``ControlWeights.terminal_shortfall_per_kwh`` per kWh;
    never infeasible. ``AT_LEAST``/``EQUAL``: hard E_T ≥ / = target (paper 003 eq. 36); the solve may then find no
    feasible plan (status ``FALLBACK``) when the target cannot be reached within the horizon.
    """

    SOFT = "soft"
    AT_LEAST = "at_least"
    EQUAL = "equal"


class PlanStatus(StrEnum):
    """Where a plan comes from; check it before acting."""

    OPTIMAL = "optimal"
    """The full MILP proved the plan optimal (within the relative gap tolerance)."""
    FEASIBLE = "feasible"
    """The full MILP hit its time limit; the plan is its best feasible solution (``mip_gap`` says how good)."""
    HEURISTIC = "heuristic"
    """Best plan of the heuristics / decomposition (or a baseline rule); feasible, optimality unknown."""
    FALLBACK = "fallback"
    """No feasible plan was found: the arrays hold every device and leave batteries idle; the caller should hold
    its last safe plan instead."""


class ControlWeights(BaseModel):
    """Weights of the controller objective, all in currency units (see the module docstring).

    The defaults are priced against the PessParams defaults (PV energy 0.10 per kWh curtailed, battery wear 0.02
    per kWh): a kWh of phase deviation is worth less than a kWh of PV (4/3·λP < 0.10, so PV is never curtailed
    just to balance phases), a switch must save about λΨ/λP = 2 kWh of deviation over the horizon to pay, and a
    stored kWh left missing at the end of the horizon costs more than anything it could have bought inside it.
    """

    model_config = FROZEN
    unbalance_per_kwh: float = Field(
        default=0.05, ge=0, description="λP: price of one kWh of phase deviation Σ_φ|A_φ − μ|·Δt (paper 000 eq. 7)"
    )
    transformer_unbalance_per_kwh: float = Field(
        default=0.0, ge=0, description="λT: price of one kWh of phase deviation at the transformer, eq. 7 on the "
        "sum of all LV feeders' phase loads (the transformer's phase currents and neutral; equal to the feeder "
        "term on a one-feeder network)",
    )
    peak_phase_per_kw: float = Field(
        default=0.0, ge=0, description="λM: price of one kW of the horizon's highest transformer-phase load "
        "(max over steps and phases of Σ_f A_φ): holds down the peak phase loading and with it the peak neutral "
        "current",
    )
    peak_excess_per_kwh: float = Field(
        default=0.0, ge=0, description="λE: price of one kWh a transformer phase draws above the horizon's balanced "
        "peak (ControlProblem.balanced_peak_kw: the highest step mean of the transformer's load over three phases, "
        "batteries idle), Σ_t Σ_φ (Σ_f A_φ − that)^+ · Δt. Step by step, so cheap for the MILP and exact in the "
        "local search (unlike λM's max over the horizon); above the terminal price it keeps the batteries from "
        "recharging into a peak and makes them shave it",
    )
    switch_per_operation: float = Field(
        default=0.1, ge=0, description="λΨ: price of one switch operation, added to the device's cost_per_operation"
    )
    terminal_shortfall_per_kwh: float = Field(
        default=0.2,
        ge=0,
        description=(
            "price of each kWh the stored energy ends the horizon below its target (TerminalMode.SOFT); the default "
            "exceeds both the largest unbalance value of a stored kWh under the default λP (4/3·λP per kWh) and the "
            "value of PV energy, so energy is not drained just because the horizon ends"
        ),
    )


class SolverSettings(BaseModel):
    """How hard the rolling-horizon solve tries; every solve ends within ``time_limit_s`` (below the period)."""

    model_config = FROZEN
    time_limit_s: float = Field(default=2.0, gt=0, description="wall-time budget of one whole solve call")
    wall_clock: bool | None = Field(
        default=None,
        description="apply time_limit_s (True; the safety net in real time) or not (False: the work limits alone "
                    "end a solve, so its answer depends on the problem only, not on the machine's load); None: the "
                    "online controller decides (True in real time, False in virtual time), a direct solve applies it",
    )
    relative_gap: float = Field(
        default=0.01, ge=0, le=1,
        description="MIP gap at which HiGHS stops (1 %: a neighbourhood's root work falls ~4× with the same answer "
                    "on the IEEE day; the next neighbourhood starts from its plan anyway)",
    )
    full_milp_max_free: int = Field(
        default=12, ge=0,
        description="up to this many customers able to switch, the full MILP follows fix-and-optimise",
    )
    neighbourhood_size: int = Field(default=4, ge=1, description="customers freed per fix-and-optimise MILP")
    neighbourhood_time_limit_s: float = Field(default=0.2, gt=0, description="time limit of one neighbourhood MILP")
    local_search: bool = Field(default=True, description="improve the start plan by single-customer moves first")
    random_seed: int = Field(default=0, ge=0, description="seed of HiGHS and of the neighbourhood order")
    threads: int | None = Field(default=1, ge=1, description="HiGHS threads (one: the same answer on any machine; "
                                                             "None: HiGHS's default)")
    milp_node_limit: int | None = Field(default=200, ge=1, description="branch-and-bound nodes of the full MILP")
    neighbourhood_node_limit: int | None = Field(default=50, ge=1, description="nodes of one neighbourhood MILP")
    neighbourhood_passes: int | None = Field(default=3, ge=0, description="fix-and-optimise passes at most")
    neighbourhood_max: int | None = Field(
        default=None, ge=1,
        description="customer neighbourhoods per fix-and-optimise pass at most, the first ones (headed by the customers"
                    " that switch in the incumbent); the STS neighbourhood is solved anyway. None: all (cheaper, but "
                    "not kept as the default: docs/controller/, \"What the neighbourhood MILPs find\")",
    )
    neighbourhood_threads: int = Field(
        default=2, ge=1, le=64,
        description="neighbourhood MILPs solved at once, the next ones ahead from the incumbent of the moment and "
                    "solved again if it changes (``online.improve``): the same plan for any number, two cores used",
    )
    local_search_moves: int | None = Field(default=200, ge=0, description="moves of one local search at most")
    reuse_periods: int = Field(
        default=11, ge=0,
        description="keep the shifted previous plan without the MILP search when the descent from it gains less "
                    "than reuse_gain, at most this many periods in a row (0: search every period)",
    )
    reuse_gain: float = Field(default=0.05, ge=0, description="relative gain below which a previous plan is kept")
    lean_root: bool = Field(
        default=True,
        description="neighbourhood MILPs without HiGHS's sub-MIP heuristics and with a cut pool of 20: their root "
                    "node was most of their cost (~4,000 cuts for 96 binaries); on 60 neighbourhoods of a Liège "
                    "winter day half the time, one objective 0.01 % worse",
    )
    lp_bound: bool = Field(
        default=True, description="solve the LP relaxation of the whole problem every period for a lower bound "
        "(Plan.lp_bound, the gap in controller.parquet): a proof of how far from optimal a plan can be",
    )
    defer_search: bool = Field(
        default=False, description="with a previous plan, return after one descent round (a battery LP and a local "
        "search) from it, shifted, and leave the search (Plan.deferred) to the caller: the controller, once the "
        "period's commands are out, solves the next period's problem as this plan leaves it with the whole search "
        "and starts the next period from that plan (``continue_search`` finishes this period's search instead); "
        "no period's commands wait for a search. Without a previous plan (the first period) the whole solve",
    )
    deferred_descent_rounds: int | None = Field(
        default=1, ge=1, description="with defer_search: descent rounds (battery LP, local search) before ``solve`` "
        "returns; None: the descent to its end",
    )
    backend: Backend = Field(
        default=Backend.MATHOPT, description="how the plan's solves reach HiGHS: OR-Tools MathOpt (a ModelProto per "
        "solve) or highspy (the arrays passed as they are; 5-30 % less CPU per call, but its HiGHS 1.16 takes other "
        "paths: on the Liège year's August and November windows it broke the KPI rule, docs/controller/). The "
        "controller's LP bound goes through highspy either way (``PersistentLp``)",
    )
    log: bool = Field(default=False, description="print the HiGHS log")


class SwitchState(BaseModel):
    """Phase and interlock state of one phase-switching device (PSD or STS) at the start of the horizon."""

    model_config = FROZEN
    phase_now: Phase = Field(description="phase in force now (the target phase if a transfer is under way)")
    allowed_phases: tuple[Phase, ...] = Field(default=ALL_PHASES, min_length=1, max_length=3)
    limits: SwitchLimits = Field(default_factory=SwitchLimits)
    dwell_remaining_s: float = Field(
        default=0.0, ge=0, description="time until the device may switch again (min_dwell_s after its last switch)"
    )
    ops_left_today: int | None = Field(
        default=None, ge=0, description="operations still allowed this UTC day; None = the full daily budget"
    )
    locked: bool = Field(default=False, description="lockout or transfer under way: no switch in this horizon")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if len(set(self.allowed_phases)) != len(self.allowed_phases):
            raise ValueError(f"allowed_phases {[p.name for p in self.allowed_phases]} repeats a phase")
        if self.phase_now not in self.allowed_phases:
            raise ValueError(
                f"phase_now {self.phase_now.name} is not in allowed_phases {[p.name for p in self.allowed_phases]}"
            )
        if self.ops_left_today is not None and self.ops_left_today > self.limits.max_operations_per_day:
            raise ValueError(
                f"ops_left_today {self.ops_left_today} exceeds limits.max_operations_per_day "
                f"{self.limits.max_operations_per_day}"
            )
        return self

    @property
    def ops_left(self) -> int:
        return self.limits.max_operations_per_day if self.ops_left_today is None else self.ops_left_today


class SwitchDevice(BaseModel):
    """A customer whose whole (single-phase) load a PSD can move between phases."""

    model_config = FROZEN
    id: str = Field(min_length=1)
    feeder: int = Field(ge=0, description="LV feeder index (Customer.feeder)")
    switch: SwitchState


class PessUnit(BaseModel):
    """A PV + battery system (paper 003 eqs. 23–36) and its state at the start of the horizon."""

    model_config = FROZEN
    id: str = Field(min_length=1)
    feeder: int = Field(ge=0, description="LV feeder index")
    params: PessParams = Field(default_factory=PessParams)
    connection: PessConnection = PessConnection.SINGLE_PHASE
    phase: Phase | None = Field(default=None, description="the fixed phase; SINGLE_PHASE only")
    switch: SwitchState | None = Field(default=None, description="the STS and its state; SWITCHABLE only")
    e_now_kwh: float = Field(ge=0, description="stored energy now")
    e_target_kwh: float | None = Field(
        default=None, ge=0, description="end-of-horizon energy target; None = params.e_initial_kwh (eq. 36's E_0)"
    )
    terminal: TerminalMode = TerminalMode.SOFT

    @model_validator(mode="after")
    def _connection_fields(self) -> Self:
        wants_phase = self.connection is PessConnection.SINGLE_PHASE
        wants_switch = self.connection is PessConnection.SWITCHABLE
        if wants_phase != (self.phase is not None):
            raise ValueError(
                f"phase {self.phase!r} is {'required' if wants_phase else 'not allowed'} for connection "
                f"{self.connection.value}"
            )
        if wants_switch != (self.switch is not None):
            raise ValueError(f"switch is {'required' if wants_switch else 'not allowed'} for connection "
                             f"{self.connection.value}")
        if self.e_now_kwh > self.params.energy_kwh:
            raise ValueError(f"e_now_kwh {self.e_now_kwh} exceeds params.energy_kwh {self.params.energy_kwh}")
        if self.target_kwh > self.params.energy_kwh:
            raise ValueError(f"e_target_kwh {self.target_kwh} exceeds params.energy_kwh {self.params.energy_kwh}")
        return self

    @property
    def target_kwh(self) -> float:
        return self.params.e_initial_kwh if self.e_target_kwh is None else self.e_target_kwh


def _frozen_copy(a: np.ndarray) -> np.ndarray:
    out = np.array(a, dtype=float, copy=True)
    out.setflags(write=False)
    return out


@dataclass(frozen=True, kw_only=True)
class ControlProblem:
    """One rolling-horizon decision: forecasts over ``n_steps`` steps and the state of every device.

    Arrays (copied and made read-only on construction):
    - ``fixed_load_kw`` [T, n_feeders, 3]: load of everything not switchable (non-controllable customers), per LV
      feeder and network phase, step means;
    - ``switch_load_kw`` [T, n_switch]: forecast load of each switchable customer (moves with its phase);
    - ``pv_kw`` [T, n_pess]: forecast available PV power of each PESS (≥ 0).

    Raises ProblemError listing every problem (shapes, non-finite values, naive start time, feeder indices).
    """

    start_utc: datetime
    step_s: float
    fixed_load_kw: np.ndarray
    switch_devices: tuple[SwitchDevice, ...] = ()
    switch_load_kw: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    pess_units: tuple[PessUnit, ...] = ()
    pv_kw: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    nominal_v_ln_v: float = 230.0
    """Phase-to-neutral voltage used to turn a switch's rating_a into kW (a switch is refused above it)."""

    def __post_init__(self) -> None:
        fixed = np.asarray(self.fixed_load_kw, dtype=float)
        n_steps = fixed.shape[0] if fixed.ndim == 3 else 0
        switch = np.asarray(self.switch_load_kw, dtype=float)
        pv = np.asarray(self.pv_kw, dtype=float)
        # the empty defaults stand for "no devices": give them the horizon's length
        if switch.size == 0 and not self.switch_devices:
            switch = np.zeros((n_steps, 0))
        if pv.size == 0 and not self.pess_units:
            pv = np.zeros((n_steps, 0))
        problems = _problems(self, fixed, switch, pv)
        if problems:
            raise ProblemError(problems)
        object.__setattr__(self, "switch_devices", tuple(self.switch_devices))
        object.__setattr__(self, "pess_units", tuple(self.pess_units))
        object.__setattr__(self, "fixed_load_kw", _frozen_copy(fixed))
        object.__setattr__(self, "switch_load_kw", _frozen_copy(switch))
        object.__setattr__(self, "pv_kw", _frozen_copy(pv))

    @property
    def n_steps(self) -> int:
        return int(self.fixed_load_kw.shape[0])

    @property
    def n_feeders(self) -> int:
        return int(self.fixed_load_kw.shape[1])

    @property
    def step_h(self) -> float:
        return self.step_s / 3600.0

    @property
    def n_switch(self) -> int:
        return len(self.switch_devices)

    @property
    def n_pess(self) -> int:
        return len(self.pess_units)

    def step_start_utc(self, step: int) -> datetime:
        return self.start_utc + timedelta(seconds=step * self.step_s)

    @property
    def balanced_peak_kw(self) -> float:
        """The highest step mean of the transformer's load spread evenly over three phases with the batteries idle
        (all loads, less the PV forecast, over 3): the level above which λE prices a phase's draw. No plan of
        switches alone lowers a phase below it at that step."""
        total = self.fixed_load_kw.sum(axis=(1, 2)) + self.switch_load_kw.sum(axis=1) - self.pv_kw.sum(axis=1)
        return float(total.max() / 3.0)


def _problems(p: ControlProblem, fixed: np.ndarray, switch: np.ndarray, pv: np.ndarray) -> list[str]:
    out: list[str] = []
    if p.start_utc.tzinfo is None or p.start_utc.utcoffset() is None:
        out.append(f"start_utc {p.start_utc.isoformat()} is naive; give an aware UTC datetime")
    if not p.step_s > 0:
        out.append(f"step_s {p.step_s} must be > 0")
    if not p.nominal_v_ln_v > 0:
        out.append(f"nominal_v_ln_v {p.nominal_v_ln_v} must be > 0")
    if fixed.ndim != 3 or fixed.shape[2] != 3 or fixed.shape[0] < 1 or fixed.shape[1] < 1:
        out.append(f"fixed_load_kw has shape {fixed.shape}; expected [n_steps ≥ 1, n_feeders ≥ 1, 3]")
        return out  # every other shape is relative to this one
    n_steps, n_feeders = fixed.shape[0], fixed.shape[1]
    for name, arr, n in (("switch_load_kw", switch, len(p.switch_devices)), ("pv_kw", pv, len(p.pess_units))):
        if arr.shape != (n_steps, n):
            out.append(f"{name} has shape {arr.shape}; expected [n_steps {n_steps}, {n}] (one column per device)")
        elif not np.isfinite(arr).all():
            out.append(f"{name} has {int((~np.isfinite(arr)).sum())} non-finite value(s)")
    if not np.isfinite(fixed).all():
        out.append(f"fixed_load_kw has {int((~np.isfinite(fixed)).sum())} non-finite value(s)")
    if pv.shape == (n_steps, len(p.pess_units)) and np.isfinite(pv).all() and (pv < 0).any():
        out.append(f"pv_kw has negative values (min {pv.min():.6g}); it is the available PV power, ≥ 0")
    ids = [d.id for d in p.switch_devices] + [u.id for u in p.pess_units]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        out.append(f"duplicate device id(s) {dup}")
    for kind, devices in (("switch device", p.switch_devices), ("PESS", p.pess_units)):
        for d in devices:
            if d.feeder >= n_feeders:
                out.append(f"{kind} {d.id!r}: feeder {d.feeder} is out of range; fixed_load_kw has {n_feeders}")
    return out


@dataclass(frozen=True, kw_only=True)
class Decisions:
    """The decision arrays of a plan, one row per step.

    - ``phase`` [T, n_switch] int: the phase (``Phase`` value) of each switchable customer during each step;
    - ``pess_phase`` [T, n_pess] int: the phase of each single-phase PESS (``NO_PHASE`` for three-phase ones);
    - ``charge_kw``, ``discharge_kw``, ``curtail_kw`` [T, n_pess]: AC-side battery charge and discharge power and
      curtailed PV power, step means, all ≥ 0.
    """

    phase: np.ndarray
    pess_phase: np.ndarray
    charge_kw: np.ndarray
    discharge_kw: np.ndarray
    curtail_kw: np.ndarray

    def __post_init__(self) -> None:
        for name in ("phase", "pess_phase"):
            object.__setattr__(self, name, np.array(getattr(self, name), dtype=np.int64, copy=True))
        for name in ("charge_kw", "discharge_kw", "curtail_kw"):
            object.__setattr__(self, name, np.array(getattr(self, name), dtype=float, copy=True))
        for name in ("phase", "pess_phase", "charge_kw", "discharge_kw", "curtail_kw"):
            getattr(self, name).setflags(write=False)

    def shape_problems(self, problem: ControlProblem) -> list[str]:
        """Every array whose shape does not fit ``problem``."""
        t = problem.n_steps
        expected = {
            "phase": (t, problem.n_switch),
            "pess_phase": (t, problem.n_pess),
            "charge_kw": (t, problem.n_pess),
            "discharge_kw": (t, problem.n_pess),
            "curtail_kw": (t, problem.n_pess),
        }
        return [
            f"decisions.{name} has shape {getattr(self, name).shape}; expected {shape}"
            for name, shape in expected.items()
            if getattr(self, name).shape != shape
        ]


@dataclass(frozen=True)
class ObjectiveParts:
    """The objective of a plan, part by part, in currency units (``p_unb_kwh`` and ``n_switches`` are the
    physical quantities behind the first two parts)."""

    p_unb_kwh: float
    unbalance: float
    n_switches: int
    switching: float
    throughput: float
    curtailment: float
    terminal: float
    transformer: float = 0.0
    """λT · the transformer's P_unb (kWh)."""
    peak: float = 0.0
    """λM · the highest transformer-phase load of the horizon (kW)."""
    excess: float = 0.0
    """λE · the energy the transformer's phases draw above the horizon's balanced peak (kWh)."""

    @property
    def total(self) -> float:
        return (self.unbalance + self.switching + self.throughput + self.curtailment + self.terminal
                + self.transformer + self.peak + self.excess)


@dataclass(frozen=True, kw_only=True)
class DeferredSearch:
    """The state ``continue_search`` resumes a deferred solve from (``SolverSettings.defer_search``)."""

    previous: Plan | None
    """the previous period's plan the solve started from (None: it started from holding everything)."""
    shifted: Decisions | None
    """``previous`` shifted to this problem's steps."""
    rescheduled: float
    """the shifted plan's objective after the first battery LP of the descent (inf: none)."""
    source: str
    """where the descent started: "previous plan" or "hold"."""
    descended: bool
    """the descent had ended (nothing left to improve by it) when ``solve`` returned."""


@dataclass(frozen=True, kw_only=True)
class Plan:
    """A controller decision over the horizon. Only step 0 is acted on; the rest warm-starts the next solve.

    ``objective`` is computed by ``controllers.online.evaluate.evaluate`` from the decision arrays, independently of
    the solver; ``solver_objective`` is what the solver reported for the same plan, when a full MILP produced it.
    """

    status: PlanStatus
    reason: str
    start_utc: datetime
    step_s: float
    switch_ids: tuple[str, ...]
    pess_ids: tuple[str, ...]
    decisions: Decisions
    objective: ObjectiveParts
    solve_s: float
    mip_gap: float | None = None
    solver_objective: float | None = None
    reused: int = 0
    """periods in a row that kept the shifted previous plan without a search (``SolverSettings.reuse_periods``)."""
    lp_bound: float | None = None
    """The LP relaxation's optimum of the whole problem: no plan costs less (``SolverSettings.lp_bound``)."""
    deferred: DeferredSearch | None = None
    """What ``solve`` left for ``continue_search`` (``SolverSettings.defer_search``); None when nothing."""

    @property
    def bound_gap(self) -> float | None:
        """(objective − LP bound) / |objective|: how far the plan can be from optimal at most."""
        if self.lp_bound is None:
            return None
        total = self.objective.total
        return max(0.0, total - self.lp_bound) / max(abs(total), 1e-9)

    @property
    def n_steps(self) -> int:
        return int(self.decisions.phase.shape[0])

    def phase_of(self, device_id: str, step: int = 0) -> Phase:
        """Phase of a switchable customer or single-phase PESS during ``step``; KeyError for unknown ids."""
        if device_id in self.switch_ids:
            return Phase(int(self.decisions.phase[step, self.switch_ids.index(device_id)]))
        if device_id in self.pess_ids:
            code = int(self.decisions.pess_phase[step, self.pess_ids.index(device_id)])
            if code == NO_PHASE:
                raise KeyError(f"PESS {device_id!r} is three-phase; it has no single phase")
            return Phase(code)
        raise KeyError(f"plan has no device {device_id!r}; known: {list(self.switch_ids + self.pess_ids)}")
