"""Runs shorter than one control period (issue 29, item 3): the HIL user's first smoke test. Every controller
under every forecast runs, decides nothing and says so (the perfect forecast once crashed on its empty data)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from controllers.online.settings import ControllerSettings, ForecastKind, Strategy
from devices.fleet import FleetSpec
from phasetwin.cli.main import app
from phasetwin.run.replay import replay
from phasetwin.run.scenario import Scenario

START = datetime(2024, 1, 15, 0, 0, tzinfo=UTC)  # the start of the data: no history for a forecast either


@pytest.mark.parametrize("forecast", list(ForecastKind))
@pytest.mark.parametrize("strategy", [s for s in Strategy if s is not Strategy.NONE])
def test_a_run_shorter_than_a_control_period_decides_nothing_and_says_so(
        strategy: Strategy, forecast: ForecastKind, tmp_path: Path) -> None:
    scenario = Scenario(start_utc=START, end_utc=START.replace(minute=5), fleet=FleetSpec(psd=2),
                        controller=ControllerSettings(strategy=strategy, forecast=forecast), out=tmp_path)
    summary = replay(scenario).summary
    assert summary.ticks == 5
    assert summary.controller["decisions"] == 0 and summary.controller["commands_sent"] == 0
    assert "shorter than one control period (900 s)" in summary.controller["note"]


def test_the_cli_prints_the_note(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["replay", "--end", "2024-01-15T00:05", "--controller", "rolling-milp",
                                      "--psd", "2", "--pess", "0", "--out", str(tmp_path), "--no-baseline"])
    assert result.exit_code == 0, result.output
    assert "the controller decided nothing" in " ".join(result.output.split())
    assert "note" in json.loads((tmp_path / "summary.json").read_text())["controller"]


def test_a_run_of_a_whole_period_has_no_note(tmp_path: Path) -> None:
    scenario = Scenario(start_utc=START, end_utc=START.replace(minute=30), fleet=FleetSpec(psd=2),
                        controller=ControllerSettings(strategy=Strategy.GREEDY), out=tmp_path)
    assert "note" not in replay(scenario).summary.controller
