"""The re-phasing branch and bound (rephase.bnb) against an independent brute force on Liège data.

Seven customers of Liège feeder 1 over two weeks: the brute force below places each customer's raw terminal
powers (the meter table, not the planner's option arrays) on the phases of every configuration and enumerates
all 8 748 plans. The Lagrangian bound must stay below every plan under any node and any dual weights, be exact
at a plan with its own signs, and the branch and bound must end on the brute-force optimum with an equal bound.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from controllers.planning.configurations import CONFIGURATIONS
from controllers.planning.rephase.bnb import branch_and_bound, lagrangian_bound, terminal_form
from controllers.planning.rephase.problem import FeederProblem, build_problem
from twin.errors import DataError
from twin.loaders import liege

try:
    LIEGE_FOLDER = liege.default_folder()
except DataError:  # the shared data folder is not part of the checkout
    LIEGE_FOLDER = None
needs_liege = pytest.mark.skipif(LIEGE_FOLDER is None, reason="../shared/data/liege_lv not found")

STEPS = np.arange(14 * 96)
"""Two weeks from 1 January."""
PICK = (13, 15, 12, 4, 9, 17, 16)
"""Feeder-1 customers (positions in the feeder's problem), among the biggest; 2 of them three-phase (3^5 · 6^2
plans)."""


@pytest.fixture(scope="module")
def case() -> tuple[FeederProblem, np.ndarray]:
    """The feeder problem of PICK alone, and the raw terminal powers [T, 7, 3] of those customers."""
    feeder = liege.load_feeder(LIEGE_FOLDER)
    data = liege.load_year(feeder, LIEGE_FOLDER)
    fp = build_problem(feeder, data, steps=STEPS).feeders[0]
    flat = np.concatenate([fp.offsets[c] + np.arange(len(fp.options[c])) for c in PICK])
    sizes = [len(fp.options[c]) for c in PICK]
    sub = FeederProblem(
        feeder=0, customer_ids=tuple(fp.customer_ids[c] for c in PICK),
        options=tuple(fp.options[c] for c in PICK), initial=fp.initial[list(PICK)],
        offsets=np.cumsum([0, *sizes[:-1]]), deviation_kw=fp.deviation_kw[flat],
        change_cost=fp.change_cost[flat], inverse_distance_per_km=fp.inverse_distance_per_km[list(PICK)],
        lambda_p=fp.lambda_p)
    raw = data.select(list(sub.customer_ids)).p_kw[STEPS]
    return sub, raw


def _brute_force(fp: FeederProblem, raw: np.ndarray) -> tuple[float, tuple[int, ...]]:
    """min over every plan of λP·Σ_t Σ_φ |load − mean| + change costs, from the raw terminal powers."""
    loads = []  # per customer, per option: [T, 3] phase loads
    for i, opts in enumerate(fp.options):
        per = []
        for k in opts:
            load = np.zeros((raw.shape[0], 3))
            for j, phase in enumerate(CONFIGURATIONS[k]):
                load[:, int(phase)] += raw[:, i, j]
            per.append(load)
        loads.append(np.stack(per))
    costs = [fp.change_cost[fp.offsets[i]:fp.offsets[i] + len(o)] for i, o in enumerate(fp.options)]
    # The first four customers outer, the other three as one batch of every combination.
    inner = list(itertools.product(*(range(len(o)) for o in fp.options[4:])))
    inner_load = sum(loads[4 + i][[c[i] for c in inner]] for i in range(3))  # [n_inner, T, 3]
    inner_cost = sum(costs[4 + i][[c[i] for c in inner]] for i in range(3))
    best, where = np.inf, ()
    for outer in itertools.product(*(range(len(o)) for o in fp.options[:4])):
        total = inner_load + sum(loads[i][k] for i, k in enumerate(outer))
        p_unb = np.abs(total - total.mean(axis=2, keepdims=True)).sum(axis=(1, 2))
        values = fp.lambda_p * p_unb + inner_cost + sum(costs[i][k] for i, k in enumerate(outer))
        k = int(np.argmin(values))
        if values[k] < best:
            best, where = float(values[k]), (*outer, *inner[k])
    return best, where


@pytest.fixture(scope="module")
def optimum(case: tuple[FeederProblem, np.ndarray]) -> tuple[float, tuple[int, ...]]:
    return _brute_force(*case)


@needs_liege
def test_terminal_form_reproduces_the_option_arrays(case: tuple[FeederProblem, np.ndarray]) -> None:
    fp, _ = case
    form = terminal_form(fp)
    rng = np.random.default_rng(2)
    choice = np.array([rng.integers(len(o)) for o in fp.options])
    one_hot = np.zeros(fp.n_options)
    one_hot[fp.flat(choice)] = 1.0
    np.testing.assert_allclose(form.deviation(one_hot), fp.deviation_of(choice), atol=1e-9)
    w = rng.uniform(-1, 1, size=(fp.n_steps, 3))
    np.testing.assert_allclose(form.weighted(w), np.einsum("otp,tp->o", fp.deviation_kw, w), rtol=1e-9,
                               atol=1e-6)


@needs_liege
def test_lagrangian_bound_is_below_every_completion_and_exact_at_a_plan(
        case: tuple[FeederProblem, np.ndarray]) -> None:
    fp, _ = case
    form = terminal_form(fp)
    rng = np.random.default_rng(4)
    for trial in range(6):
        fixed = np.full(fp.n_customers, -1, dtype=np.int64)
        for c in range(3):  # the first three fixed, four free (3^2·6^2 completions)
            fixed[c] = rng.integers(len(fp.options[c]))
        free = np.flatnonzero(fixed < 0)
        completions = []
        for combo in itertools.product(*(range(len(fp.options[c])) for c in free)):
            choice = fixed.copy()
            choice[free] = combo
            completions.append(fp.objective(choice))
        at = fixed.copy()
        at[free] = [rng.integers(len(fp.options[c])) for c in free]
        # Any weights in [-1, 1]: random, the signs of a random completion, and zero.
        for w in (rng.uniform(-1, 1, size=(fp.n_steps, 3)), np.sign(fp.deviation_of(at)),
                  np.zeros((fp.n_steps, 3))):
            bound, _ = lagrangian_bound(fp, form, fixed, w)
            assert bound <= min(completions) + 1e-9, trial
    choice = np.array([rng.integers(len(o)) for o in fp.options])
    bound, _ = lagrangian_bound(fp, form, choice, np.sign(fp.deviation_of(choice)))
    assert bound == pytest.approx(fp.objective(choice), rel=1e-12)


@needs_liege
def test_branch_and_bound_proves_the_brute_force_optimum(case: tuple[FeederProblem, np.ndarray],
                                                         optimum: tuple[float, tuple[int, ...]]) -> None:
    fp, _ = case
    best, where = optimum
    assert fp.objective(np.array(where)) == pytest.approx(best, rel=1e-9)  # the two evaluations agree
    result = branch_and_bound(fp, fp.initial, node_limit=2_000)
    assert result.complete
    assert result.objective == pytest.approx(best, rel=1e-9)
    assert result.lower_bound == pytest.approx(best, rel=1e-6)
    assert result.lower_bound <= result.objective + 1e-12


@needs_liege
def test_branch_and_bound_bound_is_valid_when_stopped_early(case: tuple[FeederProblem, np.ndarray],
                                                            optimum: tuple[float, tuple[int, ...]]) -> None:
    fp, _ = case
    best, _ = optimum
    for limit in (1, 3, 10):
        result = branch_and_bound(fp, fp.initial, node_limit=limit)
        assert result.lower_bound <= best + 1e-9 <= result.objective + 2e-9
        assert result.nodes <= limit + max(len(o) for o in fp.options)
