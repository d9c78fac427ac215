"""The Python API (``import phasetwin``): each public function on a short case, checked against what the command
line writes for the same case and against the run folder's own tables (independent of the summary)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import phasetwin
from phasetwin.cli.main import app
from twin.errors import TwinError

runner = CliRunner()
HOUR = {"start": "2024-01-15T17:00", "end": "2024-01-15T18:00", "psd": 3, "pess": 0}


def test_the_public_names_are_sorted_and_documented() -> None:
    assert phasetwin.__all__ == sorted(phasetwin.__all__)
    for name in phasetwin.__all__:
        assert getattr(phasetwin, name).__doc__, name


@pytest.fixture(scope="module")
def api_run(tmp_path_factory: pytest.TempPathFactory) -> phasetwin.Run:
    return phasetwin.replay(out=tmp_path_factory.mktemp("api") / "run", **HOUR)


def test_replay_gives_the_summary_the_tables_and_the_reference(api_run: phasetwin.Run) -> None:
    run = api_run
    assert run.summary.ticks == 60 and run.baseline is not None and run.baseline.summary.ticks == 60
    assert run.baseline.folder == run.folder / "no-control"
    assert {"transformer", "metrics", "voltages_pu", "devices"} <= set(run.tables)
    metrics = run.table("metrics")
    p_unb_kw = metrics[[c for c in metrics.columns if c.startswith("p_unb_kw_f")]].sum(axis=1).to_numpy()
    assert run.summary.p_unb_kwh == pytest.approx(p_unb_kw.sum() / 60, rel=1e-9)
    with pytest.raises(ValueError, match="has no table 'nothing'; it has"):
        run.table("nothing")


def test_the_command_line_replays_through_the_same_function(api_run: phasetwin.Run, tmp_path: Path) -> None:
    out = tmp_path / "cli"
    result = runner.invoke(app, ["replay", "--start", HOUR["start"], "--end", HOUR["end"], "--psd", "3", "--pess", "0",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    again = phasetwin.replay(config=out / "scenario.toml", out=tmp_path / "again")
    for run in (api_run, again):
        assert run.summary.p_unb_kwh == pytest.approx(
            float(__import__("json").loads((out / "summary.json").read_text())["p_unb_kwh"]), rel=1e-12)


def test_an_unknown_option_is_named() -> None:
    with pytest.raises(TypeError, match=r"unknown option.*psds.*expected names out of"):
        phasetwin.replay(psds=3)
    with pytest.raises(TwinError, match="--start 'yesterday' is not an ISO date"):
        phasetwin.replay(start="yesterday")


def test_compare_runs_none_first_and_reports_against_it(tmp_path: Path) -> None:
    cmp = phasetwin.compare(controllers=["static"], out=tmp_path, start="2024-01-15T17:00", end="2024-01-15T17:30",
                            psd=3, pess=0)
    assert list(cmp.runs) == ["none", "static"]
    table = cmp.table()
    none, static = cmp.figures["none"], cmp.figures["static"]
    assert static.reduction_pct == pytest.approx(100 * (1 - static.p_unb_kwh / none.p_unb_kwh))
    assert table.loc["p_unb_kwh", "none"] == none.p_unb_kwh
    assert (tmp_path / "none" / "summary.json").is_file() and (tmp_path / "static" / "summary.json").is_file()


def test_study_runs_the_grid_in_process_and_returns_its_comparison(tmp_path: Path) -> None:
    (tmp_path / "study.toml").write_text(
        'tick_s = 60\nout = "results-here"\n[[feeders]]\nfeeder = "ieee-european-lv"\n[[periods]]\n'
        "start_utc = 2024-01-15T17:00:00Z\nend_utc = 2024-01-15T17:30:00Z\n[[fleets]]\npsd = 2\n"
        '[[strategies]]\nstrategy = "none"\n[[strategies]]\nstrategy = "static"\n')
    table = phasetwin.study(file=tmp_path / "study.toml", out=tmp_path / "s", workers=0)
    assert len(table) >= 1
    rows = __import__("pandas").read_parquet(next((tmp_path / "s" / "results").glob("*.parquet")))
    assert set(rows["status"]) == {"ok"}
    again = phasetwin.study(file=tmp_path / "study.toml", out=tmp_path / "s", workers=0)  # resumes: nothing to run
    assert again.equals(table)


def test_identify_finds_the_true_phases_of_a_simulated_day(tmp_path: Path) -> None:
    result = runner.invoke(app, ["meter-voltages", "--class", "0.5", "--seed", "1", "--out", str(tmp_path / "m.csv"),
                                 "--run-dir", str(tmp_path / "day"), "--start", "2024-01-15T00:00",
                                 "--end", "2024-01-16T00:00"])
    assert result.exit_code == 0, result.output
    found = phasetwin.identify(meters=tmp_path / "m.csv", method="correlation")
    feeder_phases = {c.id: c.phases[0] for c in __import__("twin.feeders", fromlist=["open_feeder"])
                     .open_feeder("ieee-european-lv").load_feeder().customers}
    chosen = next(iter(found.assignments.values()))
    right = [int(chosen.phase[i]) == int(feeder_phases[cid]) for i, cid in enumerate(found.customer_ids)]
    assert np.mean(right) >= 0.95
