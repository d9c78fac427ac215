"""`phasetwin plan seasonal` end to end on its cheapest case: case 2 (ΔV alone), whose plan must reach the least
voltage drop of every scenario, found here from the full (unbalanced) currents of every radial topology."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from controllers.planning.seasonal.case import cigre_mv_seasonal
from controllers.planning.seasonal.decomposed import scenario_tables
from controllers.planning.seasonal.evaluation import original_plan, radial_topologies
from phasetwin.plan.commands import register


def test_case_two_plan_reaches_the_least_voltage_drop_of_every_scenario(tmp_path: Path) -> None:
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, ["seasonal", "--case", "case 2", "--swarm", "2", "--iterations", "1",
                                      "--node-limit", "20", "--no-check", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    plan = json.loads((tmp_path / "plan.json").read_text(encoding="utf-8"))
    assert (plan["case"], plan["method"]) == ("case 2", "exact")
    net = cigre_mv_seasonal()
    tops = radial_topologies(net)
    _, drop, _ = scenario_tables(net, tops, original_plan(net).scheme)  # per topology and scenario, all currents
    least = float((net.hours * drop.min(axis=0)).sum() / net.hours.sum())
    assert plan["dv_pu"] == pytest.approx(least, rel=1e-9)
    assert least < 0.9 * float((net.hours * drop[0]).sum() / net.hours.sum())  # reconfiguring pays: can fail
