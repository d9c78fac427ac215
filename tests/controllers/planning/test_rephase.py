"""The re-phasing planner against independent computations (twin.metrics, brute force, a direct MILP)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from controllers.errors import PlanningError
from controllers.planning.configurations import CONFIGURATIONS, feasible_configurations
from controllers.planning.plan_file import apply_plan, plan_changes, read_plan, read_plan_file, write_plan
from controllers.planning.rephase.milp import Clusters, build_master, option_relabelling
from controllers.planning.rephase.planner import PlannerSettings, plan_rephase
from controllers.planning.rephase.problem import RephaseWeights, build_problem
from controllers.planning.rephase.report import p_unb_per_feeder_kw
from controllers.planning.rephase.search import exhaustive, local_search
from streams.meters.table import MeterTable
from twin.network import Feeder
from twin.phase import Phase, parse_connection


def _objective_by_metrics(feeder: Feeder, data: MeterTable, configs: dict[str, tuple[Phase, ...]],
                          weights: RephaseWeights) -> float:
    """Eq. 6a computed through twin.metrics, sharing nothing with the planner's arrays."""
    p_unb = p_unb_per_feeder_kw(feeder, data, configs).sum()
    cost = sum(weights.lambda_psi + weights.lambda_d / c.distance_km for c in feeder.customers
               if tuple(configs[c.id]) != c.phases)
    return float(weights.lambda_p * p_unb + cost)


def _brute_force(feeder: Feeder, data: MeterTable, weights: RephaseWeights) -> float:
    options = [[CONFIGURATIONS[k] for k in feasible_configurations(c.n_phases)] for c in feeder.customers]
    return min(_objective_by_metrics(feeder, data, dict(zip([c.id for c in feeder.customers], combo, strict=True)),
                                     weights) for combo in itertools.product(*options))


@pytest.fixture(scope="module")
def weights() -> RephaseWeights:
    # Larger unbalance weight than the paper's so that changes pay off on 48 steps.
    return RephaseWeights(lambda_p=0.01, lambda_psi=0.05, lambda_d=0.01)


def test_objective_equals_twin_metrics(two_feeder_network: Feeder, two_feeder_data: MeterTable,
                                       weights: RephaseWeights) -> None:
    problem = build_problem(two_feeder_network, two_feeder_data, weights=weights)
    rng = np.random.default_rng(3)
    for _ in range(5):
        choices = [np.array([rng.integers(len(o)) for o in fp.options]) for fp in problem.feeders]
        configs = problem.configurations(choices)
        assert problem.parts(choices).objective == pytest.approx(
            _objective_by_metrics(two_feeder_network, two_feeder_data, configs, weights), rel=1e-12)


@pytest.mark.parametrize("mode", ["exhaustive", "direct", "branch-and-bound", "compressed", "compressed-symmetric"])
def test_planner_finds_the_brute_force_optimum(two_feeder_network: Feeder, two_feeder_data: MeterTable,
                                               weights: RephaseWeights, mode: str) -> None:
    problem = build_problem(two_feeder_network, two_feeder_data, weights=weights)
    settings = {
        "exhaustive": PlannerSettings(time_limit_s=30),
        "direct": PlannerSettings(time_limit_s=30, exhaustive_limit=0),
        "branch-and-bound": PlannerSettings(time_limit_s=30, exhaustive_limit=0, exact_max_steps=0,
                                            node_limit=500),
        "compressed": PlannerSettings(time_limit_s=30, exhaustive_limit=0, exact_max_steps=0, n_clusters=6,
                                      long_method="outer-approximation"),
        "compressed-symmetric": PlannerSettings(time_limit_s=30, exhaustive_limit=0, exact_max_steps=0,
                                                n_clusters=6, symmetric=True, long_method="outer-approximation"),
    }[mode]
    outcome = plan_rephase(problem, settings)
    best = _brute_force(two_feeder_network, two_feeder_data, weights)
    assert outcome.objective == pytest.approx(best, rel=1e-9)
    assert outcome.lower_bound <= outcome.objective + 1e-9
    assert outcome.lower_bound == pytest.approx(best, rel=1e-6)
    configs = problem.configurations(outcome.choices)
    assert _objective_by_metrics(two_feeder_network, two_feeder_data, configs, weights) == pytest.approx(best)


def test_compressed_master_is_a_lower_bound_everywhere(two_feeder_network: Feeder, two_feeder_data: MeterTable,
                                                       weights: RephaseWeights) -> None:
    """For random clusters and cuts, the master's value at any choice never exceeds the true objective, and the
    cut built at a choice is exact there."""
    fp = build_problem(two_feeder_network, two_feeder_data, weights=weights).feeders[0]
    rng = np.random.default_rng(11)
    clusters = Clusters(np.unique(rng.integers(0, 5, fp.n_steps), return_inverse=True)[1].reshape(-1))
    at = np.array([rng.integers(len(o)) for o in fp.options])
    master = build_master(fp, clusters, [(fp.deviation_of(at) > 0).astype(np.int8)])
    assert master.value(at) == pytest.approx(fp.objective(at), rel=1e-12)
    for _ in range(30):
        choice = np.array([rng.integers(len(o)) for o in fp.options])
        assert master.value(choice) <= fp.objective(choice) + 1e-12
    out, _ = master.solve(time_limit_s=10)
    assert out.bound is not None and out.bound <= exhaustive(fp)[1] + 1e-9


def test_symmetry_broken_master_has_the_plain_optimum(two_feeder_network: Feeder, two_feeder_data: MeterTable,
                                                      weights: RephaseWeights) -> None:
    """The exact master (one step per cluster) in the symmetry-broken form returns the brute-force optimum as a
    real plan (relabelled back, with its change costs), with the same bound as the plain form; the relabelling
    maps are permutations of each customer's options."""
    fp = build_problem(two_feeder_network, two_feeder_data, weights=weights).feeders[0]
    maps = option_relabelling(fp)
    assert all(sorted(m) == list(range(fp.n_options)) for m in maps)
    best_choice, best = exhaustive(fp)
    plain, _ = build_master(fp, Clusters.each_step(fp.n_steps)).solve(time_limit_s=20, relative_gap=1e-9)
    master = build_master(fp, Clusters.each_step(fp.n_steps), symmetric=True)
    assert master.canonical is not None
    out, found = master.solve(time_limit_s=20, hint=best_choice, relative_gap=1e-9)
    assert found is not None and fp.objective(found) == pytest.approx(best, rel=1e-9)
    assert out.bound == pytest.approx(best, rel=1e-6) and plain.bound == pytest.approx(best, rel=1e-6)


def test_local_search_never_worsens(two_feeder_network: Feeder, two_feeder_data: MeterTable,
                                    weights: RephaseWeights) -> None:
    fp = build_problem(two_feeder_network, two_feeder_data, weights=weights).feeders[0]
    rng = np.random.default_rng(5)
    for _ in range(5):
        start = np.array([rng.integers(len(o)) for o in fp.options])
        assert fp.objective(local_search(fp, start)) <= fp.objective(start) + 1e-12


def test_plan_file_round_trip_and_apply(tmp_path: Path, two_feeder_network: Feeder) -> None:
    initial = {c.id: c.phases for c in two_feeder_network.customers}
    after = dict(initial, c1=parse_connection("C"), c3=parse_connection("ABC"))
    path = write_plan(tmp_path / "plan.json", feeder="tiny", configurations=after, initial=initial)
    assert read_plan(path) == after
    assert read_plan_file(path).initial["c3"] == "CAB"
    assert plan_changes(initial, after) == [("c1", "A", "C"), ("c3", "CAB", "ABC")]
    rephased = apply_plan(two_feeder_network, read_plan(path))
    assert rephased.customer("c1").connection == "C"
    assert rephased.customer("c3").connection == "ABC"
    assert rephased.customer("c2") == two_feeder_network.customer("c2")


def test_plan_errors_are_named(tmp_path: Path, two_feeder_network: Feeder) -> None:
    expected = r"customer 'zz' is not in feeder 'tiny'; customer 'c1' has 1 phase\(s\) but the plan gives 'AB'"
    with pytest.raises(PlanningError, match=expected):
        apply_plan(two_feeder_network, {"c1": parse_connection("AB"), "zz": parse_connection("A")})
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "phasetwin-rephase-plan/1", "feeder": "tiny", "configurations": {"c1": "AX"}}')
    with pytest.raises(PlanningError, match=r"configurations.c1: phase connection 'AX' has unknown phase"):
        read_plan(bad)
