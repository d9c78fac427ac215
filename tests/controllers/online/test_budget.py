"""The switching budget (issue 28) is a hard constraint of the plan: a rolling loop of decisions over random
forecasts and budgets never switches a device more often per UTC day, or sooner after its last switch, than the
budget allows. The state between periods (operations used today, time since the last switch) is kept here with
plain datetime arithmetic, and the realised switches are checked with loops: nothing is shared with
``controllers.online.interlocks``."""

from __future__ import annotations

import itertools
import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controllers.online.problem import ControlProblem, ControlWeights, SwitchDevice, SwitchState
from controllers.online.settings import ControllerSettings, Strategy, SwitchingBudget, default_solver
from controllers.online.solve import continue_search, solve
from devices.fleet import FleetSpec
from devices.limits import SwitchLimits, psd_limits
from phasetwin.run.replay import replay
from phasetwin.run.scenario import Scenario
from twin.phase import Phase

STEP_S = 900.0
SOLVER = default_solver(wall_clock=False)
# a switch pays after 0.2 kWh of deviation: the controller wants to switch often, the budget must stop it
EAGER = ControlWeights(unbalance_per_kwh=0.05, switch_per_operation=0.01)


def test_the_budget_tightens_the_device_limits_and_never_loosens_them() -> None:
    device = SwitchLimits(max_operations_per_day=6, min_dwell_s=600.0)
    assert SwitchingBudget().limits(device) is device
    tight = SwitchingBudget(ops_per_day=2, min_dwell_s=3600.0).limits(device)
    assert (tight.max_operations_per_day, tight.min_dwell_s) == (2, 3600.0)
    loose = SwitchingBudget(ops_per_day=20, min_dwell_s=60.0).limits(device)
    assert (loose.max_operations_per_day, loose.min_dwell_s) == (6, 600.0)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), n_switch=st.integers(1, 3), ops=st.integers(0, 4),
       dwell_steps=st.sampled_from([1, 2, 4]), start_step=st.integers(80, 95), periods=st.integers(6, 14))
def test_a_rolling_loop_never_exceeds_the_budget(seed: int, n_switch: int, ops: int, dwell_steps: int,
                                                 start_step: int, periods: int) -> None:
    rng = np.random.default_rng(seed)
    budget = SwitchingBudget(ops_per_day=ops, min_dwell_s=dwell_steps * STEP_S)
    limits = budget.limits(psd_limits())
    horizon = 8
    total = periods + horizon
    # unbalanced, fast-changing loads: fixed load on a random phase, switchable loads that jump every step
    fixed = rng.uniform(0.0, 8.0, size=(total, 1, 3))
    movable = rng.uniform(0.5, 6.0, size=(total, n_switch))
    start = datetime(2024, 3, 1, tzinfo=UTC) + timedelta(seconds=start_step * STEP_S)  # crosses midnight
    phase = [Phase.A] * n_switch
    switched_at: list[list[datetime]] = [[] for _ in range(n_switch)]
    previous = None
    for k in range(periods):
        now = start + timedelta(seconds=k * STEP_S)
        states = []
        for c in range(n_switch):
            used = sum(1 for t in switched_at[c] if t.date() == now.date())
            since = (now - switched_at[c][-1]).total_seconds() if switched_at[c] else math.inf
            states.append(SwitchState(phase_now=phase[c], limits=limits, ops_left_today=max(0, ops - used),
                                      dwell_remaining_s=max(0.0, limits.min_dwell_s - since)))
        problem = ControlProblem(
            start_utc=now, step_s=STEP_S, fixed_load_kw=fixed[k:k + horizon],
            switch_devices=tuple(SwitchDevice(id=f"psd-{c}", feeder=0, switch=states[c]) for c in range(n_switch)),
            switch_load_kw=movable[k:k + horizon])
        plan = solve(problem, weights=EAGER, settings=SOLVER, previous=previous)
        # as the controller: the commands from the plan, the deferred search then warm-starts the next period
        previous = continue_search(problem, plan, weights=EAGER, settings=SOLVER)
        for c in range(n_switch):
            target = Phase(int(plan.decisions.phase[0, c]))
            if target != phase[c]:
                switched_at[c].append(now)
                phase[c] = target
    for c in range(n_switch):
        days: dict[object, int] = {}
        for t in switched_at[c]:
            days[t.date()] = days.get(t.date(), 0) + 1
        assert all(n <= ops for n in days.values()), (c, days, ops)
        gaps = [(b - a).total_seconds() for a, b in zip(switched_at[c], switched_at[c][1:], strict=False)]
        assert all(g >= dwell_steps * STEP_S - 1e-6 for g in gaps), (c, gaps, dwell_steps)


def test_the_budget_binds_where_the_device_limits_alone_would_switch_more() -> None:
    """The property above can fail: without the budget the same loop switches more than once a day."""
    rng = np.random.default_rng(3)
    fixed = rng.uniform(0.0, 8.0, size=(24, 1, 3))
    movable = rng.uniform(0.5, 6.0, size=(24, 2))
    start = datetime(2024, 3, 1, 10, tzinfo=UTC)
    counts = {}
    for name, budget in (("device", SwitchingBudget()), ("budget", SwitchingBudget(ops_per_day=1))):
        limits, phase, n_ops, previous = budget.limits(psd_limits()), [Phase.A, Phase.A], [0, 0], None
        last: list[datetime | None] = [None, None]
        for k in range(16):
            now = start + timedelta(seconds=k * STEP_S)
            states = [SwitchState(phase_now=phase[c], limits=limits, ops_left_today=max(0, limits.max_operations_per_day
                                                                                        - n_ops[c]),
                                  dwell_remaining_s=0.0 if last[c] is None else
                                  max(0.0, limits.min_dwell_s - (now - last[c]).total_seconds()))  # type: ignore[operator]
                      for c in range(2)]
            problem = ControlProblem(start_utc=now, step_s=STEP_S, fixed_load_kw=fixed[k:k + 8],
                                     switch_devices=tuple(SwitchDevice(id=f"psd-{c}", feeder=0, switch=states[c])
                                                          for c in range(2)),
                                     switch_load_kw=movable[k:k + 8])
            plan = solve(problem, weights=EAGER, settings=SOLVER, previous=previous)
            previous = continue_search(problem, plan, weights=EAGER, settings=SOLVER)
            for c in range(2):
                target = Phase(int(plan.decisions.phase[0, c]))
                if target != phase[c]:
                    phase[c], n_ops[c], last[c] = target, n_ops[c] + 1, now
        counts[name] = max(n_ops)
    assert counts["device"] > 1 and counts["budget"] == 1, counts


def _switch_times(folder: Path) -> dict[str, list[pd.Timestamp]]:
    """When each device changed phase, from the recorded device states (not the devices' counters)."""
    states = pd.read_parquet(folder / "devices.parquet").sort_values("time_utc")
    out: dict[str, list[pd.Timestamp]] = {}
    for device_id, rows in states.groupby("device_id"):
        phase = rows["phase"].ffill()
        out[str(device_id)] = list(rows["time_utc"][phase.ne(phase.shift()) & phase.shift().notna()])
    return out


def test_a_replay_keeps_the_budget_that_its_controller_would_exceed(tmp_path: Path) -> None:
    """IEEE European LV 2024-01-15 12:00-20:00 UTC at 300 s ticks, 10 PSDs, a cheap switch (λΨ 0.01): free, some
    PSD switches 3 times or within 2 h; with a budget of 2 a day and a 2 h dwell none does."""
    times = {}
    for name, budget in (("free", SwitchingBudget()), ("budget", SwitchingBudget(ops_per_day=2, min_dwell_s=7200))):
        scenario = Scenario(
            fleet=FleetSpec(psd=10), start_utc=datetime(2024, 1, 15, 12, tzinfo=UTC),
            end_utc=datetime(2024, 1, 15, 20, tzinfo=UTC), tick_s=300, out=tmp_path / name,
            controller=ControllerSettings(strategy=Strategy.ROLLING_MILP, budget=budget, weights=EAGER))
        times[name] = _switch_times(replay(scenario).folder)

    def worst(t: dict[str, list[pd.Timestamp]]) -> tuple[int, float]:
        gaps = [(b - a).total_seconds() for v in t.values() for a, b in itertools.pairwise(v)]
        return max(len(v) for v in t.values()), min(gaps, default=math.inf)

    free_ops, free_gap = worst(times["free"])
    assert free_ops > 2 or free_gap < 7200
    ops_max, gap_min = worst(times["budget"])
    assert ops_max <= 2 and gap_min >= 7200 and ops_max > 0


def test_the_cli_budget_reaches_the_plan_and_the_run_folder(tmp_path: Path) -> None:
    """``--ops-per-day 0`` on 2024-01-15 14:00-20:00 UTC at 300 s (4 PSD operations without it, default weights):
    no operation, and the budget recorded in scenario.json."""
    from typer.testing import CliRunner

    from phasetwin.cli.main import app

    result = CliRunner().invoke(app, ["replay", "--start", "2024-01-15T14:00", "--end", "2024-01-15T20:00",
                                      "--tick", "300", "--pess", "0", "--ops-per-day", "0", "--min-dwell", "1800",
                                      "--no-baseline", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    scenario = json.loads((tmp_path / "scenario.json").read_text())
    assert scenario["controller"]["budget"] == {"ops_per_day": 0, "min_dwell_s": 1800.0}
    assert all(not v for v in _switch_times(tmp_path).values())
