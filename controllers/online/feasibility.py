"""The controller's feasibility check and repair tool (Liu et al., paper 001): every plan's first step is checked
with the LTUPF linearised at the last grid state; when it violates a voltage or thermal limit, Algorithm 1's
search moves the PSDs that may switch now to the most balanced positions (eq. 29) that meet the limits — tried
first by single moves checked with the LTUPF (``ltupf.local_repair``), which also show when no positions can
meet a voltage limit, then by the MILP when those get stuck.

Repairs prepared one period ahead (``ControllerSettings.repair_ahead``): once a period's commands are out, the
controller ``freeze``s the last grid state as the operating point of the next decision's check and ``prepare``s that
check on the first step of the plan its search ahead predicts for the next period. When the next decision's check has
the very same inputs (loads, connections, movable customers and their ids, battery set-points to 1e-6 kW, the
repair's rounds, and the very linearisation it was made with) it takes the prepared outcome — the same repair, or
the same proof that none exists, that it would have computed — without waiting for the search; otherwise it checks
and repairs as before. Linearising
at the state frozen one period earlier, not at the latest one, is the price (measured in docs/controller/README.md).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from controllers.ltupf import (
    FeasibilityReport,
    Linearisation,
    LtupfModel,
    MilpOptions,
    NetworkModel,
    NetworkRows,
    OperatingLimits,
    OperatingPoint,
    SearchOptions,
    find_feasible_phases,
    linearise,
)
from controllers.ltupf.local_repair import repair_by_moves
from controllers.online.problem import ControlProblem, Decisions, PessConnection
from devices.pess import battery_dispatch_kw, energy_after_kwh
from streams.messages import GridState
from twin.phasing import PhaseMap

log = logging.getLogger(__name__)


class PredictionBasis(StrEnum):
    """Which load states of a first step the LTUPF checked, and so which twin states its prediction compares with."""

    TICKS = "ticks"
    """Each tick of the step at its own loads (perfect foresight): compared tick by tick with the twin."""
    STEP_MEAN = "step_mean"
    """The step's mean (forecast) loads: compared with the twin's mean voltages over the step."""


@dataclass(frozen=True)
class FirstStepCheck:
    """Outcome of checking (and perhaps repairing) a plan's first step."""

    predicted_vm_min_pu: float
    predicted_vm_max_pu: float
    predicted_vm_min_states_pu: tuple[float, ...]
    """Per checked state (each tick of the step, or its one mean state): the lowest LV voltage predicted."""
    predicted_vm_max_states_pu: tuple[float, ...]
    violations: tuple[str, ...]
    """Violations of the plan as solved (empty when feasible)."""
    connections: PhaseMap
    """Connections to apply: the plan's, or the repair's."""
    repaired: bool
    infeasible: bool
    """No assignment of the switchable customers meets the limits: the controller sends the first step that the
    LTUPF predicts violates them least (``ControllerDecision._least_violating``), logged."""
    note: str
    excess: float = 0.0
    """Summed predicted excess over the limits of the states as sent (p.u. and fractions of ratings; 0: none)."""


def _first_step_check(states: Sequence[FeasibilityReport], *, connections: PhaseMap, violations: tuple[str, ...],
                      repaired: bool, infeasible: bool, note: str) -> FirstStepCheck:
    """The check to record for the predicted ``states`` of a first step (one per tick, or its mean)."""
    vm = np.array([r.prediction.vm_pu for r in states])
    return FirstStepCheck(predicted_vm_min_pu=float(vm.min()), predicted_vm_max_pu=float(vm.max()),
                          predicted_vm_min_states_pu=tuple(vm.min(axis=(1, 2)).tolist()),
                          predicted_vm_max_states_pu=tuple(vm.max(axis=(1, 2)).tolist()),
                          violations=violations, connections=connections, repaired=repaired, infeasible=infeasible,
                          note=note, excess=float(sum(v.excess for r in states for v in r.violations)))


@dataclass
class _Prepared:
    """A check made ahead (``LtupfGuard.prepare``): its inputs' key, outcome, and what it counted and logged, to be
    counted and logged when a decision takes it."""

    key: tuple[object, ...]
    check: FirstStepCheck | None
    model: LtupfModel | None = None
    """The linearisation it was checked with: taken only while a decision checks with the same one."""
    counts: dict[str, int] = field(default_factory=dict)
    logs: list[tuple[int, str, tuple[object, ...]]] = field(default_factory=list)


def expected_pess_kw(
    problem: ControlProblem, d: Decisions, *, rows: Sequence[int], n_customers: int, tick_s: float, n_ticks: int
) -> np.ndarray:
    """[n_ticks, n_customers, 3] what each PESS (at customer ``rows[u]``) will draw from each network phase over
    the first ``n_ticks`` ticks of the plan's first step, as the device does it (``devices.pess.battery_dispatch_kw``)
    with the setpoint and curtailment the controller sends (``ControllerDecision._act``): the plan's battery power
    unless the device's own limits cut it, e.g. the end-of-day target, which the plan does not model and which
    makes the device charge at full power before midnight whatever it was told."""
    out = np.zeros((n_ticks, n_customers, 3))
    t0_s = problem.start_utc.timestamp()
    for u, unit in enumerate(problem.pess_units):
        pv_kw = float(problem.pv_kw[0, u])
        curtailment = min(1.0, float(d.curtail_kw[0, u]) / pv_kw) if pv_kw > 1e-9 else 0.0
        setpoint_kw = float(d.discharge_kw[0, u] - d.charge_kw[0, u])
        e_kwh, p = unit.e_now_kwh, unit.params
        for j in range(n_ticks):
            b_kw, pv_used_kw, _ = battery_dispatch_kw(
                p, e_kwh=e_kwh, start_s=t0_s + j * tick_s, tick_s=tick_s, wanted_kw=setpoint_kw,
                pv_used_kw=pv_kw * (1.0 - curtailment), self_consumption=False)
            e_kwh = energy_after_kwh(p, e_kwh, b_kw, tick_s)
            ac_kw = pv_used_kw + b_kw
            if unit.connection is PessConnection.THREE_PHASE:
                out[j, rows[u]] -= ac_kw / 3.0
            else:
                out[j, rows[u], int(d.pess_phase[0, u])] -= ac_kw
    return out


class LtupfGuard:
    def __init__(self, *, network: NetworkModel, limits: OperatingLimits, search_time_s: float | None,
                 node_limit: int | None = None, network_rows: NetworkRows = NetworkRows.DENSE) -> None:
        """``search_time_s`` None: no wall-clock limit, the repair ends on ``node_limit`` (one HiGHS thread), so
        it finds the same repair at any machine load (virtual time). ``network_rows``: how the repair MILP writes
        the network (``MilpOptions.network_rows``)."""
        self._network = network
        self._limits = limits
        # a repair runs inside a control period: five rounds of added rows, not twenty (a Liège winter repair
        # that still violates after five did after twenty too, 4 s later)
        self._options = SearchOptions(time_limit_s=search_time_s, node_limit=node_limit, max_cut_rounds=5,
                                      threads=1 if search_time_s is None else None,
                                      milp=MilpOptions(lazy_limits=True, network_rows=network_rows))
        self._point: OperatingPoint | None = None
        self.checks = 0
        self.repairs = 0
        self.infeasible = 0
        self.milp_searches = 0
        """Repairs that single moves could not make and went to the MILP."""
        self.beyond_reach = 0
        """Plans found infeasible by the single moves' bound (``local_repair.beyond_reach``), without a MILP."""
        self.prepared = 0
        """Checks prepared one period ahead (``prepare``)."""
        self.prepared_taken = 0
        """Decisions whose check was the prepared one (same inputs): no check or repair waited for."""
        self._frozen: OperatingPoint | None = None
        self._models: tuple[OperatingPoint | None, LtupfModel] | None = None
        self._ahead: _Prepared | None = None
        self._recording: _Prepared | None = None

    def observe(self, state: GridState) -> None:
        """The latest solved grid state: the operating point of the next linearisation (unless ``freeze``)."""
        self._point = OperatingPoint(vm_pu=np.asarray(state.vm_pu), va_deg=np.asarray(state.va_deg))

    def freeze(self) -> None:
        """Linearise the next checks (the next decision's and ``prepare``'s) at the latest grid state observed
        now, whatever is observed before that decision."""
        self._frozen = self._point

    def _count(self, name: str) -> None:
        if self._recording is not None:
            self._recording.counts[name] = self._recording.counts.get(name, 0) + 1
        else:
            setattr(self, name, getattr(self, name) + 1)

    def _log(self, level: int, message: str, *args: object) -> None:
        if self._recording is not None:
            self._recording.logs.append((level, message, args))
        else:
            log.log(level, message, *args)

    @staticmethod
    def _key(terminal_p_kw: np.ndarray, terminal_q_kvar: np.ndarray, connections: PhaseMap, pess_p_kw: np.ndarray,
             switchable: Sequence[int], customer_ids: Sequence[str], max_rounds: int) -> tuple[object, ...]:
        return (terminal_p_kw.shape, terminal_p_kw.tobytes(), terminal_q_kvar.tobytes(), connections.connections,
                pess_p_kw.shape, np.round(pess_p_kw, 6).tobytes(), tuple(switchable), tuple(customer_ids), max_rounds)

    def prepare(
        self, *, terminal_p_kw: np.ndarray, terminal_q_kvar: np.ndarray, connections: PhaseMap,
        pess_p_kw: np.ndarray, switchable: Sequence[int], customer_ids: Sequence[str], max_rounds: int = 3,
    ) -> None:
        """``check`` these inputs now (a predicted first step of the next period), counting and logging nothing
        until a decision's ``check`` with the same inputs takes the outcome."""
        self.prepared += 1
        entry = _Prepared(key=self._key(terminal_p_kw, terminal_q_kvar, connections, pess_p_kw, switchable,
                                        customer_ids, max_rounds), check=None, model=self._ltupf())
        self._recording = entry
        try:
            entry.check = self._check(terminal_p_kw=terminal_p_kw, terminal_q_kvar=terminal_q_kvar,
                                      connections=connections, pess_p_kw=pess_p_kw, switchable=switchable,
                                      customer_ids=customer_ids, max_rounds=max_rounds)
        finally:
            self._recording = None
        self._ahead = entry

    def _ltupf(self) -> LtupfModel:
        point = self._frozen if self._frozen is not None else self._point
        if self._models is None or self._models[0] is not point:
            self._models = (point, linearise(self._network, method=Linearisation.CBM, operating_point=point))
        return self._models[1]

    def check(
        self, *, terminal_p_kw: np.ndarray, terminal_q_kvar: np.ndarray, connections: PhaseMap,
        pess_p_kw: np.ndarray, switchable: Sequence[int], customer_ids: Sequence[str], max_rounds: int = 3,
    ) -> FirstStepCheck:
        """Check the states [k, n_customers, 3] (per terminal) of the first step — its ticks when the forecast
        has them, else its mean — and repair the worst violating one by Algorithm 1's search, re-checking all
        states with the new positions (up to ``max_rounds`` searches). The prepared outcome when ``prepare`` had
        these very inputs (see the module docstring)."""
        ahead, self._ahead = self._ahead, None
        key = self._key(terminal_p_kw, terminal_q_kvar, connections, pess_p_kw, switchable, customer_ids, max_rounds)
        if ahead is not None and ahead.check is not None and ahead.key == key and ahead.model is self._ltupf():
            self.prepared_taken += 1
            for name, n in ahead.counts.items():
                setattr(self, name, getattr(self, name) + n)
            for level, message, args in ahead.logs:
                log.log(level, message, *args)
            return ahead.check
        return self._check(terminal_p_kw=terminal_p_kw, terminal_q_kvar=terminal_q_kvar, connections=connections,
                           pess_p_kw=pess_p_kw, switchable=switchable, customer_ids=customer_ids,
                           max_rounds=max_rounds)

    def _check(
        self, *, terminal_p_kw: np.ndarray, terminal_q_kvar: np.ndarray, connections: PhaseMap,
        pess_p_kw: np.ndarray, switchable: Sequence[int], customer_ids: Sequence[str], max_rounds: int = 3,
    ) -> FirstStepCheck:
        self._count("checks")
        ltupf = self._ltupf()

        def reports(conn: PhaseMap) -> list[FeasibilityReport]:
            return self._states(ltupf, terminal_p_kw, terminal_q_kvar, conn, pess_p_kw)

        first = reports(connections)
        found = tuple(dict.fromkeys(str(v) for r in first for v in r.violations))
        current, rounds, moves, worst = connections, 0, [], first
        while any(not r.feasible for r in worst):
            if rounds == max_rounds:
                return self._infeasible(first, found, connections, f"still violated after {rounds} repair(s)")
            k = max(range(len(worst)), key=lambda j: sum(v.excess for v in worst[j].violations))
            inputs = dict(terminal_p_kw=terminal_p_kw[k], terminal_q_kvar=terminal_q_kvar[k], connections=current,
                          switchable=list(switchable), limits=self._limits, customer_ids=list(customer_ids),
                          options=self._options, pess_p_kw=pess_p_kw[k] if pess_p_kw.ndim == 3 else pess_p_kw)
            # single moves first (milliseconds); the MILP (up to seconds) when they get stuck
            search = repair_by_moves(ltupf, **inputs)
            if search is not None and not search.feasible:
                self._count("beyond_reach")
            if search is None:
                self._count("milp_searches")
                search = find_feasible_phases(ltupf, **inputs)
            rounds += 1
            if not search.feasible or search.connections is None:
                return self._infeasible(first, found, connections, search.reason)
            current = search.connections
            moves += [str(s) for s in search.switches]
            worst = reports(current)
        if rounds:
            self._count("repairs")
            self._log(logging.WARNING, "controller: first step violated %d limit(s) (worst: %s); repaired by %s",
                      len(found), found[0], ", ".join(moves))
        return _first_step_check(worst, connections=current, violations=found, repaired=bool(rounds),
                                 infeasible=False, note=f"LTUPF repair: {', '.join(moves)}" if rounds else "")

    def _states(self, ltupf: LtupfModel, terminal_p_kw: np.ndarray, terminal_q_kvar: np.ndarray,
                connections: PhaseMap, pess_p_kw: np.ndarray) -> list[FeasibilityReport]:
        return ltupf.check_states(p_kw=connections.to_phases(terminal_p_kw),
                                  q_kvar=connections.to_phases(terminal_q_kvar), pess_p_kw=pess_p_kw,
                                  limits=self._limits)

    def assess(
        self, *, terminal_p_kw: np.ndarray, terminal_q_kvar: np.ndarray, connections: PhaseMap,
        pess_p_kw: np.ndarray, note: str, **_: object,
    ) -> FirstStepCheck:
        """These inputs (``check``'s) predicted as they are, no repair tried, nothing counted or logged: the check
        to record, with its ``excess``, ``infeasible`` when some limit is still exceeded."""
        states = self._states(self._ltupf(), terminal_p_kw, terminal_q_kvar, connections, pess_p_kw)
        violations = tuple(dict.fromkeys(str(v) for r in states for v in r.violations))
        return _first_step_check(states, connections=connections, violations=violations, repaired=False,
                                 infeasible=bool(violations), note=note)

    def _infeasible(
        self, first: list[FeasibilityReport], found: tuple[str, ...], connections: PhaseMap, why: str
    ) -> FirstStepCheck:
        self._count("infeasible")
        self._log(logging.ERROR, "controller: first step violates %d limit(s) (worst: %s) and no PSD positions fix "
                  "it: %s", len(found), found[0], why)
        return _first_step_check(first, connections=connections, violations=found, repaired=False, infeasible=True,
                                 note=f"no feasible plan: {why}")


def prediction_error(
    check: FirstStepCheck | None, *, basis: PredictionBasis, first_tick: int,
    tick_extremes: Sequence[tuple[int, float, float]], mean_vm_min_pu: float | None, mean_vm_max_pu: float | None,
) -> dict[str, object]:
    """The twin's LV voltage extremes over a checked first step, aggregated as the prediction was, and the errors
    (predicted − actual).

    ``tick_extremes``: (tick, lowest, highest LV voltage) of every tick of the step the twin solved;
    ``mean_vm_*``: extremes of its mean voltages over the step. Under ``TICKS`` the i-th predicted state is tick
    ``first_tick + i``; only ticks both have are compared (a tick without a power flow is left out of both), and
    ``max_abs_tick_error_vm_*`` is the largest error of a single tick. Under ``STEP_MEAN`` the one prediction is
    compared with the mean voltages.
    """
    out: dict[str, object] = {"ltupf_basis": basis.value}
    if basis is PredictionBasis.STEP_MEAN or check is None:
        out["actual_vm_min_pu"], out["actual_vm_max_pu"] = mean_vm_min_pu, mean_vm_max_pu
        if check is not None and mean_vm_min_pu is not None and mean_vm_max_pu is not None:
            out["error_vm_min_pu"] = check.predicted_vm_min_pu - mean_vm_min_pu
            out["error_vm_max_pu"] = check.predicted_vm_max_pu - mean_vm_max_pu
        return out
    n = len(check.predicted_vm_min_states_pu)
    pairs = [(check.predicted_vm_min_states_pu[t - first_tick], check.predicted_vm_max_states_pu[t - first_tick],
              lo, hi) for t, lo, hi in tick_extremes if 0 <= t - first_tick < n]
    if not pairs:
        return out
    p_lo, p_hi, a_lo, a_hi = (np.array(column) for column in zip(*pairs, strict=True))
    out |= {
        "actual_vm_min_pu": float(a_lo.min()), "actual_vm_max_pu": float(a_hi.max()),
        "error_vm_min_pu": float(p_lo.min() - a_lo.min()), "error_vm_max_pu": float(p_hi.max() - a_hi.max()),
        "max_abs_tick_error_vm_min_pu": float(np.abs(p_lo - a_lo).max()),
        "max_abs_tick_error_vm_max_pu": float(np.abs(p_hi - a_hi).max()),
        "ticks_compared": len(pairs),
    }
    return out
