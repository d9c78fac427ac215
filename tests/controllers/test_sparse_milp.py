"""The two ways to HiGHS (``Backend``) against each other and against brute force; ``PersistentLp`` against a fresh
solve of every model it is given."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from controllers.sparse_milp import Backend, Outcome, PersistentLp, SparseModel, solve, solve_highspy


def knapsack(seed: int, *, n: int = 10) -> tuple[SparseModel, np.ndarray, np.ndarray, np.ndarray]:
    """min −v·x + 0.3·Σy s.t. W x + y_r + 0.5 y_r ≤ cap_r (rows 0–2; the y term entered twice), y ≥ 2 − …, x binary,
    y ∈ [0, 10]; returned with the data for a brute force."""
    rng = np.random.default_rng(seed)
    sm = SparseModel()
    x = sm.add_vars(n, lb=0.0, ub=1.0, integer=True)
    y = sm.add_vars(3, lb=0.0, ub=10.0)
    weights = rng.uniform(0.0, 2.0, (3, n))
    cap = rng.uniform(4.0, 8.0, 3)
    rows = sm.add_rows(3, ub=cap)
    sm.add_terms(rows[:, None], x[None, :], weights)
    sm.add_terms(rows, y, 1.0)
    sm.add_terms(rows, y, 0.5)
    floor = sm.add_rows(3, lb=0.5)
    sm.add_terms(floor, y, 1.0)
    values = rng.uniform(0.0, 1.0, n)
    sm.add_objective(x, -values)
    sm.add_objective(y, 0.3)
    sm.offset = 1.25
    return sm, weights, cap, values


def brute_force(weights: np.ndarray, cap: np.ndarray, values: np.ndarray) -> float:
    """The knapsack's optimum by enumeration: y at its floor 0.5 (it only costs), so W x ≤ cap − 0.75."""
    best = np.inf
    for bits in itertools.product((0.0, 1.0), repeat=values.size):
        xs = np.array(bits)
        if np.all(weights @ xs <= cap - 0.75 + 1e-9):
            best = min(best, -float(values @ xs) + 0.3 * 1.5 + 1.25)
    return best


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_highspy_and_mathopt_agree_with_brute_force(seed: int) -> None:
    sm, weights, cap, values = knapsack(seed)
    expected = brute_force(weights, cap, values)
    outs = {backend: solve(sm, time_limit_s=None, threads=1, backend=backend) for backend in Backend}
    for backend, out in outs.items():
        assert out.outcome is Outcome.OPTIMAL, backend
        assert out.values is not None
        assert out.objective == pytest.approx(expected, abs=1e-7), backend
        assert sm.objective_of(out.values) == pytest.approx(expected, abs=1e-7), backend
        assert out.bound == pytest.approx(expected, abs=1e-6), backend


def test_highspy_keeps_a_hinted_optimum_when_the_node_limit_stops_it_at_once() -> None:
    """With the optimum as MIP start and one node, HiGHS has that incumbent at least."""
    sm, weights, cap, values = knapsack(3, n=14)
    best = solve(sm, time_limit_s=None, threads=1, backend=Backend.HIGHSPY)
    assert best.values is not None
    hinted = solve(
        sm, time_limit_s=None, threads=1, backend=Backend.HIGHSPY, hint=best.values, node_limit=1, lean_root=True
    )
    assert hinted.objective == pytest.approx(brute_force(weights, cap, values), abs=1e-7)


def test_highspy_reports_an_infeasible_model() -> None:
    sm = SparseModel()
    x = sm.add_vars(2, lb=0.0, ub=1.0, integer=True)
    row = sm.add_rows(1, lb=3.0)
    sm.add_terms(row, x, 1.0)
    out = solve(sm, time_limit_s=None, backend=Backend.HIGHSPY)
    assert out.outcome is Outcome.INFEASIBLE
    assert out.values is None


def transport_lp(seed: int, *, n: int = 6) -> SparseModel:
    """A small transportation LP whose supplies, demands, costs and coefficients all depend on ``seed``, on one
    pattern (n sources × n sinks)."""
    rng = np.random.default_rng(seed)
    sm = SparseModel()
    flow = sm.add_vars((n, n), lb=0.0, ub=rng.uniform(3.0, 6.0, (n, n)))
    supply = sm.add_rows(n, ub=rng.uniform(8.0, 12.0, n))
    sm.add_terms(supply[:, None], flow, 1.0)
    demand = sm.add_rows(n, lb=rng.uniform(4.0, 7.0, n))
    sm.add_terms(demand[None, :], flow, rng.uniform(0.8, 1.2, (n, n)))
    sm.add_objective(flow, rng.uniform(1.0, 5.0, (n, n)))
    sm.offset = float(rng.uniform(-1.0, 1.0))
    return sm


def test_persistent_lp_gives_what_a_fresh_solve_gives_period_after_period() -> None:
    persistent = PersistentLp()
    models = [transport_lp(seed) for seed in range(6)]
    other = SparseModel()  # another pattern in between: passed afresh
    v = other.add_vars(2, lb=1.0, ub=4.0)
    other.add_objective(v, np.array([2.0, -1.0]))
    sequence = [*models[:3], other, *models[3:], models[0]]
    for sm in sequence:
        warm = persistent.solve(sm.to_csr())
        fresh = solve_highspy(sm.to_csr(), time_limit_s=None, threads=1)
        assert warm.outcome is Outcome.OPTIMAL
        assert warm.objective == pytest.approx(fresh.objective, rel=1e-9)
        assert warm.values is not None
        assert sm.objective_of(warm.values) == pytest.approx(fresh.objective, rel=1e-9)
    # all but the first and the two around the other pattern started from the last basis
    assert persistent.warm_solves == len(sequence) - 3


def test_persistent_lp_answers_the_same_to_the_same_sequence() -> None:
    """Deterministic: two fresh PersistentLp fed the same models in the same order give identical answers."""
    runs = []
    for _ in range(2):
        persistent = PersistentLp()
        runs.append([persistent.solve(transport_lp(seed).to_csr()) for seed in (4, 1, 5, 1)])
    for a, b in zip(*runs, strict=True):
        assert a.objective == b.objective
        assert a.values is not None and b.values is not None
        np.testing.assert_array_equal(a.values, b.values)


@pytest.mark.parametrize("seed", range(4))
def test_sparse_model_arrays_are_numpys_broadcast(seed: int) -> None:
    """``add_vars``/``add_rows``/``add_terms``/``add_objective`` store what ``np.broadcast_arrays`` of their arguments
    flattens to (scalars, rows against columns, equal shapes), and the ids are copies: changing the caller's id array
    afterwards changes nothing in the model."""
    rng = np.random.default_rng(seed)
    n, m = int(rng.integers(1, 5)), int(rng.integers(1, 5))
    sm = SparseModel()
    lb = rng.uniform(-1.0, 0.0, (n, 1))
    x = sm.add_vars((n, m), lb=lb, ub=2.0, integer=bool(seed % 2))
    rows = sm.add_rows(m, lb=rng.uniform(-3.0, 0.0, m))
    coefs = rng.uniform(-1.0, 1.0, (n, m))
    cols = np.array(x, copy=True)
    sm.add_terms(rows[None, :], cols, coefs)
    sm.add_terms(rows, np.int32(0), 0.5)
    sm.add_objective(cols[:, 0], rng.uniform(0.0, 1.0, n))
    cols[:] = -7  # the model keeps the ids it was given
    assert np.array_equal(sm.lb[0], np.broadcast_to(lb, (n, m)).ravel())
    assert np.array_equal(sm.ub[0], np.full(n * m, 2.0)) and sm.integer[0].all() == bool(seed % 2)
    assert np.array_equal(sm.row_ub[0], np.full(m, np.inf))
    r, c, v = (a.ravel() for a in np.broadcast_arrays(rows[None, :], x, coefs))
    assert np.array_equal(sm.rows[0], r) and np.array_equal(sm.cols[0], c) and np.array_equal(sm.coefs[0], v)
    assert sm.rows[0].dtype == sm.cols[0].dtype == np.int64 and sm.coefs[0].dtype == float
    assert np.array_equal(sm.rows[1], rows) and np.array_equal(sm.cols[1], np.zeros(m)) and (sm.coefs[1] == 0.5).all()
    assert np.array_equal(sm.obj_cols[0], x[:, 0])
