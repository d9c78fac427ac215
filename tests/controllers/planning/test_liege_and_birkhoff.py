"""Acceptance checks on real data: a Liège day against the paper's MILP solved directly, the power-flow
check, and the Birkhoff planner against brute force and the nonlinear power flow."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from ortools.math_opt.python import mathopt
from support.liege_data import LIEGE_FOLDER, needs_liege

from controllers.planning.birkhoff.balancing import (
    PERMUTATIONS,
    brute_force,
    expected_loss_nonlinear_kw,
    loss_model,
    paper_matrix_number,
    solve_birkhoff,
)
from controllers.planning.birkhoff.case import cigre_case
from controllers.planning.configurations import CONFIGURATIONS, feasible_configurations
from controllers.planning.rephase.check import check_plan
from controllers.planning.rephase.planner import plan_rephase
from controllers.planning.rephase.problem import build_problem
from controllers.planning.rephase.report import p_unb_per_feeder_kw
from twin.loaders import liege
from twin.network import Feeder
from twin.phasing import PhaseMap
from twin.powerflow import Engine, create_powerflow


def _direct_milp(feeder: Feeder, p_kw: np.ndarray, *, lambda_p: float, lambda_psi: float, lambda_d: float) -> float:
    """Eqs. 6-11 written term by term with MathOpt's expression API, from the raw terminal data."""
    model = mathopt.Model()
    n_t = p_kw.shape[0]
    load = {(f, t, ph): 0.0 for f in feeder.feeder_ids() for t in range(n_t) for ph in range(3)}
    objective = 0.0
    for i, c in enumerate(feeder.customers):
        b = {k: model.add_binary_variable(name=f"B[{c.id},{k}]") for k in feasible_configurations(c.n_phases)}
        model.add_linear_constraint(sum(b.values()) == 1)  # eq. 6b (6c by construction)
        for k, var in b.items():
            if CONFIGURATIONS[k] != c.phases:  # eqs. 10-11
                objective += (lambda_psi + lambda_d / c.distance_km) * var
            for j, ph in enumerate(CONFIGURATIONS[k]):
                for t in range(n_t):
                    load[c.feeder, t, int(ph)] += float(p_kw[t, i, j]) * var  # eq. 8
    for f in feeder.feeder_ids():
        for t in range(n_t):
            mean = (load[f, t, 0] + load[f, t, 1] + load[f, t, 2]) / 3.0  # eq. 9
            for ph in range(3):
                # eq. 7: the three deviations sum to zero, so Σ|dev| = 2·Σ max(dev, 0) (half the rows).
                e = model.add_variable(lb=0.0)
                model.add_linear_constraint(e >= load[f, t, ph] - mean)
                objective += 2.0 * lambda_p * e
    model.minimize(objective)
    params = mathopt.SolveParameters(time_limit=timedelta(seconds=300), relative_gap_tolerance=1e-9)
    result = mathopt.solve(model, mathopt.SolverType.HIGHS, params=params)
    assert result.termination.reason == mathopt.TerminationReason.OPTIMAL
    return float(result.objective_value())


@needs_liege
@pytest.mark.slow
def test_a_liege_day_equals_the_direct_milp() -> None:
    """One day (96 quarter-hours): two days cost the direct MILP a minute of the suite for no extra coverage."""
    feeder = liege.load_feeder(LIEGE_FOLDER)
    data = liege.load_year(feeder, LIEGE_FOLDER)
    steps = np.arange(96)
    problem = build_problem(feeder, data, steps=steps)
    outcome = plan_rephase(problem)
    w = problem.weights
    assert w.lambda_p == pytest.approx(80 / (96 * 23))
    reference = _direct_milp(feeder, data.select([c.id for c in feeder.customers]).p_kw[steps],
                             lambda_p=w.lambda_p, lambda_psi=w.lambda_psi, lambda_d=w.lambda_d)
    assert outcome.objective == pytest.approx(reference, rel=1e-6)
    assert outcome.gap == pytest.approx(0.0, abs=1e-6)
    configs = problem.configurations(outcome.choices)
    p_unb = p_unb_per_feeder_kw(feeder, data, configs, steps)
    changed = [c for c in feeder.customers if configs[c.id] != c.phases]
    recomputed = w.lambda_p * p_unb.sum() + sum(w.lambda_psi + w.lambda_d / c.distance_km for c in changed)
    assert recomputed == pytest.approx(reference, rel=1e-9)


@needs_liege
def test_powerflow_check_line_losses_equal_pandapower() -> None:
    """The check's line-loss split R1·Σ|I_φ|² + (R0−R1)/3·|I_N|² equals pandapower's own line losses, and the
    plan 'keep everything' changes nothing."""
    feeder = liege.load_feeder(LIEGE_FOLDER)
    data = liege.load_year(feeder, LIEGE_FOLDER)
    step = 40 * 96 + 76  # an evening quarter-hour: loads on every phase
    check = check_plan(feeder, data, after={}, steps=np.array([step]), engine=Engine.PANDAPOWER)
    for b, a in zip(check.before, check.after, strict=True):
        assert np.array_equal(b.vm_max_pu, a.vm_max_pu) and b.line_loss_kwh == a.line_loss_kwh
    flow = create_powerflow(feeder, engine=Engine.PANDAPOWER)
    table = data.select([c.id for c in feeder.customers])
    mapping = PhaseMap.initial(feeder.customers)
    flow.solve(p_kw=mapping.to_phases(table.p_kw[[step]]), q_kvar=mapping.to_phases(table.q_kvar[[step]]))
    res = flow.net.res_line_3ph  # type: ignore[attr-defined]
    pandapower_kw = float((res.pl_a_mw + res.pl_b_mw + res.pl_c_mw).sum()) * 1e3
    ours_kw = sum(f.line_loss_kwh for f in check.before) / 0.25
    assert pandapower_kw > 0.1
    assert ours_kw == pytest.approx(pandapower_kw, rel=0.01)


@needs_liege
def test_powerflow_check_labels_each_feeder_by_its_customers() -> None:
    """Table III's feeder labels are the customers' (the data's feeder 0 has 19 customers on 34 lines, feeder 1
    4 on 8), not the radial tree's branch numbers, which run the other way on the Liège network: moving only a
    feeder-1 customer changes feeder 1's losses far more than feeder 0's (which move only through the shared
    transformer's voltage)."""
    feeder = liege.load_feeder(LIEGE_FOLDER)
    data = liege.load_year(feeder, LIEGE_FOLDER)
    mover = next(c for c in feeder.customers if c.feeder == 1 and c.n_phases == 1)
    other = next(ph for ph in CONFIGURATIONS if len(ph) == 1 and ph != mover.phases)
    check = check_plan(feeder, data, after={mover.id: other}, steps=np.arange(40 * 96, 41 * 96))
    by_label = {f.feeder: (b, f) for b, f in zip(check.before, check.after, strict=True)}
    change = {f: abs(b.line_loss_kwh - a.line_loss_kwh) / b.line_loss_kwh for f, (b, a) in by_label.items()}
    assert change[1] > 20 * change[0], change


def test_birkhoff_equals_brute_force_on_four_nodes() -> None:
    case = cigre_case().subset(4)
    model = loss_model(case)
    best, best_value = brute_force(model)
    outcome = solve_birkhoff(model)
    assert outcome.expected_loss_kw == pytest.approx(best_value, rel=1e-9)
    assert outcome.lower_bound_kw == pytest.approx(best_value, rel=1e-6)
    assert outcome.expected_loss_kw < outcome.initial_loss_kw
    assert model.value(best) == pytest.approx(best_value)


def test_birkhoff_reduction_is_confirmed_by_the_nonlinear_power_flow() -> None:
    case = cigre_case()
    outcome = solve_birkhoff(loss_model(case))
    initial = [PERMUTATIONS[0]] * len(case.feeder.customers)
    before = expected_loss_nonlinear_kw(case, initial)
    after = expected_loss_nonlinear_kw(case, outcome.configurations())
    linear_reduction = 1 - outcome.expected_loss_kw / outcome.initial_loss_kw
    assert after < before
    assert 1 - after / before == pytest.approx(linear_reduction, abs=0.05)
    assert outcome.initial_loss_kw == pytest.approx(before, rel=0.25)
    assert all(1 <= paper_matrix_number(c) <= 6 for c in outcome.configurations())
