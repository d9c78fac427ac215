"""Real data formats (issue 29, item 8): naive local time with daylight saving (the usual head-end export),
day-first dates, ';'-separated decimal-comma CSV, and the unit advice for energy per interval."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from phasetwin.cli.main import app
from streams.errors import DataError
from streams.meters.data import PowerUnit, read_meter_data
from streams.meters.plausibility import check_unit

BRUSSELS = "Europe/Brussels"


def _local_quarter_hours(first: str, last: str) -> list[str]:
    """The wall-clock times a Brussels meter writes every 15 minutes, as it writes them (naive, the repeated
    autumn hour twice, the skipped spring hour not at all)."""
    utc = pd.date_range(pd.Timestamp(first, tz=BRUSSELS), pd.Timestamp(last, tz=BRUSSELS), freq="15min")
    return [t.tz_convert(BRUSSELS).strftime("%Y-%m-%d %H:%M") for t in utc]


def test_autumn_repeated_hour_is_read_in_file_order_and_counted(tmp_path: Path) -> None:
    times = _local_quarter_hours("2023-10-29 00:00", "2023-10-29 05:45")
    assert times.count("2023-10-29 02:15") == 2  # the export repeats the hour
    path = tmp_path / "autumn.csv"
    pd.DataFrame({"time": times, "m_A": np.arange(len(times), dtype=float)}).to_csv(path, index=False)
    with pytest.raises(DataError, match="--timezone"):
        read_meter_data(path, unit=PowerUnit.KW)
    table = read_meter_data(path, unit=PowerUnit.KW, timezone=BRUSSELS)
    assert table.start_utc == pd.Timestamp("2023-10-28T22:00", tz="UTC")
    assert table.n_steps == len(times) and table.quality.missing_steps == 0
    assert table.quality.duplicate_timestamps == 0
    np.testing.assert_array_equal(table.p_kw[:, 0, 0], np.arange(len(times)))  # the file's order, step by step
    assert "8 row(s) in a repeated autumn hour" in "; ".join(table.quality.notes)


def test_spring_skipped_hour_leaves_no_gap_and_a_time_inside_it_is_dropped_and_counted(tmp_path: Path) -> None:
    times = _local_quarter_hours("2024-03-31 00:00", "2024-03-31 05:45")
    assert "2024-03-31 02:15" not in times
    path = tmp_path / "spring.csv"
    pd.DataFrame({"time": times, "m_A": 1.0}).to_csv(path, index=False)
    table = read_meter_data(path, unit=PowerUnit.KW, timezone=BRUSSELS)
    assert table.n_steps == len(times) and table.quality.missing_steps == 0
    broken = tmp_path / "broken.csv"
    pd.DataFrame({"time": [*times[:8], "2024-03-31 02:30", *times[8:]], "m_A": 1.0}).to_csv(broken, index=False)
    table = read_meter_data(broken, unit=PowerUnit.KW, timezone=BRUSSELS)
    assert table.n_steps == len(times)
    assert "1 row(s) in a skipped spring hour dropped" in "; ".join(table.quality.notes)


def test_day_first_semicolon_decimal_comma_export(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text("time;m_A;m_B\n15.01.2024 00:00;0,25;1,5\n15.01.2024 00:15;0,5;2\n15.01.2024 00:30;1;-0,75\n")
    with pytest.raises(DataError, match=r"--time-format '%d.%m.%Y %H:%M'"):
        read_meter_data(path, unit=PowerUnit.KW, naive_is_utc=True)
    table = read_meter_data(path, unit=PowerUnit.KW, time_format="%d.%m.%Y %H:%M", timezone=BRUSSELS)
    assert table.start_utc == pd.Timestamp("2024-01-14T23:00", tz="UTC") and table.step_s == 900
    np.testing.assert_allclose(table.p_kw[:, 0, :2], [[0.25, 1.5], [0.5, 2.0], [1.0, -0.75]])
    assert "decimal comma" in "; ".join(table.quality.notes)


def test_wh_per_quarter_hour_read_as_kw_is_told_both_readings(tmp_path: Path) -> None:
    """250 Wh per 15 minutes is 1 kW: read as kW it looks like W, but 'use --unit W' would be 4 × too small."""
    path = tmp_path / "wh.csv"
    times = pd.date_range("2024-01-15", periods=8, freq="15min", tz="UTC").strftime("%Y-%m-%dT%H:%MZ")
    pd.DataFrame({"time": times, "m_A": 250.0}).to_csv(path, index=False)
    table = read_meter_data(path, unit=PowerUnit.KW)
    with pytest.raises(DataError, match=r"--unit Wh if they are energy per 900 s interval \(× 4 to mean power\)"):
        check_unit(table, PowerUnit.KW)
    assert read_meter_data(path, unit=PowerUnit.WH).p_kw[0, 0, 0] == pytest.approx(1.0)


def test_the_cli_reads_a_local_time_export(tmp_path: Path) -> None:
    """The IEEE European LV feeder's 55 customers, a Brussels head-end export of one local day."""
    local = pd.date_range("2024-01-15 00:00", periods=96, freq="15min")
    columns = {"time": local.strftime("%d.%m.%Y %H:%M")}
    columns |= {f"LOAD{i}_1": "0,5" for i in range(1, 56)}
    path = tmp_path / "export.csv"
    pd.DataFrame(columns).to_csv(path, index=False, sep=";")
    out = tmp_path / "run"
    result = CliRunner().invoke(app, [
        "replay", "--data", str(path), "--timezone", BRUSSELS, "--time-format", "%d.%m.%Y %H:%M", "--tick", "900",
        "--controller", "none", "--psd", "0", "--pess", "0", "--out", str(out), "--no-baseline"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["start_utc"].startswith("2024-01-14T23:00") and summary["ticks"] == 96
    assert sum(summary["energy_kwh"][p] for p in "abc") > 55 * 0.5 * 24
