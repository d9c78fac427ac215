"""A short controlled replay with its reference run and report, shared by the figure and report tests."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from controllers.online.settings import ControllerSettings, Strategy
from devices.fleet import FleetSpec
from phasetwin.report.html import Report, write_report
from phasetwin.run.replay import replay
from phasetwin.run.result import RunResult
from phasetwin.run.scenario import Scenario

START, END = datetime(2024, 1, 15, 6, tzinfo=UTC), datetime(2024, 1, 15, 10, tzinfo=UTC)


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunResult, RunResult, Report]:
    out = tmp_path_factory.mktemp("figures") / "run"
    scenario = Scenario(fleet=FleetSpec(psd=10, pess=2), controller=ControllerSettings(strategy=Strategy.GREEDY),
                        start_utc=START, end_utc=END, out=out)
    controlled = replay(scenario)
    reference = replay(scenario.model_copy(update={
        "controller": ControllerSettings(strategy=Strategy.NONE), "out": out / "no-control"}))
    return controlled, reference, write_report(out)


