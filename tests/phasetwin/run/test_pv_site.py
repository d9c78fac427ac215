"""--site LAT,LON for the clear-sky PV of simulated PESS, and the site named in the console (issue 29): the PV
of a network file's PESS was clear sky at a fixed UK site, silently."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from phasetwin.cli.main import app
from twin.solar import tick_mean_kw_per_kwp

runner = CliRunner()
ARGS = ["--start", "2024-01-15T10:00", "--end", "2024-01-15T12:00", "--tick", "300", "--psd", "0", "--pess", "2",
        "--controller", "none", "--no-baseline"]


def _run(tmp_path: Path, name: str, *extra: str) -> tuple[dict[str, object], str]:
    result = runner.invoke(app, ["replay", *ARGS, "--out", str(tmp_path / name), *extra])
    assert result.exit_code == 0, result.output
    return json.loads((tmp_path / name / "summary.json").read_text()), " ".join(result.output.split())


def test_site_moves_the_pess_pv_and_the_console_names_it(tmp_path: Path) -> None:
    uk, uk_text = _run(tmp_path, "uk")
    cape, cape_text = _run(tmp_path, "cape", "--site", "-33.9,18.4")
    assert "PESS PV: clear sky at 52, -1 (the feeder's site)" in uk_text
    assert "PESS PV: clear sky at -33.9, 18.4 (--site)" in cape_text
    start = pd.Timestamp("2024-01-15T10:00", tz="UTC")
    summer = tick_mean_kw_per_kwp(start, tick_s=300, n_ticks=24, lat_deg=-33.9, lon_deg=18.4).mean()
    winter = tick_mean_kw_per_kwp(start, tick_s=300, n_ticks=24, lat_deg=52.0, lon_deg=-1.0).mean()
    assert summer > 2 * winter  # the clear-sky model itself: January noon at Cape Town vs England
    energy = {k: sum(s["energy_kwh"][p] for p in "abc") for k, s in (("uk", uk), ("cape", cape))}  # type: ignore[index]
    assert energy["cape"] < energy["uk"], "more PV behind the PESS meters: less energy through the transformer"


def test_a_bad_site_is_one_error_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["replay", *ARGS, "--out", str(tmp_path / "x"), "--site", "north"])
    assert result.exit_code == 2 and "--site 'north': expected LAT,LON" in " ".join(result.output.split())


def test_pv_profile_replaces_the_clear_sky_model(tmp_path: Path) -> None:
    """A profile of 0.8 kW/kWp for the whole period: the PESS PV is then far above England's January clear sky;
    a profile that does not cover the period is one error line."""
    times = pd.date_range("2024-01-15T09:00", "2024-01-15T13:00", freq="15min", tz="UTC")
    profile = tmp_path / "pv.csv"
    pd.DataFrame({"time": times.strftime("%Y-%m-%dT%H:%M:%SZ"), "kw_per_kwp": 0.8}).to_csv(profile, index=False)
    uk, _ = _run(tmp_path, "uk")
    ours, text = _run(tmp_path, "ours", "--pv-profile", str(profile))
    assert f"PESS PV: {profile} (--pv-profile)" in text
    energy = {k: sum(s["energy_kwh"][p] for p in "abc") for k, s in (("uk", uk), ("ours", ours))}  # type: ignore[index]
    assert energy["ours"] < energy["uk"]
    short = tmp_path / "short.csv"
    pd.DataFrame({"time": times[:4].strftime("%Y-%m-%dT%H:%M:%SZ"), "kw_per_kwp": 0.8}).to_csv(short, index=False)
    result = runner.invoke(app, ["replay", *ARGS, "--out", str(tmp_path / "x"), "--pv-profile", str(short)])
    assert result.exit_code == 2 and "--pv-profile" in result.output and "not the period" in result.output
