"""The online controller's decision, with no bus: it reads meters, grid states, device states and acks, decides
every control period, and gives the heartbeat, the commands and the plan to publish
(``controllers.online.controller.OnlineController`` puts it on the bus).

Timing: a tick stage after the grid. At the end of the last tick of a control period it folds the period's
readings into the forecaster, builds the ``ControlProblem`` for the horizon that starts with the next tick,
decides, and gives a heartbeat, the commands and the plan; the devices execute the commands at the start of
that next tick. The first period of a run has no decision (nothing observed yet): devices run on their own
until the end of it.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from controllers.online.baseline import greedy_plan, static_phases, static_plan
from controllers.online.evaluate import plan_from_decisions
from controllers.online.feasibility import (
    FirstStepCheck,
    LtupfGuard,
    PredictionBasis,
    expected_pess_kw,
    prediction_error,
)
from controllers.online.forecast import Forecaster, ForecastError, StepAggregator
from controllers.online.problem import (
    ControlProblem,
    PessConnection,
    PessUnit,
    Plan,
    PlanStatus,
    SolverSettings,
    SwitchDevice,
    SwitchState,
)
from controllers.online.settings import ControllerSettings, Strategy
from controllers.online.solve import continue_search, lp_bound, solve
from controllers.online.start import predicted_next, same_problem, shift_previous
from controllers.sparse_milp import PersistentLp
from devices.limits import PessParams, SwitchLimits
from streams import topics
from streams.messages import (
    AckStatus,
    ControllerHeartbeat,
    ControllerPlan,
    DeviceAck,
    DeviceAction,
    DeviceCommand,
    DeviceKind,
    DeviceMode,
    DeviceState,
    GridState,
    Message,
    MeterFrame,
    MeterReading,
    PhaseLetter,
    PlannedCommand,
)
from streams.reading_order import NewestTick
from twin.phase import Phase
from twin.phasing import PhaseMap

log = logging.getLogger(__name__)

MEASURED_COLUMNS = ("solve_s", "deferred_s", "decision_cpu_s")
"""The columns of a decision record (controller.parquet) that are measured time, a property of the machine and its
load, not of the replay: the rest is the same at any load in virtual time."""


def _letter(phase: Phase) -> PhaseLetter:
    letters: tuple[PhaseLetter, PhaseLetter, PhaseLetter] = ("A", "B", "C")
    return letters[phase]


@dataclass(frozen=True)
class FeederView:
    """What a controller knows of the network: customers, their LV feeder and their fixed connections."""

    name: str
    customer_ids: tuple[str, ...]
    feeder_of: tuple[int, ...]
    connections: tuple[tuple[Phase, ...], ...]
    v_ln_v: float
    lv_buses: tuple[int, ...]
    """Indices of the LV buses in the grid state's bus order (the MV bus left out)."""

    @property
    def n_feeders(self) -> int:
        return max(self.feeder_of) + 1 if self.feeder_of else 1


@dataclass(frozen=True)
class ControlledDevice:
    """A device the controller may command, with the limits it plans with (the device enforces the same)."""

    device_id: str
    kind: DeviceKind
    customer_id: str
    switch: SwitchLimits | None = None
    pess: PessParams | None = None
    connection: PessConnection = PessConnection.SINGLE_PHASE


@dataclass
class ControllerCounters:
    periods: int = 0
    decisions: int = 0
    fallbacks: int = 0
    errors: int = 0
    commands_sent: int = 0
    switch_commands: int = 0
    solve_s: list[float] = field(default_factory=list)
    decide_cpu_s: float = 0.0
    """process CPU time spent deciding (solve and LTUPF check), s: what a decision costs on a loaded machine."""
    rejections: Counter[str] = field(default_factory=Counter)
    stale_ticks: int = 0
    """Ticks in which some customer's last real reading was older than the staleness limit."""
    stale_readings: int = 0
    """Customer-ticks whose load the forecast gave in place of a stale reading."""
    stale_decisions: int = 0
    """Decisions taken while some customer's readings were stale (their loads the forecast's)."""
    least_violating: int = 0
    """Decisions whose checked first step violated the limits whatever the PSD positions and went out in the form
    that violates them least instead (``ControllerDecision._least_violating``)."""


def _first_zero(a: np.ndarray) -> np.ndarray:
    out = a.copy()
    out[0] = 0.0
    return out


class ControllerDecision:
    """Observations in (``on_frame``, ``on_grid``, ``on_reading``, ``on_state``, ``on_ack``), every tick's
    messages out (``step``); see the module docstring."""

    def __init__(
        self, *, view: FeederView, devices: list[ControlledDevice], settings: ControllerSettings,
        forecaster: Forecaster, tick_s: int, start_utc: datetime, n_ticks: int, guard: LtupfGuard | None = None,
        tick_loads: Callable[[int, int], np.ndarray] | None = None, timer: Callable[[], float] = time.perf_counter,
        real_time: bool = False, stale_after_ticks: int | None = None,
    ) -> None:
        """``tick_loads(tick, n)``: per-terminal loads [n, n_customers, 3] of the coming ticks when the forecast
        has tick resolution (perfect foresight); the LTUPF check then covers every tick of the first step.
        ``real_time``: the twin keeps pace with the wall clock (``--speed > 0``, HIL), so the solver's time limit
        applies as a safety net; in virtual time only its work limits do, and a replay decides the same on any
        machine at any load (unless ``settings.solver.wall_clock`` says otherwise).
        ``stale_after_ticks``: a customer without a real (not estimated) reading for more ticks than this is stale:
        the controller does not take its last value as what it draws now, but the forecast's (see ``_fresh``),
        counts it and says so; None: readings never go stale."""
        if settings.period_s % tick_s:
            raise ValueError(f"control period_s {settings.period_s} must be a whole number of {tick_s} s ticks")
        self._view, self._settings = view, settings
        self._out: list[tuple[str, Message]] = []
        self._devices = devices
        self._forecaster = forecaster
        self._tick_s, self._n_ticks, self._timer = tick_s, n_ticks, timer
        solver = settings.solver
        solver = solver if solver.wall_clock is not None else solver.model_copy(update={"wall_clock": real_time})
        # the LP bound proves nothing the plan needs: it is solved after the commands are out (``_bound``)
        self._lp_bound = solver.lp_bound
        self._solver = solver.model_copy(update={"lp_bound": False})
        self._bound_lp = PersistentLp()
        """The LP bound's model, kept from period to period (re-solved from the last basis)."""
        self._ticks_per_step = settings.period_s // tick_s
        self._index = {c: i for i, c in enumerate(view.customer_ids)}
        unknown = [d.customer_id for d in devices if d.customer_id not in self._index]
        if unknown:
            raise ValueError(f"controlled devices sit at customers not in {view.name!r}: {unknown}")
        self._switches = [d for d in devices if d.kind in (DeviceKind.PSD, DeviceKind.STS)]
        self._pess = [d for d in devices if d.kind == DeviceKind.PESS]
        self._switch_rows = {self._index[d.customer_id] for d in self._switches}
        n = len(view.customer_ids)
        self._aggregator = StepAggregator(n_series=3 * n + len(self._pess), ticks_per_step=self._ticks_per_step)
        self._terminal_kw = np.zeros((n, 3))
        self._states: dict[str, DeviceState] = {}
        self._last_switch_utc: dict[str, datetime] = {}
        """When each device last switched (the state of the tick it switched in), for the budget's dwell."""
        self._seq = int(start_utc.timestamp() * 1000)
        self._previous: Plan | None = None
        self._static_target: np.ndarray | None = None
        self.counters = ControllerCounters()
        self.plans: list[ControllerPlan] = []
        self.guard = guard
        """The LTUPF check and repair (its counters), None without the check."""
        self._tick_loads = tick_loads
        self._q_ratio = np.zeros((n, 3))
        self._q_ratio_frozen: np.ndarray | None = None
        """The q/p ratios the LTUPF check takes with ``repair_ahead``: those known when the last commands went out."""
        self._vm_sum: np.ndarray | None = None
        self._vm_count = 0
        self._tick_extremes: list[tuple[int, float, float]] = []
        self._checked: tuple[int, FirstStepCheck] | None = None
        """First tick and LTUPF check of the step whose twin states are being collected."""
        self._basis = PredictionBasis.TICKS if tick_loads is not None else PredictionBasis.STEP_MEAN
        self.records: list[dict[str, object]] = []
        """Per control period: predicted (LTUPF) and actual (twin) voltage extremes of its first step, compared
        like for like (``feasibility.prediction_error``)."""
        self._newest = NewestTick()
        self._stale_after = stale_after_ticks
        self._fresh_tick = np.full(n, -1)
        """The tick of each customer's last real reading (-1: none yet)."""
        self._stale_now = 0
        self._pending: Callable[[], None] | None = None
        self._ahead: tuple[ControlProblem, Plan] | None = None
        """The problem the last search ahead predicted for the next period and its plan (``_search``)."""
        self._took_ahead = False
        """Work the last decision left until its commands are published (``after_publish``)."""

    @property
    def feeder(self) -> str:
        return self._view.name

    # --- inputs ---------------------------------------------------------------------------------------------
    def on_frame(self, topic: str, message: Message) -> None:
        if isinstance(message, MeterFrame) and message.meter_ids == self._view.customer_ids \
                and not self._newest.late(message.tick):
            self._terminal_kw = message.p_kw
            real = np.ones(len(message.meter_ids), dtype=bool)
            if message.estimated:
                real[[self._index[m] for m in message.estimated if m in self._index]] = False
            self._fresh_tick[real] = message.tick
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = message.q_kvar / message.p_kw
            self._q_ratio = np.where(np.isfinite(ratio), ratio, self._q_ratio)

    def on_grid(self, topic: str, message: Message) -> None:
        if not isinstance(message, GridState):
            return
        if self.guard is not None:
            self.guard.observe(message)
        self._vm_sum = message.vm_pu.copy() if self._vm_sum is None else self._vm_sum + message.vm_pu
        self._vm_count += 1
        self._tick_extremes.append((message.tick, min(message.vm_min_pu), max(message.vm_max_pu)))

    def on_reading(self, topic: str, message: Message) -> None:
        i = self._index.get(message.meter_id) if isinstance(message, MeterReading) else None
        if isinstance(message, MeterReading) and i is not None and not self._newest.late(message.tick):
            row = np.zeros(3)
            row[:len(message.p_kw)] = message.p_kw
            self._terminal_kw = self._terminal_kw.copy()
            self._terminal_kw[i] = row
            if not message.estimated:
                self._fresh_tick[i] = message.tick

    def on_state(self, topic: str, message: Message) -> None:
        if isinstance(message, DeviceState):
            before = self._states.get(message.device_id)
            if before is not None and message.operations_total > before.operations_total:
                self._last_switch_utc[message.device_id] = message.time_utc
            self._states[message.device_id] = message

    def on_ack(self, topic: str, message: Message) -> None:
        if isinstance(message, DeviceAck) and message.status == AckStatus.REJECTED and message.reason is not None:
            self.counters.rejections[message.reason.value] += 1
            log.warning("controller: %s rejected seq %d: %s (%s)", message.device_id, message.seq,
                        message.reason.value, message.detail)

    # --- the tick -------------------------------------------------------------------------------------------
    def step(self, tick: int, time_utc: datetime) -> list[tuple[str, Message]]:
        """What the tick gives to publish, in order (heartbeat, commands, plan at the end of a period). Work a
        decision left for after publishing (``after_publish``) and that nobody ran is run first."""
        self.after_publish()
        self._tick(tick, time_utc)
        out, self._out = self._out, []
        return out

    def after_publish(self) -> None:
        """The work a decision leaves until its commands are published — the search ahead (``_search``) and the
        LP bound (``_bound``) — so that in real time the commands do not wait for it. ``OnlineController`` runs it
        right after publishing a tick's messages; in virtual time the result is the same either way."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending()

    def _emit(self, topic: str, message: Message) -> None:
        self._out.append((topic, message))

    def _fresh(self, tick: int) -> np.ndarray:
        """The customers' loads [n, 3] to take as this tick's: their readings, except for a customer whose last
        real reading is older than the staleness limit — a broker outage, a dead meter feed, a meter the ingest
        guard keeps replacing. For those the forecast of the current step stands in (a forecaster that has not
        observed anything yet cannot: then the last values stay, still counted as stale)."""
        if self._stale_after is None:
            return self._terminal_kw
        stale = tick - self._fresh_tick > self._stale_after
        n_stale = int(stale.sum())
        if n_stale != self._stale_now:
            if n_stale:
                names = [self._view.customer_ids[i] for i in np.flatnonzero(stale)[:5]]
                log.warning("controller: tick %d: %d customer(s) without a real reading for more than %d tick(s) "
                            "(%s%s): planning with the forecast's loads for them", tick, n_stale, self._stale_after,
                            ", ".join(names), " …" if n_stale > 5 else "")
            else:
                log.warning("controller: tick %d: every customer's readings are fresh again", tick)
            self._stale_now = n_stale
        if not n_stale:
            return self._terminal_kw
        self.counters.stale_ticks += 1
        self.counters.stale_readings += n_stale
        n = len(self._view.customer_ids)
        try:
            forecast = self._forecaster.forecast(tick // self._ticks_per_step, 1)[0, :3 * n].reshape(n, 3)
        except ForecastError:
            return self._terminal_kw
        return np.where(stale[:, None], forecast, self._terminal_kw)

    def _tick(self, tick: int, time_utc: datetime) -> None:
        pv = [self._pv_now(d.device_id) for d in self._pess]
        row = np.concatenate([self._fresh(tick).reshape(-1), np.asarray(pv, dtype=float)])
        for step, mean in self._aggregator.add(tick, row):
            self._forecaster.observe(step, mean)
        if tick + 1 >= self._n_ticks:
            self._close_actual()
        if (tick + 1) % self._ticks_per_step or tick + 1 >= self._n_ticks:
            return
        step = (tick + 1) // self._ticks_per_step
        step_start = time_utc + timedelta(seconds=self._tick_s)
        self._close_actual()
        self.counters.periods += 1
        if self._stale_now:
            self.counters.stale_decisions += 1
            log.warning("controller: deciding for %s with %d customer(s)' readings stale: their loads are the "
                        "forecast's", step_start.isoformat(), self._stale_now)
        self._emit(topics.controller_heartbeat(self._view.name), ControllerHeartbeat(
            feeder=self._view.name, tick=tick, time_utc=time_utc, controller_id=self._settings.controller_id))
        cpu_start = time.process_time()
        try:
            problem = self._problem(step, step_start)
            plan = self._decide(problem)
        except Exception as err:  # a failed decision must not stop the twin: hold, count, log
            self.counters.errors += 1
            log.exception("controller: decision for %s failed; holding the last plan", step_start.isoformat())
            self._hold(tick, time_utc, step_start, f"error: {err}")
            self.counters.decide_cpu_s += time.process_time() - cpu_start
            return
        self.counters.solve_s.append(plan.solve_s)
        if plan.status is PlanStatus.FALLBACK:
            self.counters.decide_cpu_s += time.process_time() - cpu_start
            self._hold(tick, time_utc, step_start, plan.reason, problem=problem)
            return
        self.counters.decisions += 1
        self._previous = plan
        taken = self.guard.prepared_taken if self.guard is not None else 0
        check = self._check(plan, problem, step) if self.guard is not None else None
        prepared = self.guard is not None and self.guard.prepared_taken > taken
        substituted = False
        if check is not None and check.infeasible:
            before = self.counters.least_violating
            plan, check = self._least_violating(plan, problem, step, check)
            substituted = self.counters.least_violating > before
            self._previous = plan
        self._checked = (step * self._ticks_per_step, check) if check is not None else None
        decision_cpu_s = time.process_time() - cpu_start
        self.counters.decide_cpu_s += decision_cpu_s
        self._act(plan, problem, tick, time_utc, step_start, check=check)
        # what the commands waited for in CPU (problem, solve, LTUPF check): solve_s is wall time, load-dependent
        self.records[-1]["decision_cpu_s"] = decision_cpu_s
        self.records[-1]["check_prepared"] = prepared
        self.records[-1]["least_violating"] = substituted
        self.records[-1]["plan_ahead"] = self._took_ahead

        def after_publish() -> None:
            self._search(plan, problem, step, step_start, check)
            self._bound(plan, problem)

        self._pending = after_publish

    def _search(self, plan: Plan, problem: ControlProblem, step: int, step_start: datetime,
                check: FirstStepCheck | None) -> None:
        """The search (``SolverSettings.defer_search``), once a period's commands are out, run ahead: the
        whole solve of the next period's problem as this plan leaves it (``start.predicted_next``), from this plan;
        its plan warm-starts the next period, whose own solve then starts where this one ended. Without a next
        problem (the forecast ends) the rest of this period's solve (``continue_search``). Its CPU counts in
        ``decide_cpu_s``, its time in the record's ``deferred_s``, not in the plan's ``solve_s`` (the commands did
        not wait for it)."""
        if not self._solver.defer_search:
            return
        if self.guard is not None and self._settings.repair_ahead:  # the next check's operating point: known now
            self.guard.freeze()
            self._q_ratio_frozen = self._q_ratio
        cpu_start = time.process_time()
        self._ahead = None
        settled = replace(plan, deferred=None)
        try:
            nxt = self._problem(step + 1, step_start + timedelta(seconds=self._settings.period_s))
        except ForecastError as err:
            log.info("controller: no next problem to search ahead for (%s); finishing this period's search", err)
            nxt = None
        if nxt is None:  # ``plan`` itself when it deferred nothing (the first period's)
            searched = continue_search(problem, plan, weights=self._settings.weights, settings=self._solver,
                                       timer=self._timer)
        else:
            phase_first = np.array(plan.decisions.phase[0], copy=True)
            if check is not None and check.repaired:
                for c, dev in enumerate(self._switches):
                    phase_first[c] = check.connections.connections[self._index[dev.customer_id]][0]
            ahead = predicted_next(nxt, problem, plan.decisions, phase_first=phase_first)
            searched = solve(ahead, weights=self._settings.weights, previous=settled, timer=self._timer,
                             settings=self._solver.model_copy(update={"defer_search": False}))
            if searched.status is not PlanStatus.FALLBACK:
                self._ahead = (ahead, searched)
                if self.guard is not None and self._settings.repair_ahead:
                    self._prepare_check(searched, ahead, step + 1)
        self._previous = searched if searched.status is not PlanStatus.FALLBACK else settled
        self.records[-1].update({"deferred_s": searched.solve_s, "searched": "fix-and-optimise" in searched.reason})
        self.counters.decide_cpu_s += time.process_time() - cpu_start

    def _prepare_check(self, plan: Plan, problem: ControlProblem, step: int) -> None:
        """The next decision's LTUPF check and repair on the first step of ``plan`` (the search ahead's), which
        that decision takes when its inputs are the same (``LtupfGuard.prepare``). A failure here only costs the
        next decision its own check."""
        assert self.guard is not None
        try:
            inputs = self._check_inputs(plan, problem, step)
            if inputs["terminal_p_kw"].shape[0]:  # no ticks left: the run ends before that step
                self.guard.prepare(**inputs)
        except Exception:  # a forecast that ends, an LTUPF error: the decision checks for itself
            log.exception("controller: preparing the LTUPF check of %s failed; the decision will check itself",
                          problem.start_utc.isoformat())

    def _bound(self, plan: Plan, problem: ControlProblem) -> None:
        """The LP bound of a rolling-MILP plan (``SolverSettings.lp_bound``) into its record, once its commands are
        out: its CPU counts in ``decide_cpu_s``, its time not in the plan's ``solve_s`` (nothing in the plan waits
        for it). In real time within the solver's time limit, else no bound."""
        if not self._lp_bound or self._settings.strategy is not Strategy.ROLLING_MILP:
            return
        cpu_start = time.process_time()
        limit = self._solver.time_limit_s if self._solver.wall_clock else None
        bound = lp_bound(problem, weights=self._settings.weights, threads=self._solver.threads, time_limit_s=limit,
                         persistent=self._bound_lp)
        bounded = replace(plan, lp_bound=bound)
        self.records[-1].update({"lp_bound": bounded.lp_bound, "bound_gap": bounded.bound_gap})
        self.counters.decide_cpu_s += time.process_time() - cpu_start

    def _close_actual(self) -> None:
        """The twin's voltages over the step that just ended, beside what LTUPF predicted for the same ticks."""
        if self._vm_sum is not None and self._vm_count and self.records and "actual_vm_min_pu" not in self.records[-1]:
            lv = (self._vm_sum / self._vm_count)[list(self._view.lv_buses)]
            first, check = self._checked if self._checked is not None else (0, None)
            self.records[-1].update(prediction_error(
                check, basis=self._basis, first_tick=first, tick_extremes=self._tick_extremes,
                mean_vm_min_pu=float(lv.min()), mean_vm_max_pu=float(lv.max())))
        self._vm_sum, self._vm_count, self._tick_extremes, self._checked = None, 0, [], None

    def _least_violating(self, plan: Plan, problem: ControlProblem, step: int,
                         check: FirstStepCheck) -> tuple[Plan, FirstStepCheck]:
        """A plan whose first step the LTUPF check found violating the limits, with no PSD positions that fix it:
        the first step that violates them least (summed predicted excess) among the plan's own, the plan's phases
        with every battery idle (no charge, discharge or curtailment) and every device held where it is with the
        batteries idle — a battery discharging into a midday over-voltage, or charging into an evening
        under-voltage, is what PSD moves cannot undo. The plan itself unless another is strictly better; the rest
        of the horizon is the plan's either way. Counted (``least_violating``) and logged when it changes."""
        assert self.guard is not None
        d = plan.decisions
        idle = replace(d, charge_kw=_first_zero(d.charge_kw), discharge_kw=_first_zero(d.discharge_kw),
                       curtail_kw=_first_zero(d.curtail_kw))
        phase, pess_phase = d.phase.copy(), d.pess_phase.copy()
        phase[0] = [int(dev.switch.phase_now) for dev in problem.switch_devices]
        for u, unit in enumerate(problem.pess_units):
            if unit.switch is not None:
                pess_phase[0, u] = int(unit.switch.phase_now)
        held = replace(idle, phase=phase, pess_phase=pess_phase)
        best: tuple[str, Plan, FirstStepCheck] | None = None
        for what, decisions in (("batteries idle", idle), ("devices held, batteries idle", held)):
            candidate = plan_from_decisions(problem, decisions, weights=self._settings.weights, status=plan.status,
                                            reason=f"{plan.reason}; first step: {what} (LTUPF: least violating)",
                                            solve_s=plan.solve_s)
            assessed = self.guard.assess(**self._check_inputs(candidate, problem, step),
                                         note=f"{check.note}; first step: {what}, the least violating")
            if assessed.excess < (check if best is None else best[2]).excess - 1e-9:
                best = (what, candidate, assessed)
        if best is None:
            return plan, check
        self.counters.least_violating += 1
        log.warning("controller: first step of %s violates the limits whatever the PSD positions (predicted excess "
                    "%.4g); sending it with %s instead (excess %.4g)", problem.start_utc.isoformat(), check.excess,
                    best[0], best[2].excess)
        return best[1], best[2]

    def _check(self, plan: Plan, problem: ControlProblem, step: int) -> FirstStepCheck:
        """LTUPF check of the plan's first step at the forecast step-mean loads; repair by PSD moves if needed."""
        assert self.guard is not None
        return self.guard.check(**self._check_inputs(plan, problem, step))

    def _check_inputs(self, plan: Plan, problem: ControlProblem, step: int) -> dict[str, Any]:
        """What the LTUPF check of the plan's first step takes (``LtupfGuard.check``)."""
        view, n = self._view, len(self._view.customer_ids)
        if self._tick_loads is not None:
            terminal = self._tick_loads(step * self._ticks_per_step, self._ticks_per_step)
        else:
            terminal = self._forecaster.forecast(step, 1)[:, :3 * n].reshape(1, n, 3)
        connections = list(view.connections)
        switchable = []
        for c, dev in enumerate(problem.switch_devices):
            i = self._index[self._switches[c].customer_id]
            connections[i] = (Phase(int(plan.decisions.phase[0, c])),)
            lock = dev.switch
            if not lock.locked and lock.dwell_remaining_s <= 0 and lock.ops_left > 0:
                switchable.append(i)
        # what the PESS will do, tick by tick: the device's end-of-day target may override the plan's setpoint
        ticks = expected_pess_kw(problem, plan.decisions, rows=[self._index[d.customer_id] for d in self._pess],
                                 n_customers=n, tick_s=self._tick_s, n_ticks=max(1, self._ticks_per_step))
        pess_kw = ticks[:terminal.shape[0]] if self._tick_loads is not None else ticks.mean(axis=0, keepdims=True)
        q_ratio = self._q_ratio_frozen if self._q_ratio_frozen is not None else self._q_ratio
        return {"terminal_p_kw": terminal, "terminal_q_kvar": terminal * q_ratio[None],
                "connections": PhaseMap.of(connections), "pess_p_kw": pess_kw, "switchable": switchable,
                "customer_ids": view.customer_ids}

    def _pv_now(self, device_id: str) -> float:
        state = self._states.get(device_id)
        return state.battery.pv_available_kw if state is not None and state.battery is not None else 0.0

    # --- problem --------------------------------------------------------------------------------------------
    def _phase_now(self, device: ControlledDevice) -> Phase:
        state = self._states.get(device.device_id)
        if state is not None and state.phase is not None:
            return Phase[state.phase]
        return self._view.connections[self._index[device.customer_id]][0]

    def _switch_state(self, device: ControlledDevice, limits: SwitchLimits, step_start: datetime) -> SwitchState:
        """The device's state at ``step_start`` with the plan's limits: its own, tightened by the budget."""
        limits = self._settings.budget.limits(limits)
        state = self._states.get(device.device_id)
        if state is None:
            return SwitchState(phase_now=self._phase_now(device), limits=limits)
        ahead_s = (step_start - state.time_utc).total_seconds()
        same_day = step_start.date() == state.time_utc.date()
        used = state.operations_today if same_day else 0
        dwell_s = state.dwell_remaining_s - ahead_s
        last = self._last_switch_utc.get(device.device_id)
        if last is not None:  # the budget's dwell, when longer than the device's
            dwell_s = max(dwell_s, limits.min_dwell_s - (step_start - last).total_seconds())
        return SwitchState(
            phase_now=self._phase_now(device), limits=limits,
            dwell_remaining_s=max(0.0, dwell_s),
            ops_left_today=max(0, limits.max_operations_per_day - used),
            locked=state.mode == DeviceMode.LOCKOUT,
        )

    def _problem(self, step: int, step_start: datetime, horizon: int | None = None) -> ControlProblem:
        view, n = self._view, len(self._view.customer_ids)
        h = horizon or self._settings.horizon_steps
        fc = self._forecaster.forecast(step, h)
        terminal = fc[:, :3 * n].reshape(h, n, 3)
        fixed = np.zeros((h, view.n_feeders, 3))
        for i, phases in enumerate(view.connections):
            if i in self._switch_rows:
                continue
            for j, ph in enumerate(phases):
                fixed[:, view.feeder_of[i], ph] += terminal[:, i, j]
        switch_devices, switch_load = [], []
        for d in self._switches:
            i = self._index[d.customer_id]
            assert d.switch is not None
            switch_devices.append(SwitchDevice(id=d.device_id, feeder=view.feeder_of[i],
                                               switch=self._switch_state(d, d.switch, step_start)))
            switch_load.append(terminal[:, i, 0])
        units = []
        for d in self._pess:
            assert d.pess is not None
            state = self._states.get(d.device_id)
            e_now = state.battery.e_kwh if state is not None and state.battery is not None else d.pess.e_initial_kwh
            i = self._index[d.customer_id]
            units.append(PessUnit(
                id=d.device_id, feeder=view.feeder_of[i], params=d.pess, connection=d.connection,
                phase=self._phase_now(d) if d.connection is PessConnection.SINGLE_PHASE else None,
                switch=self._switch_state(d, d.switch, step_start)
                if d.connection is PessConnection.SWITCHABLE and d.switch is not None else None,
                e_now_kwh=min(max(e_now, 0.0), d.pess.energy_kwh),
            ))
        return ControlProblem(
            start_utc=step_start, step_s=float(self._settings.period_s), fixed_load_kw=fixed,
            switch_devices=tuple(switch_devices),
            switch_load_kw=np.stack(switch_load, axis=1) if switch_load else np.zeros((h, 0)),
            pess_units=tuple(units), pv_kw=np.clip(fc[:, 3 * n:], 0.0, None), nominal_v_ln_v=view.v_ln_v,
        )

    def _decide(self, problem: ControlProblem) -> Plan:
        s = self._settings
        self._took_ahead = False
        if s.strategy is Strategy.ROLLING_MILP:
            taken = self._plan_ahead(problem)
            if taken is not None:
                return taken
            return solve(problem, weights=s.weights, settings=self._solver, previous=self._previous, timer=self._timer)
        if s.strategy is Strategy.GREEDY:
            return greedy_plan(problem, weights=s.weights, timer=self._timer)
        if s.strategy is Strategy.STATIC:
            if self._static_target is None:
                steps_per_day = max(1, 86400 // s.period_s)
                step = int((problem.start_utc - problem.start_utc.replace(hour=0, minute=0, second=0))
                           .total_seconds() // s.period_s)
                day = self._problem(step, problem.start_utc, horizon=steps_per_day)
                day_settings = SolverSettings(time_limit_s=min(10.0, 0.5 * day.step_s),
                                              wall_clock=self._solver.wall_clock)
                self._static_target = static_phases(day, weights=s.weights, settings=day_settings, timer=self._timer)
            return static_plan(problem, self._static_target, weights=s.weights, timer=self._timer)
        raise ValueError(f"strategy {s.strategy.value} has no decision to make")

    def _plan_ahead(self, problem: ControlProblem) -> Plan | None:
        """The plan the search ahead made for this very problem (``start.same_problem``: a perfect forecast and
        devices that did what the last plan said), taken as it is: the decision's own descent round would start from
        it and, the search having ended in a local optimum, mostly find nothing. None when the problem differs."""
        ahead, self._ahead = self._ahead, None
        if ahead is None:
            return None
        t_start = self._timer()
        predicted, plan = ahead
        if not same_problem(predicted, problem):
            return None
        self._took_ahead = True
        return replace(plan, reason=f"{plan.reason}; searched ahead", solve_s=self._timer() - t_start)

    # --- output ---------------------------------------------------------------------------------------------
    def _act(self, plan: Plan, problem: ControlProblem, tick: int, time_utc: datetime, step_start: datetime,
             status: str | None = None, reason: str | None = None, check: FirstStepCheck | None = None) -> None:
        commands: list[PlannedCommand] = []
        d = plan.decisions
        for c, dev in enumerate(problem.switch_devices):
            target = Phase(int(d.phase[0, c]))
            if check is not None and check.repaired:
                target = check.connections.connections[self._index[self._switches[c].customer_id]][0]
            if target != dev.switch.phase_now:
                commands.append(PlannedCommand(device_id=dev.id, phase=_letter(target)))
        if self._settings.strategy is Strategy.ROLLING_MILP:
            for u, unit in enumerate(problem.pess_units):
                pv0 = float(problem.pv_kw[0, u])
                phase = None
                if unit.connection is PessConnection.SWITCHABLE and unit.switch is not None:
                    target = Phase(int(d.pess_phase[0, u]))
                    phase = _letter(target) if target != unit.switch.phase_now else None
                commands.append(PlannedCommand(
                    device_id=unit.id, phase=phase,
                    battery_kw=float(d.discharge_kw[0, u] - d.charge_kw[0, u]),
                    curtailment=min(1.0, float(d.curtail_kw[0, u]) / pv0) if pv0 > 1e-9 else 0.0,
                ))
        kinds = {dev.device_id: dev.kind for dev in self._devices}
        for planned in commands:
            self._send(planned, kinds[planned.device_id], time_utc)
        message = ControllerPlan(
            feeder=self._view.name, tick=tick, time_utc=time_utc, controller_id=self._settings.controller_id,
            strategy=self._settings.strategy.value, status=status or plan.status.value, reason=reason or plan.reason,
            step_start_utc=step_start, step_s=plan.step_s, n_steps=plan.n_steps, objective=plan.objective.total,
            p_unb_kwh=plan.objective.p_unb_kwh, switches=plan.objective.n_switches, solve_s=plan.solve_s,
            commands=tuple(commands), fallbacks=self.counters.fallbacks,
            predicted_vm_min_pu=check.predicted_vm_min_pu if check else None,
            predicted_vm_max_pu=check.predicted_vm_max_pu if check else None,
            violations=check.violations if check else (), repaired=check.repaired if check else False,
        )
        self.plans.append(message)
        self.records.append({
            "step_start_utc": step_start, "status": message.status, "objective": message.objective,
            "p_unb_kwh": message.p_unb_kwh, "switches": message.switches, "solve_s": message.solve_s,
            "commands": len(commands), "predicted_vm_min_pu": message.predicted_vm_min_pu,
            "predicted_vm_max_pu": message.predicted_vm_max_pu, "violations": len(message.violations),
            "repaired": message.repaired, "infeasible": bool(check and check.infeasible),
            "lp_bound": plan.lp_bound, "bound_gap": plan.bound_gap, "deferred_s": None, "searched": None,
        })
        self._emit(topics.controller_plan(self._view.name), message)

    def _send(self, planned: PlannedCommand, kind: DeviceKind, time_utc: datetime) -> None:
        self._seq += 1
        if kind == DeviceKind.PESS:
            action = DeviceAction.SET_BATTERY
        else:
            action = DeviceAction.SET_PHASE if kind == DeviceKind.PSD else DeviceAction.TRANSFER
            self.counters.switch_commands += 1
        command = DeviceCommand(
            device_id=planned.device_id, seq=self._seq, issued_utc=time_utc,
            expires_utc=time_utc + timedelta(seconds=self._settings.lifetime_s(self._tick_s)), action=action,
            phase=planned.phase, battery_kw=planned.battery_kw, curtailment=planned.curtailment,
            source=self._settings.controller_id,
        )
        self._emit(topics.device_cmd(self._view.name, planned.device_id), command)
        self.counters.commands_sent += 1

    def _hold(self, tick: int, time_utc: datetime, step_start: datetime, why: str,
              problem: ControlProblem | None = None) -> None:
        """No usable plan in time: keep following the last safe plan (shifted), else hold every device."""
        self.counters.fallbacks += 1
        log.warning("controller: no plan for %s (%s); holding the last safe plan", step_start.isoformat(), why)
        if problem is not None and self._previous is not None:
            shifted = shift_previous(self._previous, problem)
            if shifted is not None:
                held = plan_from_decisions(problem, shifted, weights=self._settings.weights,
                                           status=PlanStatus.HEURISTIC, reason="last safe plan", solve_s=0.0)
                self._act(held, problem, tick, time_utc, step_start, status="fallback", reason=why)
                return
        self.plans.append(ControllerPlan(
            feeder=self._view.name, tick=tick, time_utc=time_utc, controller_id=self._settings.controller_id,
            strategy=self._settings.strategy.value, status="hold", reason=why, step_start_utc=step_start,
            step_s=float(self._settings.period_s), n_steps=0, objective=0.0, p_unb_kwh=0.0, switches=0,
            solve_s=0.0, commands=(), fallbacks=self.counters.fallbacks,
        ))
        self._emit(topics.controller_plan(self._view.name), self.plans[-1])
