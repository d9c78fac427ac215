"""The ``plan`` commands as the lead will mount them: ``register(plan_app)``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from phasetwin.plan.rephase.command import parse_days, register


def _app() -> typer.Typer:
    app = typer.Typer()
    plan = typer.Typer()
    register(plan)
    app.add_typer(plan, name="plan")
    return app


def test_birkhoff_command_writes_its_report(tmp_path: Path) -> None:
    result = CliRunner().invoke(_app(), ["plan", "birkhoff", "--nodes", "3", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert [r["node"] for r in report["nodes"]] == ["8", "10", "11"]
    assert report["gap"] == pytest.approx(0.0, abs=1e-6)
    assert report["nonlinear_loss_after_kw"] <= report["nonlinear_loss_before_kw"]
    assert (tmp_path / "permutations.csv").read_text().startswith("node,bus,configuration,matrix,paper_matrix")


def test_bad_options_exit_with_status_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(_app(), ["plan", "birkhoff", "--nodes", "12", "--out", str(tmp_path)])
    assert result.exit_code == 2
    result = CliRunner().invoke(_app(), ["plan", "rephase", "--feeder", "nowhere", "--out", str(tmp_path)])
    assert result.exit_code == 2


def test_parse_days() -> None:
    assert parse_days("1-2, 5", n_days=365) == [1, 2, 5]
    assert parse_days("all", n_days=3) == [1, 2, 3]
    with pytest.raises(ValueError, match=r"day\(s\) '0-2' outside 1..365"):
        parse_days("0-2", n_days=365)
    with pytest.raises(ValueError, match="day 'x' is not a number"):
        parse_days("x", n_days=365)
