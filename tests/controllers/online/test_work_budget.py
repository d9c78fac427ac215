"""Reproducible decisions: with the work budget a solve depends on the problem alone, not on the clock or the
machine's load; in real time the wall-clock limit still cuts a solve short. And the shifted previous plan is
kept only while the descent cannot improve on it, at most ``reuse_periods`` periods in a row."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from controllers.online.decision import MEASURED_COLUMNS
from controllers.online.evaluate import evaluate
from controllers.online.problem import ControlProblem, ControlWeights, Plan
from controllers.online.settings import ControllerSettings
from controllers.online.solve import continue_search, solve
from controllers.online.start import shift_previous
from devices.fleet import FleetSpec
from phasetwin.run.replay import replay
from phasetwin.run.scenario import Scenario
from tests.controllers.online.test_milp import START, STEP_S, random_pess_problem

W = ControlWeights(unbalance_per_kwh=1.0)
DEFERRED = ControllerSettings().solver.model_copy(update={"wall_clock": False})
WORK = DEFERRED.model_copy(update={"defer_search": False})
"""The controller's solver settings with the whole search in ``solve`` (the controller defers it)."""


def jumping_timer(step_s: float) -> Callable[[], float]:
    """A clock that advances ``step_s`` at every reading: any wall-clock limit strikes at once."""
    now = [0.0]

    def timer() -> float:
        now[0] += step_s
        return now[0]

    return timer


@pytest.fixture
def cpu_hog() -> Iterator[None]:
    """One busy process per core beside the test (started here, killed by pid at the end)."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        yield
    finally:
        for h in hogs:
            h.kill()
            h.wait()


def same_plan(a: Plan, b: Plan) -> bool:
    return all(np.array_equal(getattr(a.decisions, f), getattr(b.decisions, f))
               for f in ("phase", "pess_phase", "charge_kw", "discharge_kw", "curtail_kw")) and a.reason == b.reason


@pytest.mark.parametrize("seed", [1, 4])
def test_the_work_budget_ignores_the_clock(seed: int) -> None:
    problem = random_pess_problem(seed, n_switch=8, n_steps=8)
    plain = solve(problem, weights=W, settings=WORK)
    # a clock that passes 10 s per reading would end a wall-clock solve before its first MILP
    jumping = solve(problem, weights=W, settings=WORK, timer=jumping_timer(10.0))
    assert same_plan(plain, jumping)
    cut = solve(problem, weights=W, settings=WORK.model_copy(update={"wall_clock": True}),
                timer=jumping_timer(10.0))
    assert "no time left" in cut.reason or "time limit" in cut.reason
    assert cut.objective.total >= plain.objective.total - 1e-9


def test_the_work_budget_gives_the_same_plan_beside_a_cpu_hog(cpu_hog: None) -> None:
    problem = random_pess_problem(2, n_switch=8, n_steps=8)
    first = solve(problem, weights=W, settings=WORK)
    again = solve(problem, weights=W, settings=WORK)
    assert same_plan(first, again)


@pytest.mark.parametrize("seed", range(4))
def test_neighbourhoods_solved_ahead_on_threads_give_the_plan_of_one_at_a_time(seed: int) -> None:
    """Without the local search the neighbourhoods improve the hold plan often, so solves started ahead from an
    incumbent that then changes are common: each must be solved again, or the plans would differ."""
    problem = random_pess_problem(seed, n_switch=12, n_steps=8)
    settings = WORK.model_copy(update={"local_search": False, "neighbourhood_passes": 3, "neighbourhood_size": 2})
    one = solve(problem, weights=W, settings=settings.model_copy(update={"neighbourhood_threads": 1}))
    assert "fix-and-optimise" in one.reason and "+ descent" not in one.reason
    for threads in (2, 3):
        ahead = solve(problem, weights=W, settings=settings.model_copy(update={"neighbourhood_threads": threads}))
        assert same_plan(one, ahead), threads


def rolled(problem_start: datetime, seed: int, k: int) -> ControlProblem:
    """The problem of ``seed`` started ``k`` steps later, its data rolled by k steps (the same future seen
    again one period on, as with a perfect forecast)."""
    base = random_pess_problem(seed, n_switch=8, n_steps=8)
    return replace(base, start_utc=problem_start + timedelta(seconds=k * STEP_S),
                   fixed_load_kw=np.roll(base.fixed_load_kw, -k, axis=0),
                   switch_load_kw=np.roll(base.switch_load_kw, -k, axis=0), pv_kw=np.roll(base.pv_kw, -k, axis=0))


def test_a_kept_previous_plan_is_a_descent_optimum_and_a_search_follows_after_reuse_periods() -> None:
    settings = WORK.model_copy(update={"reuse_periods": 2, "reuse_gain": 1.0})  # keep whenever allowed
    plans = []
    previous = None
    for k in range(4):
        problem = rolled(START, 5, k)
        plan = solve(problem, weights=W, settings=settings, previous=previous)
        if previous is not None:
            shifted = shift_previous(previous, problem)
            assert shifted is not None
            # never worse than following the previous plan
            assert plan.objective.total <= evaluate(problem, shifted, W).total + 1e-9
        plans.append(plan)
        previous = plan
    assert [p.reused for p in plans] == [0, 1, 2, 0]
    assert "previous plan kept" in plans[1].reason and "previous plan kept" not in plans[3].reason
    never = WORK.model_copy(update={"reuse_periods": 0})
    again = solve(rolled(START, 5, 1), weights=W, settings=never, previous=plans[0])
    assert again.reused == 0 and "previous plan kept" not in again.reason


def test_a_previous_plan_that_the_descent_improves_much_is_not_kept() -> None:
    strict = WORK.model_copy(update={"reuse_gain": 0.0})
    first = solve(rolled(START, 5, 0), weights=W, settings=strict)
    second = solve(rolled(START, 5, 1), weights=W, settings=strict, previous=first)
    assert second.reused == 0


@pytest.mark.parametrize("seed", [5, 6])
def test_a_deferred_search_ends_at_the_plan_of_the_whole_solve(seed: int) -> None:
    """``solve`` with ``defer_search`` returns after one descent round from the previous plan; ``continue_search``
    then does the rest of the same work: the plan of the solve that never deferred (the reuse test forced to
    search). The first period, with no previous plan, searches at once."""
    searching = {"reuse_gain": 0.0}
    first = rolled(START, seed, 0)
    whole = solve(first, weights=W, settings=WORK.model_copy(update=searching))
    at_once = solve(first, weights=W, settings=DEFERRED.model_copy(update=searching))
    assert at_once.deferred is None and same_plan(whole, at_once)
    problem = rolled(START, seed, 1)
    whole = solve(problem, weights=W, settings=WORK.model_copy(update=searching), previous=whole)
    fast = solve(problem, weights=W, settings=DEFERRED.model_copy(update=searching), previous=at_once)
    assert fast.deferred is not None and "search deferred" in fast.reason
    assert "fix-and-optimise" in whole.reason and "fix-and-optimise" not in fast.reason
    searched = continue_search(problem, fast, weights=W, settings=DEFERRED.model_copy(update=searching))
    assert searched.deferred is None and "fix-and-optimise" in searched.reason
    assert searched.objective.total <= fast.objective.total + 1e-12
    for field in ("phase", "pess_phase", "charge_kw", "discharge_kw", "curtail_kw"):
        np.testing.assert_array_equal(getattr(searched.decisions, field), getattr(whole.decisions, field))


def tables(folder: Path) -> dict[str, pd.DataFrame]:
    out = {}
    for path in sorted(folder.glob("*.parquet")):
        # measured times of each decision: a property of the machine, not of the replay
        out[path.name] = pd.read_parquet(path).drop(columns=list(MEASURED_COLUMNS), errors="ignore")
    return out


@pytest.mark.slow
def test_a_controlled_replay_records_the_same_tables_alone_and_beside_a_cpu_hog(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    scenario = Scenario(fleet=FleetSpec(psd=10, pess=2), controller=ControllerSettings(),
                        end_utc=datetime.fromisoformat("2024-01-15T05:00:00+00:00"))
    alone = replay(scenario.model_copy(update={"out": tmp_path / "alone"}))
    request.getfixturevalue("cpu_hog")
    loaded = replay(scenario.model_copy(update={"out": tmp_path / "loaded"}))
    assert alone.summary.controller["decisions"] == loaded.summary.controller["decisions"] > 10
    a, b = tables(tmp_path / "alone"), tables(tmp_path / "loaded")
    assert a.keys() == b.keys() and "controller.parquet" in a and "acks.parquet" in a
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name], check_exact=True, obj=name)


def test_the_command_line_and_studies_start_from_the_controllers_default_solver() -> None:
    from pathlib import Path

    from controllers.online.settings import ControllerSettings, ForecastKind, Strategy, default_solver
    from devices.fleet import PessAccess
    from streams.meters.data import PowerUnit
    from twin.powerflow import Engine

    assert default_solver() == ControllerSettings().solver
    assert default_solver(time_limit_s=0.2).model_dump() == ControllerSettings().solver.model_dump() | {
        "time_limit_s": 0.2}
    from phasetwin.cli.main import _scenario

    scenario = _scenario(feeder="ieee-european-lv", data=None, unit=PowerUnit.KW, naive_utc=False, start=None,
                         end=None, tick=60, engine=Engine.PGM, psd=10, sts=0, pess=2, pess_access=PessAccess.SWITCHABLE,
                         devices=None, controller=Strategy.ROLLING_MILP, forecast=ForecastKind.PERFECT,
                         time_limit=0.3, out=Path("unused"))
    assert scenario.controller.solver == default_solver(time_limit_s=0.3)
