"""Every run figure shows the run folder's data, and the report holds them all.

The values drawn are read back from matplotlib (``Drawn.plotted``: what the lines, bands and lanes hold) and
compared with the run folder's tables, or with figures computed here from other tables (loading from the
transformer powers and ratings, line loading from the grid-state recorder's line currents).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from phasetwin.cli.main import app
from phasetwin.report.html import Report
from phasetwin.run.result import RunResult
from streams.runfolder.matrix import read_frame
from twin.figures.chart import Panel, Series, write_figure
from twin.network import Feeder

START = datetime(2024, 1, 15, 6, tzinfo=UTC)  # the conftest's replay

def _drawn(report: Report, name: str) -> dict[str, np.ndarray]:
    return next(d.plotted for d in report.figures if d.path.stem == name)


def test_every_figure_is_written_and_the_reference_run_is_found(runs: tuple[RunResult, RunResult, Report]) -> None:
    controlled, reference, report = runs
    assert report.baseline == reference.folder
    names = sorted(d.path.stem for d in report.figures)
    assert names == sorted(["transformer_load", "voltage_envelope", "p_unb", "neutral_current", "devices",
                            "loading"])
    for d in report.figures:
        assert d.path.parent == controlled.folder / "figures" and d.path.stat().st_size > 10_000
        assert d.bin_ticks == 1  # 240 ticks: every tick drawn


def test_per_phase_load_is_the_transformer_table_of_both_runs(runs: tuple[RunResult, RunResult, Report]) -> None:
    controlled, reference, report = runs
    drawn = _drawn(report, "transformer_load")
    ctl = pd.read_parquet(controlled.folder / "transformer.parquet")
    ref = pd.read_parquet(reference.folder / "transformer.parquet")
    for p in "abc":
        np.testing.assert_array_equal(drawn[f"phase {p.upper()}"], ctl[f"p_{p}_kw"].to_numpy())
        np.testing.assert_array_equal(drawn[f"phase {p.upper()}, no control"], ref[f"p_{p}_kw"].to_numpy())
    assert not np.array_equal(drawn["phase A"], drawn["phase A, no control"])  # the controller did something


def test_voltage_envelope_is_the_lowest_and_highest_bus_voltage(runs: tuple[RunResult, RunResult, Report]) -> None:
    controlled, _, report = runs
    drawn = _drawn(report, "voltage_envelope")
    vm = read_frame(controlled.folder / "voltages_pu.parquet")
    customers = pd.read_csv(controlled.folder / "customers.csv")
    for p in "ABC":
        columns = [c for c in vm.columns if c.endswith(f"_{p}") and not c.startswith("SourceBus")]
        # the figure's band covers every customer's voltage on that phase, read through customers.csv
        cust_cols = [c for cols in customers["voltage_columns"] for c in cols.split(";") if c.endswith(f"_{p}")]
        assert set(cust_cols) <= set(columns)
        lv = vm[columns].to_numpy(dtype=float)
        np.testing.assert_allclose(drawn[f"phase {p} [low]"], lv.min(axis=1), atol=1e-6)
        np.testing.assert_allclose(drawn[f"phase {p} [high]"], lv.max(axis=1), atol=1e-6)
        assert np.all(drawn[f"phase {p} [low]"] <= vm[cust_cols].to_numpy().min(axis=1) + 1e-7)


def test_p_unb_with_and_without_control(runs: tuple[RunResult, RunResult, Report]) -> None:
    controlled, reference, report = runs
    drawn = _drawn(report, "p_unb")
    np.testing.assert_allclose(drawn["with greedy"], controlled.recorder.p_unb_kw.sum(axis=1))
    np.testing.assert_allclose(drawn["no control"], reference.recorder.p_unb_kw.sum(axis=1))
    assert drawn["with greedy"].sum() < drawn["no control"].sum()


def test_neutral_current(runs: tuple[RunResult, RunResult, Report]) -> None:
    controlled, reference, report = runs
    drawn = _drawn(report, "neutral_current")
    np.testing.assert_allclose(drawn["with greedy"], controlled.recorder.i_n_max_a)
    np.testing.assert_allclose(drawn["no control"], reference.recorder.i_n_max_a)


def test_device_lanes_are_the_recorded_phases_and_soc(runs: tuple[RunResult, RunResult, Report]) -> None:
    controlled, _, report = runs
    drawn = _drawn(report, "devices")
    states = pd.read_parquet(controlled.folder / "devices.parquet")
    moved = 0
    for device_id, rows in states.groupby("device_id"):
        rows = rows.sort_values("time_utc")
        assert list(drawn[f"{device_id} [state]"]) == [f"phase {p}" for p in rows["phase"]]
        moved += rows["phase"].nunique() > 1
        if rows["kind"].iloc[0] == "pess":
            np.testing.assert_allclose(drawn[str(device_id)], rows["e_kwh"].to_numpy())
    assert moved > 0
    assert sum(1 for k in drawn if k.endswith(" [state]")) == states["device_id"].nunique() == 12


def test_loading_against_the_transformer_rating_and_line_currents(runs: tuple[RunResult, RunResult, Report],
                                                                  ieee_feeder: Feeder) -> None:
    controlled, _, report = runs
    drawn = _drawn(report, "loading")
    tr = pd.read_parquet(controlled.folder / "transformer.parquet")
    phase_kva = ieee_feeder.transformer.sn_kva / 3
    loading = pd.read_parquet(controlled.folder / "loading.parquet")
    for p in "abc":
        expected = np.hypot(tr[f"p_{p}_kw"], tr[f"q_{p}_kvar"]) / phase_kva * 100
        np.testing.assert_allclose(loading[f"trafo_{p}_pct"], expected, rtol=1e-9)
        np.testing.assert_array_equal(drawn[f"phase {p.upper()}"], loading[f"trafo_{p}_pct"].to_numpy())
        np.testing.assert_array_equal(drawn[f"most loaded line (% of rating): phase {p.upper()}"],
                                      loading[f"line_max_{p}_pct"].to_numpy())
    # the most loaded line over the phases, from the grid-state recorder's per-line maximum current
    rating = np.array([ln.max_i_ka for ln in ieee_feeder.lines])
    expected_line = (controlled.recorder.i_max_ka / rating).max(axis=1) * 100
    got = loading[[f"line_max_{p}_pct" for p in "abc"]].to_numpy().max(axis=1)
    np.testing.assert_allclose(got, expected_line, rtol=1e-5)
    peak = controlled.summary.loading
    assert peak["line_peak_pct"] == pytest.approx(expected_line.max(), rel=1e-5)
    t = int(expected_line.argmax())
    named = [ln.id for ln in ieee_feeder.lines].index(peak["line_peak_id"])  # lines in series tie: any of them
    assert controlled.recorder.i_max_ka[t, named] / rating[named] * 100 == pytest.approx(peak["line_peak_pct"],
                                                                                        rel=1e-5)
    assert pd.Timestamp(peak["line_peak_utc"]) == pd.Timestamp(START) + pd.Timedelta(minutes=t)


def test_long_series_are_drawn_as_min_mean_max_envelopes(tmp_path: Path) -> None:
    n = 35_040  # a year at 15 minutes
    x = pd.date_range("2016-01-01", periods=n, freq="15min", tz="UTC")
    rng = np.random.default_rng(3)
    v = rng.normal(size=n).cumsum()
    drawn = write_figure(tmp_path / "year.png", [Panel("kW", series=(Series("phase A", v, phase="A"),))],
                         title="a year", x=x)
    k = drawn.bin_ticks
    assert k == 18 and len(drawn.plotted["phase A"]) == -(-n // k) <= 2000
    padded = np.concatenate([v, np.full(-n % k, np.nan)]).reshape(-1, k)
    np.testing.assert_allclose(drawn.plotted["phase A"], np.nanmean(padded, axis=1))
    np.testing.assert_allclose(drawn.plotted["phase A [min]"], np.nanmin(padded, axis=1))
    np.testing.assert_allclose(drawn.plotted["phase A [max]"], np.nanmax(padded, axis=1))


def test_report_html_is_self_contained(runs: tuple[RunResult, RunResult, Report]) -> None:
    controlled, _, report = runs
    html = report.path.read_text(encoding="utf-8")
    assert html.count('<img src="data:image/png;base64,') == len(report.figures)
    assert "http://" not in html and "https://" not in html and "<script" not in html
    s = controlled.summary
    assert f"{s.peak_neutral_current_a:.1f}" in html and "% less)" in html
    assert "LOAD53" in html and "voltages_pu.parquet" in html  # customers table
    assert "controller.strategy" in html and "greedy" in html  # options used
    assert "meter data: rows read" in html and "readings missing" in html  # data quality
    assert "peak transformer-phase loading, %" in html and "mean neutral current, A" in html  # KPIs vs no control
    assert ("No worse than no control on any KPI" in html) != ("Worse than no control on" in html)


def test_report_command_and_its_user_errors(runs: tuple[RunResult, RunResult, Report], tmp_path: Path) -> None:
    controlled, _, _ = runs
    ok = CliRunner().invoke(app, ["report", str(controlled.folder), "--tz", "Europe/London"])
    assert ok.exit_code == 0, ok.output
    assert "report.html" in ok.output
    for args, message in ((["report", str(tmp_path)], "no summary.json"),
                          (["report", str(controlled.folder), "--tz", "Mars/Olympus"], "not a known time zone")):
        result = CliRunner().invoke(app, args)
        text = " ".join(result.output.split())
        assert result.exit_code == 2 and message in text and "Traceback" not in text
