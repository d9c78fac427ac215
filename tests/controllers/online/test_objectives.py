"""The objectives a DSO can choose (issue 28): the transformer's unbalance (λT) and its peak phase load (λM) beside
P_unb per feeder (λP). The full MILP against brute force with an objective written here in plain loops, and the
MILP's own objective against the evaluation of its plan with batteries on two feeders."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from controllers.online.evaluate import evaluate
from controllers.online.problem import (
    ControlProblem,
    ControlWeights,
    Decisions,
    PessConnection,
    PessUnit,
    PlanStatus,
    SolverSettings,
    SwitchDevice,
    SwitchState,
)
from controllers.online.settings import ControllerSettings, Objective, objective_weights
from controllers.online.solve import solve
from devices.limits import PessParams, SwitchLimits
from twin.phase import Phase

EXACT = SolverSettings(time_limit_s=20.0, relative_gap=1e-9, wall_clock=False, milp_node_limit=None)
STEP_S = 900.0


def loop_cost(problem: ControlProblem, phase: np.ndarray, w: ControlWeights) -> float:
    """λP Σ_f Σ|A − μ| h + λT Σ|Σ_f A − μ| h + λM max_t,φ Σ_f A + λE Σ_t,φ (Σ_f A − balanced peak)^+ h
    + switching, with loops (no batteries)."""
    h = problem.step_s / 3600.0
    total, peak = 0.0, -np.inf
    # the balanced peak written out: the highest step's whole load over three phases
    level = max(sum(float(x) for x in problem.fixed_load_kw[t].ravel()) + sum(float(x) for x in
                                                                                  problem.switch_load_kw[t])
                for t in range(problem.n_steps)) / 3
    for t in range(problem.n_steps):
        per_feeder = [[float(problem.fixed_load_kw[t, f, k]) for k in range(3)] for f in range(problem.n_feeders)]
        for c, dev in enumerate(problem.switch_devices):
            per_feeder[dev.feeder][int(phase[t, c])] += float(problem.switch_load_kw[t, c])
        trafo = [sum(a[k] for a in per_feeder) for k in range(3)]
        for a in per_feeder:
            total += w.unbalance_per_kwh * sum(abs(x - sum(a) / 3) for x in a) * h
        total += w.transformer_unbalance_per_kwh * sum(abs(x - sum(trafo) / 3) for x in trafo) * h
        peak = max(peak, *trafo)
        total += w.peak_excess_per_kwh * sum(max(0.0, x - level) for x in trafo) * h
    total += w.peak_phase_per_kw * peak
    for c, dev in enumerate(problem.switch_devices):
        prev = int(dev.switch.phase_now)
        for t in range(problem.n_steps):
            total += (w.switch_per_operation + dev.switch.limits.cost_per_operation) * (int(phase[t, c]) != prev)
            prev = int(phase[t, c])
    return total


def two_feeders(seed: int, *, pess: bool = False) -> ControlProblem:
    rng = np.random.default_rng(seed)
    n_t = 3
    fixed = rng.uniform(0.0, 4.0, (n_t, 2, 3))
    fixed[:, 1, 0] += 6.0  # feeder 1 heavy on A, feeder 0 balanced-ish: the feeder and transformer terms disagree
    limits = SwitchLimits(min_dwell_s=900.0, max_operations_per_day=2)
    devices = tuple(SwitchDevice(id=f"c{i}", feeder=f, switch=SwitchState(phase_now=Phase(i % 3), limits=limits))
                    for i, f in enumerate([0, 0, 1]))
    units = ()
    pv = np.zeros((n_t, 0))
    if pess:
        units = (PessUnit(id="p0", feeder=0, params=PessParams(), connection=PessConnection.SINGLE_PHASE,
                          phase=Phase.B, e_now_kwh=5.0),
                 PessUnit(id="p1", feeder=1, params=PessParams(), connection=PessConnection.THREE_PHASE, e_now_kwh=5.0))
        pv = rng.uniform(0.0, 3.0, (n_t, 2))
    return ControlProblem(start_utc=datetime(2024, 1, 15, 10, tzinfo=UTC), step_s=STEP_S, fixed_load_kw=fixed,
                          switch_devices=devices, switch_load_kw=rng.uniform(0.5, 5.0, (n_t, 3)), pess_units=units,
                          pv_kw=pv)


WEIGHTS = [
    ControlWeights(unbalance_per_kwh=1.0, transformer_unbalance_per_kwh=0.0, peak_phase_per_kw=0.0,
                   switch_per_operation=0.1),
    ControlWeights(unbalance_per_kwh=0.0, transformer_unbalance_per_kwh=1.0, switch_per_operation=0.1),
    ControlWeights(unbalance_per_kwh=0.2, peak_phase_per_kw=1.0, switch_per_operation=0.1),
    ControlWeights(unbalance_per_kwh=0.5, transformer_unbalance_per_kwh=0.5, peak_phase_per_kw=0.3,
                   switch_per_operation=0.05),
    ControlWeights(unbalance_per_kwh=0.05, peak_excess_per_kwh=2.0, switch_per_operation=0.1),
]


@pytest.mark.parametrize(("seed", "w"), [(0, WEIGHTS[0]), (1, WEIGHTS[1]), (0, WEIGHTS[2]), (1, WEIGHTS[3]),
                                        (2, WEIGHTS[4])],
                         ids=["feeders", "transformer", "peak", "mixed", "shave"])
def test_the_full_milp_equals_brute_force_for_every_objective(seed: int, w: ControlWeights) -> None:
    problem = two_feeders(seed)
    best, best_phase = np.inf, None
    for seqs in itertools.product(itertools.product(range(3), repeat=problem.n_steps), repeat=problem.n_switch):
        phase = np.array(seqs).T
        prev = np.vstack([[int(d.switch.phase_now) for d in problem.switch_devices], phase[:-1]])
        if ((phase != prev).sum(axis=0) > 2).any():  # 2 operations a day; dwell 1 step
            continue
        cost = loop_cost(problem, phase, w)
        if cost < best:
            best, best_phase = cost, phase
    plan = solve(problem, weights=w, settings=EXACT)
    assert plan.status is PlanStatus.OPTIMAL
    assert plan.objective.total == pytest.approx(best, rel=1e-6, abs=1e-9)
    assert loop_cost(problem, plan.decisions.phase, w) == pytest.approx(plan.objective.total, rel=1e-9)
    assert best_phase is not None
    brute = Decisions(phase=best_phase, pess_phase=np.zeros((problem.n_steps, 0)), charge_kw=np.zeros((3, 0)),
                      discharge_kw=np.zeros((3, 0)), curtail_kw=np.zeros((3, 0)))
    assert evaluate(problem, brute, w).total == pytest.approx(best, rel=1e-12)
    # the LP bound recorded with every plan is a lower bound of the brute-force optimum
    assert plan.lp_bound is not None and plan.lp_bound <= best + 1e-9
    assert plan.bound_gap is not None and 0.0 <= plan.bound_gap <= 1.0 + 1e-9


def test_the_objectives_pick_different_plans() -> None:
    """The test above could pass with the new terms ignored if every weighting chose the same plan."""
    problem = two_feeders(0)
    plans = {i: solve(problem, weights=w, settings=EXACT).decisions.phase.tobytes() for i, w in enumerate(WEIGHTS)}
    assert len(set(plans.values())) > 1


@pytest.mark.parametrize("w", WEIGHTS[1:], ids=["transformer", "peak", "mixed", "shave"])
def test_the_milps_objective_is_its_plans_evaluation_with_batteries(w: ControlWeights) -> None:
    problem = two_feeders(3, pess=True)
    plan = solve(problem, weights=w, settings=EXACT)
    assert plan.status is PlanStatus.OPTIMAL and plan.solver_objective is not None
    assert plan.solver_objective == pytest.approx(plan.objective.total, rel=1e-6, abs=1e-7)
    assert (plan.decisions.charge_kw + plan.decisions.discharge_kw).sum() > 0  # the batteries take part


def test_the_objective_presets_set_only_the_unbalance_prices() -> None:
    base = ControlWeights(switch_per_operation=0.3, terminal_shortfall_per_kwh=0.7)
    for objective in Objective:
        w = objective_weights(objective, base)
        assert (w.switch_per_operation, w.terminal_shortfall_per_kwh) == (0.3, 0.7)
    assert objective_weights(Objective.P_UNB) == ControlWeights()  # the weights before issue 28
    assert ControllerSettings().weights == objective_weights(Objective.SHAVE)  # the controller's default
    assert objective_weights(Objective.SHAVE).peak_excess_per_kwh > 0
    assert objective_weights(Objective.TRANSFORMER).transformer_unbalance_per_kwh > 0
    assert objective_weights(Objective.PEAK).peak_phase_per_kw > 0


def test_the_cli_objective_reaches_the_run_folder(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from phasetwin.cli.main import app

    result = CliRunner().invoke(app, ["replay", "--start", "2024-01-15T17:00", "--end", "2024-01-15T19:00",
                                      "--tick", "300", "--pess", "0", "--objective", "combined", "--no-baseline",
                                      "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    weights = json.loads((tmp_path / "scenario.json").read_text())["controller"]["weights"]
    assert weights == objective_weights(Objective.COMBINED).model_dump()


@pytest.mark.parametrize("w", [
    ControlWeights(unbalance_per_kwh=0.0, peak_excess_per_kwh=2.0, switch_per_operation=0.01),
    ControlWeights(unbalance_per_kwh=0.0, peak_phase_per_kw=1.0, switch_per_operation=0.01),
], ids=["excess", "peak"])
def test_the_local_search_prices_the_peak_terms(w: ControlWeights) -> None:
    """λE or λM alone: the single-move search (no MILP, no batteries) must lower the term; a search blind to it
    sees only the switching price and moves nothing. Every move it makes must be one the brute-force cost (plain
    loops) confirms, and its end point a local optimum of that cost over single-device window moves."""
    from controllers.online.interlocks import sequence_ok, switch_interlocks
    from controllers.online.search import improve_phases
    from controllers.online.start import hold_decisions

    problem = two_feeders(2)
    hold = hold_decisions(problem)
    locks = switch_interlocks(problem)
    moved = improve_phases(problem, w, hold, locks, deadline=np.inf, timer=lambda: 0.0)
    before, after = evaluate(problem, hold, w), evaluate(problem, moved, w)
    assert after.total < before.total - 1e-9
    assert (after.excess < before.excess) if w.peak_excess_per_kwh else (after.peak < before.peak)
    # the plain-loop cost (written in this file) agrees with the evaluation the search is judged by
    end = loop_cost(problem, moved.phase, w)
    assert end == pytest.approx(after.total, rel=1e-9)
    n_t = problem.n_steps
    for c, lock in enumerate(locks):
        for phi in range(3):
            for t0 in range(n_t):
                for t1 in range(t0 + 1, n_t + 1):
                    trial = moved.phase.copy()
                    trial[t0:t1, c] = phi
                    if sequence_ok(lock, trial[:, c]):
                        assert loop_cost(problem, trial, w) >= end - 1e-9


def test_the_peak_objective_survives_pv_export() -> None:
    """Under PV export every transformer-phase load of the horizon is negative, and so is its peak: the peak
    variable bounded at 0 was hinted below its bound and HiGHS failed with an internal error (kError), the whole
    decision with it (seen on Liège June days). The MILP must solve and agree with the evaluation."""
    from dataclasses import replace

    problem = two_feeders(3, pess=True)
    problem = replace(problem, fixed_load_kw=problem.fixed_load_kw * 0.05, switch_load_kw=problem.switch_load_kw * 0.05,
                      pv_kw=problem.pv_kw + 3.0)
    w = objective_weights(Objective.PEAK)
    plan = solve(problem, weights=w, settings=EXACT)
    assert plan.objective.peak < 0  # the case itself: the peak is an export
    assert plan.status is PlanStatus.OPTIMAL and plan.solver_objective is not None
    assert plan.solver_objective == pytest.approx(plan.objective.total, rel=1e-6, abs=1e-7)
