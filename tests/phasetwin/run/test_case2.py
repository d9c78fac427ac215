"""Paper 001 Case II on the IEEE European LV day (`phasetwin replay --scenario case2-ieee`): phase-A loads × 2.5
overload a cable at the initial PSD positions; with switching the twin's nonlinear power flow stays within the
thermal limits after the first control period, and without it it does not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from controllers.online.problem import ControlWeights
from controllers.online.settings import ControllerSettings, Strategy
from phasetwin.run.replay import replay
from phasetwin.run.result import RunResult
from phasetwin.run.scenario import Scenario, named_scenario
from twin.loaders.ieee_european_lv import load_feeder

FIRST_CONTROLLED_TICK = 15


def overloaded_ticks(run: RunResult) -> int:
    """Ticks, after the first control period, in which a line carries more than its rating (nonlinear flow)."""
    rating_ka = np.array([ln.max_i_ka for ln in load_feeder().lines])
    loading = run.recorder.i_max_ka[FIRST_CONTROLLED_TICK:] / rating_ka
    return int((loading.max(axis=1) > 1.0).sum())


def run_case2(tmp_path: Path, controller: ControllerSettings) -> RunResult:
    return replay(Scenario(**(named_scenario("case2-ieee") | {"controller": controller, "out": tmp_path})))


@pytest.mark.slow
def test_case2_without_switching_stays_overloaded(tmp_path: Path) -> None:
    run = run_case2(tmp_path, ControllerSettings(strategy=Strategy.NONE))
    assert overloaded_ticks(run) > 0


@pytest.mark.slow
def test_case2_rolling_milp_restores_feasibility(tmp_path: Path) -> None:
    run = run_case2(tmp_path, ControllerSettings(strategy=Strategy.ROLLING_MILP))
    assert overloaded_ticks(run) == 0
    assert run.summary.controller["switch_commands"] > 0


@pytest.mark.slow
def test_case2_ltupf_repair_alone_restores_feasibility(tmp_path: Path) -> None:
    """With no value on balance the MILP holds every PSD; only the LTUPF check (Algorithm 1) can move them."""
    controller = ControllerSettings(strategy=Strategy.ROLLING_MILP, weights=ControlWeights(unbalance_per_kwh=0.0))
    run = run_case2(tmp_path, controller)
    assert run.summary.controller["ltupf_repairs"] >= 1
    assert overloaded_ticks(run) == 0
