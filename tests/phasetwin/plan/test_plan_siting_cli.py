"""The two plan commands register on a Typer app and reject bad options with status 2."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from phasetwin.plan.commands import register


def plan_app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def test_commands_registered() -> None:
    result = CliRunner().invoke(plan_app(), ["--help"])
    assert result.exit_code == 0
    assert "sts-siting" in result.output and "seasonal" in result.output


def test_bad_scenario_is_a_usage_error() -> None:
    result = CliRunner().invoke(plan_app(), ["sts-siting", "--scenario", "S9"])
    assert result.exit_code == 2
    assert "scenario 'S9' is not one of all, S1, S2, S3, S4" in result.output


def test_bad_case_is_a_usage_error() -> None:
    result = CliRunner().invoke(plan_app(), ["seasonal", "--case", "case 9"])
    assert result.exit_code == 2


def test_sts_node_limit_below_one_is_a_usage_error() -> None:
    result = CliRunner().invoke(plan_app(), ["sts-siting", "--node-limit", "0"])
    assert result.exit_code == 2
    assert "node-limit" in result.output
