"""STS siting: MILPs against brute-force enumeration on a four-bus feeder, HAI vs single level, eq. 7, IEEE-13 data.

    source 0 ── 1 (three-phase load, head branch) ── 2 (single-phase load, candidate)
                                                 └── 3 (single-phase load, candidate) [── PESS at 3]
"""

from __future__ import annotations

import json
from dataclasses import replace
from itertools import combinations, product
from pathlib import Path

import numpy as np
import pytest
from support.racing_clock import RacingClock

from controllers.planning.sts_siting.case import (
    Candidate,
    CandidateKind,
    CostParams,
    Operation,
    PessSpec,
    Scenario,
    SitingCase,
    SitingError,
    SitingNetwork,
)
from controllers.planning.sts_siting.evaluation import evaluate
from controllers.planning.sts_siting.ieee13 import (
    BUS_NAMES,
    PAPER_PESS_BUS,
    PAPER_STS_BUSES,
    depth_first_orders,
    ieee13_case,
    paper_map_orders,
    segment_impedance_ohm,
)
from controllers.planning.sts_siting.operation_milp import Objective, may_carry_sts, solve_operation
from controllers.planning.sts_siting.planner import (
    cheapest_start,
    hai_search,
    max_sites,
    no_worse_than_start,
    solve_brute_force,
    solve_counts,
    solve_hai,
    solve_single_level,
    with_sites,
)
from phasetwin.plan.siting.study import write_outputs

T = 3
PARAMS = CostParams(sts_unit_price=2000.0, communication_price=1000.0, unbalance_cost=2.0e5,
                    loss_price_per_kwh=0.5, maintenance_per_a_day=0.01, switching_cost=0.5)


def four_bus_feeder(*, with_pess: bool = False, heavy_c: float = 1.0) -> SitingCase:
    net = SitingNetwork(("src", "1", "2", "3"), np.array([-1, 0, 1, 1]),
                        np.array([[0, 0, 0], [0.05 + 0.03j] * 3, [0.2 + 0.08j] * 3, [0.3 + 0.1j] * 3]),
                        np.full(4, 0.23))
    fixed_p = np.zeros((T, 4, 3))
    fixed_q = np.zeros((T, 4, 3))
    fixed_p[:, 1, :] = [[10, 12, 14], [11, 9, 20], [8, 15, 9]]
    fixed_q[:, 1, :] = 0.3 * fixed_p[:, 1, :]
    p2 = np.zeros((T, 3))
    p2[:, 0] = [6, 3, 8]
    p3 = np.zeros((T, 3))
    p3[:, 2] = np.array([7, 9, 4]) * heavy_c
    cands = [Candidate(2, CandidateKind.LOAD, p2, 0.2 * p2, float(p2.max() / 0.23)),
             Candidate(3, CandidateKind.LOAD, p3, 0.2 * p3, float(p3.max() / 0.23))]
    pess = None
    if with_pess:
        pess = PessSpec(bus=3, pv_kw=np.array([0.0, 12.0, 5.0]), energy_kwh=10.0, e_min_kwh=1.0, e_initial_kwh=5.0,
                        charge_max_kw=5.0, discharge_max_kw=5.0, eta_charge=0.95, eta_discharge=0.95,
                        inverter_kva=14.0, home_phase=2)
    return SitingCase(network=net, fixed_p_kw=fixed_p, fixed_q_kvar=fixed_q, candidates=tuple(cands), pess=pess,
                      v_source_pu=1.0, v_min_pu=0.8, v_max_pu=1.1, head_branch=1, name="four-bus")


def enumerate_all(case: SitingCase, params: CostParams) -> tuple[float, tuple[int, ...]]:
    """Every site subset × every rotation sequence, priced by ``evaluate`` alone (no PESS)."""
    n = len(case.candidates)
    best = (np.inf, ())
    for k in range(n + 1):
        for sites in combinations(range(n), k):
            for rots in product(range(3), repeat=T * len(sites)):
                rotation = np.zeros((T, n), dtype=int)
                for j, i in enumerate(sites):
                    rotation[:, i] = rots[j * T:(j + 1) * T]
                op = Operation(sites, rotation, np.zeros(T, dtype=int), np.zeros(T), np.zeros(T), np.zeros(T))
                ev = evaluate(case, op, params)
                if ev.total < best[0] - 1e-12:
                    best = (ev.total, sites)
    return best


def test_single_level_equals_brute_force() -> None:
    case = four_bus_feeder()
    best_cost, best_sites = enumerate_all(case, PARAMS)
    res = solve_operation(case, PARAMS, scenario=Scenario.S3, objective=Objective.COST, time_limit_s=30)
    ev = evaluate(case, res.operation, PARAMS)
    assert res.optimal
    assert ev.total == pytest.approx(res.objective, rel=1e-7)  # the MILP prices what evaluate prices
    assert ev.total == pytest.approx(best_cost, rel=1e-6)
    assert res.operation.sites == best_sites
    assert best_sites  # the case is built so that an STS pays: the test could fail on an empty plan


def test_lower_level_min_kappa_equals_brute_force() -> None:
    case = four_bus_feeder()
    sites = (0, 1)
    best = np.inf
    for rots in product(range(3), repeat=2 * T):
        rotation = np.array(rots).reshape(2, T).T
        op = Operation(sites, rotation, np.zeros(T, dtype=int), np.zeros(T), np.zeros(T), np.zeros(T))
        best = min(best, float(evaluate(case, op, PARAMS).kappa_lin.sum()))
    res = solve_operation(case, PARAMS, scenario=Scenario.S3, objective=Objective.KAPPA, sites=sites)
    assert float(evaluate(case, res.operation, PARAMS).kappa_lin.sum()) == pytest.approx(best, abs=1e-6)


def test_single_level_never_worse_than_hai() -> None:
    for case in (four_bus_feeder(), four_bus_feeder(with_pess=True), four_bus_feeder(heavy_c=2.5)):
        for scenario in (Scenario.S3, Scenario.S4):
            single = solve_single_level(case, PARAMS, scenario=scenario, time_limit_s=30)
            hai = solve_hai(case, PARAMS, scenario=scenario, time_limit_s=30)
            assert single.optimal
            assert single.cost <= hai.cost * (1 + 1e-6) + 1e-9


def test_hai_with_the_costs_in_its_lower_level_reaches_the_single_level_optimum() -> None:
    """With the lower level carrying S_IN (count fixed), G(n) is the best cost with n STS; on the four-bus cases
    the iteration visits the optimal count and so lands on the single level's cost, while the κ-only lower level
    is never cheaper."""
    for case in (four_bus_feeder(with_pess=True), four_bus_feeder(with_pess=True, heavy_c=2.5)):
        for scenario in (Scenario.S3, Scenario.S4):
            single = solve_single_level(case, PARAMS, scenario=scenario, time_limit_s=30)
            hai = solve_hai(case, PARAMS, scenario=scenario, time_limit_s=30)
            literal = solve_hai(case, PARAMS, scenario=scenario, time_limit_s=30, lower=Objective.KAPPA)
            assert hai.cost == pytest.approx(single.cost, rel=1e-5, abs=1e-6)
            assert hai.cost <= literal.cost + 1e-6


def test_sts_with_pess_needs_no_more_sts_than_sts_alone() -> None:
    case = four_bus_feeder(with_pess=True, heavy_c=2.5)
    s3 = solve_single_level(case, PARAMS, scenario=Scenario.S3, time_limit_s=30)
    s4 = solve_single_level(case, PARAMS, scenario=Scenario.S4, time_limit_s=30)
    assert len(s3.operation.sites) >= 1
    assert len(s4.operation.sites) <= len(s3.operation.sites)
    assert s4.cost <= s3.cost + 1e-9  # S4 can always leave the battery idle
    e = s4.evaluation.energy_kwh
    assert e[-1] == pytest.approx(e[0], abs=1e-6)  # eq. 36
    assert e.min() >= 1.0 - 1e-6


def test_current_limit_of_eq_7_excludes_a_site() -> None:
    case = four_bus_feeder()
    limited = PARAMS.model_copy(update={"sts_rating_a": case.candidates[1].current_a - 1.0})
    res = solve_operation(case, limited, scenario=Scenario.S3, objective=Objective.COST)
    assert 1 not in res.operation.sites
    assert np.all(res.operation.rotation[:, 1] == 0)


def test_ieee13_data() -> None:
    case = ieee13_case()
    total_p = case.fixed_p_kw.max(axis=0).sum() + sum(c.p_kw.max(axis=0).sum() for c in case.candidates)
    # Data-sheet totals: spot 1158 + 973 + 1135 kW and distributed 200 kW (every shape peaks at 1.0).
    assert total_p == pytest.approx(1158 + 973 + 1135 + 200, abs=1.0)
    assert len(BUS_NAMES) == 13
    assert [case.candidates[i].bus + 1 for i in range(6)] == [5, 6, 9, 10, 12, 11]
    z = segment_impedance_ohm(2000.0, "601")
    assert z[0] == pytest.approx((0.3465 + 1.0179j) * 2000 / 5280)
    assert case.pess is not None and case.pess.pv_kw.max() == pytest.approx(1200.0, rel=0.01)


def test_pess_access_is_a_site_only_where_the_pess_governs() -> None:
    """S3 is "STS only": the PESS stays on its home phase, so its access cannot carry an STS; in S4 it can."""
    case = ieee13_case()
    pess = next(i for i, c in enumerate(case.candidates) if c.kind is CandidateKind.PESS)
    params = CostParams()
    assert [may_carry_sts(c, params, Scenario.S3) for c in case.candidates] == [True] * 5 + [False]
    assert all(may_carry_sts(c, params, Scenario.S4) for c in case.candidates)
    assert not any(may_carry_sts(c, params, s) for c in case.candidates for s in (Scenario.S1, Scenario.S2))
    assert (max_sites(case, params, Scenario.S3), max_sites(case, params, Scenario.S4)) == (5, 6)
    with pytest.raises(SitingError, match="cannot carry an STS in S3"):
        solve_operation(case, params, scenario=Scenario.S3, objective=Objective.COST, sites=(pess,))


def test_bus_map_puts_every_paper_site_on_a_candidate() -> None:
    """Of the feeder's depth-first numberings, only ours and its 611 ⇄ 652 twin put the paper's S3 and S4 sites on
    single-phase loads and the PESS; the planner's candidates are exactly those buses."""
    orders = depth_first_orders()
    assert len(orders) == len(set(orders)) == 72  # 632: 3! child orders, 645: 1, 671: 3!, 684: 2! → 6·6·2
    assert all(len(o) == 13 and set(o) == set(BUS_NAMES) for o in orders)
    assert paper_map_orders() == sorted([BUS_NAMES, (*BUS_NAMES[:8], BUS_NAMES[9], BUS_NAMES[8], *BUS_NAMES[10:])])
    case = ieee13_case()
    candidate_buses = {c.bus + 1 for c in case.candidates}
    assert set(PAPER_STS_BUSES) <= candidate_buses
    assert case.pess is not None and case.pess.bus + 1 == PAPER_PESS_BUS


def test_plan_files_written(tmp_path: Path) -> None:
    case = four_bus_feeder(with_pess=True)
    results = [solve_single_level(case, PARAMS, scenario=s, time_limit_s=30) for s in (Scenario.S1, Scenario.S4)]
    write_outputs(tmp_path, case, results, results[-1])
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["scenario"] == "S4" and plan["cost_per_day"] == pytest.approx(results[-1].cost)
    rows = (tmp_path / "schedule.csv").read_text().splitlines()
    assert rows[0] == "time_utc,device_id,action,phase,battery_kw,curtailment"
    assert sum(r.split(",")[1] == "pess-3" for r in rows) == T
    assert rows[1].startswith("2024-07-01T00:00:00Z,")
    assert "<svg" in (tmp_path / "head_currents.svg").read_text()[:400]
    # one replay folder per result; replay.json only for a case the twin has a feeder for
    assert (tmp_path / "S1" / "devices.csv").read_text().splitlines() == ["customer_id,kind,access", "3,pess,single"]
    assert (tmp_path / "S4" / "schedule.csv").is_file() and not (tmp_path / "S4" / "replay.json").exists()


@pytest.mark.parametrize("low", range(7))
def test_hai_search_reaches_the_minimum_of_a_convex_count_curve(low: int) -> None:
    """On a convex G(n) a discrete stationary point is the minimum; checked against every count."""
    for curvature in (0.3, 1.0, 40.0):
        costs = [100.0 + curvature * (n - low) ** 2 for n in range(7)]
        assert hai_search(lambda n, c=costs: c[n], 6) == min(range(7), key=costs.__getitem__)


def test_count_curve_minimum_is_the_brute_force_optimum() -> None:
    """G(n) over every count (HAI's lower level, count fixed) bottoms out at the enumerated optimum."""
    case = four_bus_feeder(heavy_c=2.5)
    best_cost, best_sites = enumerate_all(case, PARAMS)
    curve = solve_counts(case, PARAMS, scenario=Scenario.S3, counts=range(3), time_limit_s=30)
    assert all(r.optimal for r in curve.values())
    n_best = min(curve, key=lambda n: curve[n].cost)
    assert curve[n_best].cost == pytest.approx(best_cost, rel=1e-6)
    assert n_best == len(best_sites)
    assert [len(r.operation.sites) for r in curve.values()] == [0, 1, 2]


def test_sts_price_shifts_the_count_curve_exactly() -> None:
    """With the count fixed, the unit price only adds n · annuity · π: the sensitivity's shortcut for Table 4."""
    case = four_bus_feeder(with_pess=True, heavy_c=2.5)
    dearer = PARAMS.model_copy(update={"sts_unit_price": PARAMS.sts_unit_price + 5000.0})
    base = solve_counts(case, PARAMS, scenario=Scenario.S4, counts=range(1, 3), time_limit_s=30)
    moved = solve_counts(case, dearer, scenario=Scenario.S4, counts=range(1, 3), time_limit_s=30)
    for n in (1, 2):
        assert moved[n].cost == pytest.approx(base[n].cost + n * 5000.0 * PARAMS.annuity_per_day, rel=1e-6)


def test_with_sites_adds_idle_sites_and_sends_dropped_loads_home() -> None:
    case = four_bus_feeder()
    rotation = np.array([[1, 2], [2, 0], [0, 1]])
    op = Operation((0, 1), rotation, np.zeros(T, dtype=int), np.zeros(T), np.zeros(T), np.zeros(T))
    one = with_sites(case, PARAMS, Scenario.S3, op, 1)
    assert one is not None and one.sites == (0,)
    assert one.rotation[:, 0].tolist() == [1, 2, 0] and one.rotation[:, 1].tolist() == [0, 0, 0]
    none = Operation((), np.zeros((T, 2), dtype=int), np.zeros(T, dtype=int), np.zeros(T), np.zeros(T), np.zeros(T))
    two = with_sites(case, PARAMS, Scenario.S3, none, 2)
    assert two is not None and two.sites == (0, 1) and not two.rotation.any()
    assert with_sites(case, PARAMS, Scenario.S3, none, 3) is None


def test_single_level_on_the_ieee13_evening_peak_equals_enumeration_over_sites() -> None:
    """Independent check on the paper's feeder: hours 17–18, the STS rating (eq. 7) at 70 A so that three loads
    (buses 6, 10, 12) may carry one; every subset of them with its best operation (fixed-site MILPs) against the
    single-level MILP. At 0.02 M¥ an STS and α 1 M¥ all three are sited, so the check is not on an empty plan."""
    day = ieee13_case()
    hours = slice(17, 19)
    assert day.pess is not None
    case = replace(day, fixed_p_kw=day.fixed_p_kw[hours], fixed_q_kvar=day.fixed_q_kvar[hours],
                   candidates=tuple(replace(c, p_kw=c.p_kw[hours], q_kvar=c.q_kvar[hours]) for c in day.candidates),
                   pess=replace(day.pess, pv_kw=day.pess.pv_kw[hours]))
    params = CostParams(sts_unit_price=0.02e6, sts_rating_a=70.0, unbalance_cost=1.0e6)
    assert max_sites(case, params, Scenario.S3) == 3
    single = solve_single_level(case, params, scenario=Scenario.S3, time_limit_s=60)
    every = solve_brute_force(case, params, scenario=Scenario.S3, time_limit_s=60)
    assert single.optimal and every.optimal
    assert single.cost == pytest.approx(every.cost, rel=1e-5)
    assert single.operation.sites == every.operation.sites and len(every.operation.sites) == 3


def test_a_solve_starts_from_the_cheapest_known_plan_and_keeps_it_over_a_dearer_find() -> None:
    case = four_bus_feeder(heavy_c=2.5)
    best = solve_single_level(case, PARAMS, scenario=Scenario.S3, time_limit_s=30).operation
    home = Operation(best.sites, np.zeros_like(best.rotation), best.pess_phase, best.pv_used_kw, best.charge_kw,
                     best.discharge_kw)
    assert evaluate(case, best, PARAMS).total < evaluate(case, home, PARAMS).total  # the sited loads do move
    assert cheapest_start(case, PARAMS, [home, None, best]) is best
    assert cheapest_start(case, PARAMS, [None]) is None
    assert no_worse_than_start(case, PARAMS, home, True, best) == (best, False)
    assert no_worse_than_start(case, PARAMS, best, True, home) == (best, True)


def test_pess_reactive_power_of_eqs_28_29_is_priced_as_the_milp_prices_it_and_kept_in_the_inverter() -> None:
    """S4 with Q_CC^max > 0: the MILP's objective is ``evaluate``'s total of its plan (Q on the PESS's phase), Q
    stays within its bounds and the inverter's circle, and the plan is no dearer than at unity power factor."""
    unity = four_bus_feeder(with_pess=True, heavy_c=2.5)
    assert unity.pess is not None
    case = replace(unity, pess=replace(unity.pess, q_max_kvar=8.0))
    res = solve_operation(case, PARAMS, scenario=Scenario.S4, objective=Objective.COST, time_limit_s=30)
    op = res.operation
    assert res.optimal and op.pess_q_kvar is not None and np.abs(op.pess_q_kvar).max() > 1e-3
    assert res.objective == pytest.approx(evaluate(case, op, PARAMS).total, rel=1e-6)
    assert np.abs(op.pess_q_kvar).max() <= 8.0 + 1e-6
    p_net = op.pv_used_kw + op.discharge_kw - op.charge_kw
    assert case.pess is not None and np.all(np.hypot(p_net, op.pess_q_kvar) <= case.pess.inverter_kva + 1e-6)
    flat = solve_operation(unity, PARAMS, scenario=Scenario.S4, objective=Objective.COST, time_limit_s=30)
    assert flat.operation.pess_q_kvar is None
    assert res.objective < flat.objective - 1e-6
    assert solve_operation(case, PARAMS, scenario=Scenario.S3, objective=Objective.COST).operation.pess_q_kvar is None


def test_unbalance_is_priced_on_the_branches_the_sts_can_change_and_the_milp_prices_it_as_evaluate() -> None:
    """The governed branches of IEEE 13 (each feeds a candidate and another load); on two evening hours the
    MILP's objective over them equals ``evaluate``'s total of its plan, and the head-only case prices less κ."""
    day = ieee13_case()
    names = day.network.bus_names
    assert [(names[day.network.parent[e]], names[e]) for e in day.unbalance_branches] == [
        ("650", "632"), ("632", "645"), ("632", "671"), ("671", "684"), ("671", "692")]
    assert ieee13_case(branch_unbalance=False).kappa_branches == (day.head_branch,)
    hours = slice(17, 19)
    assert day.pess is not None
    case = replace(day, fixed_p_kw=day.fixed_p_kw[hours], fixed_q_kvar=day.fixed_q_kvar[hours],
                   candidates=tuple(replace(c, p_kw=c.p_kw[hours], q_kvar=c.q_kvar[hours]) for c in day.candidates),
                   pess=replace(day.pess, pv_kw=day.pess.pv_kw[hours]))
    params = CostParams(unbalance_cost=1.0e6)
    res = solve_operation(case, params, scenario=Scenario.S3, objective=Objective.COST, time_limit_s=60)
    assert res.optimal and res.operation.sites
    ev = evaluate(case, res.operation, params)
    assert res.objective == pytest.approx(ev.total, rel=1e-6)
    head = evaluate(replace(case, unbalance_branches=()), res.operation, params)
    assert not np.allclose(head.kappa_lin, ev.kappa_lin)


def test_branch_reference_normalises_each_branch_by_its_own_current_and_the_milp_prices_it_as_evaluate() -> None:
    """κ per eq. 9 on each branch's own current: a branch feeding one single-phase load has κ = 2 whatever its
    phase; the MILP's objective with that reference and a scaled α equals ``evaluate``; the scale multiplies S_cub."""
    case = replace(four_bus_feeder(), unbalance_branches=(1, 2, 3), kappa_reference="branch")
    params = PARAMS.model_copy(update={"unbalance_scale": 2.5})
    res = solve_operation(case, params, scenario=Scenario.S3, objective=Objective.COST, time_limit_s=30)
    assert res.optimal
    ev = evaluate(case, res.operation, params)
    assert res.objective == pytest.approx(ev.total, rel=1e-6)
    lone = evaluate(replace(case, unbalance_branches=(2,)), res.operation, params)
    assert np.allclose(lone.kappa_lin, 2.0)
    unscaled = evaluate(case, res.operation, PARAMS.model_copy(update={"unbalance_scale": 1.0}))
    assert ev.s_cub == pytest.approx(2.5 * unscaled.s_cub, rel=1e-12)
    head = evaluate(replace(case, kappa_reference="head"), res.operation, params)
    assert not np.allclose(head.kappa_lin, ev.kappa_lin)


def test_planners_do_not_depend_on_the_wall_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The single level, HAI and the count curve on IEEE 13 at two steps a day, each MILP cut at 3 nodes (so the
    node limit binds), give the same plans and figures twice in a row and under a clock that jumps an hour at every
    reading; no solve is handed a wall-clock limit (HiGHS's own clock is not the patched one)."""
    from controllers.planning.sts_siting import operation_milp, planner

    case = ieee13_case(hours=2)
    params = CostParams()
    seen: list[object] = []
    solve = operation_milp.solve_quietly

    def spy(*args: object, **kwargs: object) -> object:
        seen.append(kwargs["params"])
        return solve(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(operation_milp, "solve_quietly", spy)

    def run() -> list[tuple[object, ...]]:
        s3 = solve_single_level(case, params, scenario=Scenario.S3, node_limit=3)
        s4 = solve_hai(case, params, scenario=Scenario.S4, node_limit=3, hints={3: s3.operation})
        curve = solve_counts(case, params, scenario=Scenario.S4, counts=range(3), node_limit=3)
        out = []
        for r in (s3, s4, *curve.values()):
            op = r.operation
            out.append((r.method, op.sites, op.rotation.tolist(), op.pess_phase.tolist(), op.charge_kw.tolist(),
                        op.discharge_kw.tolist(), op.pv_used_kw.tolist(), r.cost, r.optimal, r.bound, r.iterations))
        return out

    first = run()
    assert first == run()
    assert not all(row[-3] for row in first)  # some solve stopped on its node limit: the budget binds
    clock = RacingClock()
    monkeypatch.setattr(planner, "time", clock)
    monkeypatch.setattr(operation_milp, "time", clock, raising=False)
    assert run() == first
    assert clock.now > 0  # the clock was read: the patch reached the planner
    assert seen and all(p.time_limit is None and p.node_limit == 3 for p in seen)  # type: ignore[attr-defined]
