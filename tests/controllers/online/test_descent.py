"""The descent stops as soon as a local search moves no phase: another round would solve the battery LP for the
phases the last one saw and search from the same plan, so it could find nothing. Checked against the descent that
ran that round (the loop before the early stop, kept here as the reference) and by running that round."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from controllers.online import improve
from controllers.online.evaluate import evaluate, violations
from controllers.online.improve import DESCENT_ROUNDS, descend
from controllers.online.incumbent import BETTER, Budget, Incumbent
from controllers.online.interlocks import switch_interlocks
from controllers.online.problem import ControlProblem, ControlWeights, Decisions
from controllers.online.search import improve_phases
from controllers.online.settings import ControllerSettings
from controllers.online.start import hold_decisions
from tests.controllers.online.test_milp import random_pess_problem

W = ControlWeights(unbalance_per_kwh=1.0, peak_excess_per_kwh=0.5)
SETTINGS = ControllerSettings().solver.model_copy(update={"wall_clock": False})


def _problem(seed: int) -> ControlProblem:
    return random_pess_problem(seed, n_switch=12, n_steps=12)


def _budget() -> Budget:
    return Budget(math.inf, time.perf_counter, 0.0, wall_clock=False)


def _descend(seed: int, start: Decisions | None = None, rounds: int = DESCENT_ROUNDS) -> tuple[Incumbent, bool]:
    problem = _problem(seed)
    best = Incumbent()
    out = descend(problem, weights=W, settings=SETTINGS, locks=switch_interlocks(problem),
                  start=start if start is not None else hold_decisions(problem), source="test", best=best,
                  budget=_budget(),
                  constant_phases=False, rounds=rounds)
    return best, out.converged


@pytest.mark.parametrize("seed", range(6))
def test_a_round_after_the_descent_stopped_finds_nothing(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    lps: list[int] = []
    schedule = improve._battery_schedule

    def counted(*args: object, **kwargs: object) -> object:
        lps.append(1)
        return schedule(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(improve, "_battery_schedule", counted)
    best, converged = _descend(seed)
    assert converged and best.objective is not None and best.decisions is not None
    # the round the descent skipped: battery LP for its phases, then the local search
    again, _ = _descend(seed, start=best.decisions, rounds=1)
    assert again.objective is not None
    assert again.objective.total >= best.objective.total - 1e-9 * max(1.0, abs(best.objective.total))
    assert len(lps) <= DESCENT_ROUNDS + 1


def _reference(seed: int) -> Incumbent:
    """The descent before the early stop: every round runs the battery LP and the local search until a whole round
    improves nothing."""
    problem = _problem(seed)
    best, locks, budget = Incumbent(), switch_interlocks(problem), _budget()
    current = hold_decisions(problem)
    assert not violations(problem, current)
    best.offer(problem, W, current, "test")
    total = evaluate(problem, current, W).total
    for _ in range(DESCENT_ROUNDS):
        before = total
        batteries = improve._battery_schedule(problem, weights=W, settings=SETTINGS, d=current, budget=budget)
        if (batteries is not None and not violations(problem, batteries)
                and (t := evaluate(problem, batteries, W).total) < total):
            current, total = batteries, t
            best.offer(problem, W, current, "test + descent")
        moved = improve_phases(problem, W, current, locks, deadline=budget.deadline, timer=budget.timer,
                               constant_phases=False, max_moves=SETTINGS.local_search_moves)
        if (t := evaluate(problem, moved, W).total) < total:
            current, total = moved, t
            best.offer(problem, W, current, "test + descent")
        if not total < before - BETTER * max(1.0, abs(before)):
            break
    return best


@pytest.mark.parametrize("seed", range(6))
def test_the_descent_ends_at_the_plan_of_the_descent_that_ran_every_round(seed: int) -> None:
    best, _ = _descend(seed)
    reference = _reference(seed)
    assert best.decisions is not None and reference.decisions is not None
    for field in ("phase", "pess_phase", "charge_kw", "discharge_kw", "curtail_kw"):
        np.testing.assert_array_equal(getattr(best.decisions, field), getattr(reference.decisions, field))


def _pass(seed: int, neighbourhood_max: int | None) -> tuple[str, Incumbent, Incumbent]:
    """One fix-and-optimise pass from the plan of the descent from holding, with ``neighbourhood_max``."""
    problem = _problem(seed)
    start, _ = _descend(seed)
    assert start.decisions is not None
    best = Incumbent()
    best.offer(problem, W, start.decisions, "descent")
    settings = SETTINGS.model_copy(update={"neighbourhood_max": neighbourhood_max, "neighbourhood_passes": 1})
    reason = improve.fix_and_optimise(problem, weights=W, settings=settings, locks=switch_interlocks(problem),
                                      best=best, budget=_budget(), constant_phases=False)
    return reason, start, best


def test_neighbourhood_max_cuts_a_pass_to_its_first_customer_neighbourhoods_and_the_sts_one() -> None:
    everything, start, _ = _pass(0, None)
    n_all = int(everything.split(", ")[1].split()[0])
    assert n_all >= 4  # 12 customers in neighbourhoods of 3, and the STS one
    for n in (1, 2):
        reason, _, best = _pass(0, n)
        assert reason.endswith(f"{n + 1} neighbourhood MILPs")  # the random_pess_problem has one STS
        assert best.objective is not None and start.objective is not None
        assert best.objective.total <= start.objective.total
