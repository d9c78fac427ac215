"""The study file and its task grid (no cluster): periods of the data, the crossed strategies, errors, `study plan`,
and `compare` as a one-feeder study (in process)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from phasetwin.cli.main import app
from phasetwin.studies.grid import task_grid
from phasetwin.studies.spec import read_study

runner = CliRunner()


def _study(tmp_path: Path, text: str) -> Path:
    (tmp_path / "s.toml").write_text(text)
    return tmp_path / "s.toml"


def test_every_week_of_the_liege_year_is_a_calendar_week_inside_the_data(tmp_path: Path) -> None:
    path = _study(tmp_path, 'tick_s = 900\n[[feeders]]\nfeeder = "liege-lv"\n[[periods]]\nevery = "week"\n'
                            '[[strategies]]\nstrategy = "none"\n')
    spec, study_dir = read_study(path)
    tasks = task_grid(spec, study_dir=study_dir)
    starts = [t.scenario.start_utc for t in tasks]
    # the data: 2015-12-31T23:00Z .. 2016-12-30T23:00Z; Mondays from 2016-01-04 to the last whole week
    assert starts[0] == datetime(2016, 1, 4, tzinfo=UTC) and all(s.weekday() == 0 for s in starts)  # type: ignore[union-attr]
    assert tasks[-1].scenario.end_utc == datetime(2016, 12, 26, tzinfo=UTC)
    assert len(tasks) == 51 and {t.ticks for t in tasks} == {672}
    assert study_dir == tmp_path / "runs" / "s" and len({t.key for t in tasks}) == 51


def test_strategies_cross_forecasts_and_seeds_where_they_matter(tmp_path: Path) -> None:
    path = _study(tmp_path, 'forecasts = ["perfect", "persistence"]\nseeds = [0, 7]\n[[feeders]]\n'
                            'feeder = "ieee-european-lv"\n[[periods]]\nstart_utc = 2024-01-15T06:00:00Z\n'
                            'end_utc = 2024-01-15T07:00:00Z\n[[strategies]]\nstrategy = "greedy"\n'
                            '[[strategies]]\nstrategy = "rolling-milp"\ntime_limit_s = 0.3\n')
    spec, study_dir = read_study(path)
    tasks = task_grid(spec, study_dir=study_dir)
    assert [t.strategy for t in tasks] == [
        "none", "greedy/perfect", "greedy/persistence", "rolling-milp/perfect/seed0", "rolling-milp/perfect/seed7",
        "rolling-milp/persistence/seed0", "rolling-milp/persistence/seed7"]
    milp = tasks[-1].scenario.controller
    assert (milp.solver.random_seed, milp.solver.time_limit_s, milp.forecast.value) == (7, 0.3, "persistence")
    assert tasks[0].scenario.fleet.psd == 10  # the default fleet


@pytest.mark.parametrize(("text", "message"), [
    ("[[strategies]]\nstrategy = 'none'\n", "feeders: Field required"),
    ("[[feeders]]\nfeeder = 'ieee-european-lv'\n[[strategies]]\nstrategy = 'fast'\n",
     "strategies.0.strategy: Input should be"),
    ("[scenario]\ntick_s = 5\n[[feeders]]\nfeeder = 'ieee-european-lv'\n[[strategies]]\nstrategy = 'none'\n",
     "scenario.tick_s: set by the study's grid"),
    ("[[feeders]]\nfeeder = 'ieee-european-lv'\n[[periods]]\nevery = 'week'\n[[strategies]]\nstrategy = 'none'\n",
     "no whole week of the data of feeder 'ieee-european-lv'"),
])
def test_a_bad_study_file_is_one_message_and_exit_2(tmp_path: Path, text: str, message: str) -> None:
    result = runner.invoke(app, ["study", "plan", str(_study(tmp_path, text))])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()) and "Traceback" not in result.output


def test_study_plan_prints_the_grid_without_running(tmp_path: Path) -> None:
    path = _study(tmp_path, '[[feeders]]\nfeeder = "ieee-european-lv"\n[[fleets]]\npsd = 2\n[[fleets]]\npsd = 4\n'
                            '[[strategies]]\nstrategy = "static"\n')
    result = runner.invoke(app, ["study", "plan", str(path)])
    assert result.exit_code == 0, result.output
    assert "4 of 4 task(s) to run, 5760 ticks" in " ".join(result.output.split())
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_compare_is_a_one_feeder_study(tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    result = runner.invoke(app, ["compare", "--controllers", "static", "--start", "2024-01-15T17:00",
                                 "--end", "2024-01-15T19:00", "--psd", "4", "--pess", "0", "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "comparison.csv")
    assert list(table["strategy"]) == ["none", "static"]

    def p_unb_kwh(strategy: str) -> float:
        return float(pd.read_parquet(out / strategy / "metrics.parquet").filter(like="p_unb_kw_f").to_numpy().sum()
                     / 60.0)

    expected = 100 * (1 - p_unb_kwh("static") / p_unb_kwh("none"))
    assert table.set_index("strategy").loc["static", "p_unb_reduction_pct"] == pytest.approx(expected, rel=1e-5)
    assert (out / "static" / "scenario.toml").is_file() and len(list((out / "results").iterdir())) == 2
    peak_n = {s: float(pd.read_parquet(out / s / "metrics.parquet")["i_n_max_a"].max()) for s in ("none", "static")}
    row = table.set_index("strategy").loc["static"]
    assert row["peak_neutral_a"] == pytest.approx(peak_n["static"]) and \
        row["peak_neutral_a_none"] == pytest.approx(peak_n["none"])
    text = " ".join(result.output.split())
    assert "peak neutral current, A (vs none)" in text and "worse than none on" in text
    assert ("peak_neutral_a" in str(row["worse_than_none"])) == (peak_n["static"] > 1.001 * peak_n["none"])
    again = runner.invoke(app, ["study", "report", str(out)])
    assert again.exit_code == 0 and pd.read_csv(out / "comparison.csv").equals(table)
