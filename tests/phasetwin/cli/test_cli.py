"""The `phasetwin` command end to end, in process (typer's runner), on the bundled IEEE day."""

import csv
import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from phasetwin.cli.main import app
from streams.runfolder.matrix import read_frame
from twin.loaders.ieee_european_lv import bundled_dir

runner = CliRunner()
PLAIN = ["--psd", "0", "--pess", "0", "--controller", "none"]
"""The twin's physics alone: no devices, no controller (the default replay runs a controlled fleet)."""


def _independent_load_energy_kwh() -> dict[str, float]:
    """Energy per phase straight from the CSV files (Loads.csv -> shape file -> sum of 1-minute kW / 60)."""
    folder = bundled_dir()
    with (folder / "Loads.csv").open() as fh:
        rows = list(csv.reader(fh))[3:]
    energy = {"A": 0.0, "B": 0.0, "C": 0.0}
    for row in rows:
        phase, shape = row[3].strip(), row[9].strip().replace("Shape_", "Load_profile_")
        with (folder / "load_profiles" / f"{shape}.csv").open() as fh:
            energy[phase] += sum(float(r[1]) for r in list(csv.reader(fh))[1:]) / 60.0
    return energy


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("run")
    result = runner.invoke(app, ["replay", "--out", str(out), *PLAIN])
    assert result.exit_code == 0, result.output
    return out, result.output


def test_default_replay_writes_the_run_folder(default_run: tuple[Path, str]) -> None:
    out, output = default_run
    assert {p.name for p in out.iterdir()} == {"voltages_pu.parquet", "line_currents_ka.parquet",
                                                "transformer.parquet", "metrics.parquet", "summary.json",
                                                "journal.jsonl", ".run.lock", "scenario.toml", "loading.parquet",
                                                "scenario.json", "customers.csv", "data_quality.json",
                                                "figures", "report.html"}
    assert "report.html" in "".join(output.split())  # where the report is (rich may wrap the path)
    assert sorted(p.name for p in (out / "voltages_pu.parquet").iterdir()) == [
        f"part-{k:06d}.parquet" for k in range(4)]  # 1440 ticks in parts of 360
    volts = read_frame(out / "voltages_pu.parquet")
    assert volts.shape == (1440, 1 + 907 * 3)
    assert str(volts["time_utc"].dt.tz) == "UTC"
    assert "energy, kWh" in output and "max P_unb" in output


def test_transformer_energy_equals_the_data_plus_line_losses(default_run: tuple[Path, str]) -> None:
    out, _ = default_run
    summary = json.loads((out / "summary.json").read_text())
    loads = _independent_load_energy_kwh()
    delivered = summary["energy_kwh"]
    total_loads, total_delivered = sum(loads.values()), delivered["a"] + delivered["b"] + delivered["c"]
    # the transformer delivers the loads plus the line losses (its own losses are upstream of its LV terminal)
    assert 0 < total_delivered - total_loads < summary["losses_kwh"]
    for phase in "ABC":
        assert delivered[phase.lower()] == pytest.approx(loads[phase], rel=0.05)
    assert summary["ticks"] == 1440 and summary["readings_missing"] == 0


def test_summary_extremes_match_the_recorded_series(default_run: tuple[Path, str]) -> None:
    out, _ = default_run
    summary = json.loads((out / "summary.json").read_text())
    volts = read_frame(out / "voltages_pu.parquet").drop(columns=["time_utc", "SourceBus_A", "SourceBus_B",
                                                                       "SourceBus_C"])
    for phase in "ABC":
        cols = [c for c in volts.columns if c.endswith(f"_{phase}")]
        assert summary["vm_min_pu"][phase.lower()] == pytest.approx(volts[cols].to_numpy().min(), abs=1e-6)
        assert summary["vm_max_pu"][phase.lower()] == pytest.approx(volts[cols].to_numpy().max(), abs=1e-6)
    trafo = pd.read_parquet(out / "transformer.parquet")
    assert summary["peak_load_kw"]["b"] == pytest.approx(trafo["p_b_kw"].max())
    # κ of the transformer by hand: phase currents ∝ |S|/|V| at its LV bus "1"; max over mean minus one
    lv = read_frame(out / "voltages_pu.parquet")
    amps = pd.DataFrame({ph: (trafo[f"p_{ph}_kw"] ** 2 + trafo[f"q_{ph}_kvar"] ** 2) ** 0.5 / lv[f"1_{ph.upper()}"]
                         for ph in "abc"})
    kappa = amps.max(axis=1) / amps.mean(axis=1) - 1
    assert summary["max_kappa_trafo"] == pytest.approx(kappa.max(), rel=1e-6)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--feeder", "nope"], "unknown feeder 'nope'; expected one of ieee-european-lv"),
        (["--start", "2023-06-01"], "is outside the data, which cover 2024-01-15"),
        (["--start", "yesterday"], "--start 'yesterday' is not an ISO date"),
        (["--tick", "0"], "tick_s: Input should be greater than 0"),
        (["--tick", "7", "--end", "2024-01-15T00:01"], "is not a whole number of 7 s ticks"),
        (["--feeder", "missing.json"], "feeder file 'missing.json' does not exist"),
    ],
)
def test_user_errors_print_one_message_and_exit_2(args: list[str], message: str, tmp_path: Path) -> None:
    result = runner.invoke(app, ["replay", "--out", str(tmp_path), *args])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_feeders_lists_the_bundled_feeder() -> None:
    result = runner.invoke(app, ["feeders"])
    assert result.exit_code == 0 and "ieee-european-lv" in result.output


def test_liege_day_p_unb_matches_an_independent_sum_of_the_data(tmp_path: Path) -> None:
    """P_unb of each Liège feeder from the raw parquet (column suffix = the terminal's phase) vs the replay."""
    from twin.loaders import liege

    folder = liege.default_folder()
    result = runner.invoke(app, ["replay", "--feeder", "liege-lv", "--start", "2016-06-01", "--tick", "900",
                                 "--out", str(tmp_path), *PLAIN])
    assert result.exit_code == 0, result.output
    raw = pd.read_parquet(folder / "timeseries_net_kw.parquet")
    day = raw[(raw.index >= "2016-06-01") & (raw.index < "2016-06-02")]
    customers = pd.read_csv(folder / "customers.csv", dtype={"customer_id": str})
    summary = json.loads((tmp_path / "summary.json").read_text())
    for f in (0, 1):
        ids = set(customers.loc[customers["feeder"] == f, "customer_id"])
        per_phase = pd.DataFrame({ph: day[[c for c in day.columns if c.split("_")[0] in ids and c.endswith(ph)]]
                                  .sum(axis=1) for ph in "ABC"})
        p_unb = (per_phase.sub(per_phase.mean(axis=1), axis=0)).abs().sum(axis=1)
        assert summary["max_p_unb_kw"][f] == pytest.approx(p_unb.max(), rel=1e-9)
        assert summary["mean_p_unb_kw"][f] == pytest.approx(p_unb.mean(), rel=1e-9)


def test_data_whose_customers_do_not_match_the_feeder_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "meters.csv"
    data.write_text("time,LOAD1_A,STRANGER_B\n2024-01-15T00:00:00Z,1.0,2.0\n2024-01-15T00:01:00Z,1.0,2.0\n")
    result = runner.invoke(app, ["replay", "--data", str(data), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "STRANGER" in text and "LOAD55" in text
    assert "Traceback" not in result.output


def test_real_time_replay_keeps_the_wall_clock_schedule(tmp_path: Path) -> None:
    """10 ticks of 60 s at speed 600 take 0.1 s each: about 0.9 s from the first tick to the last."""
    import time

    started = time.monotonic()
    result = runner.invoke(app, ["replay", "--end", "2024-01-15T00:10", "--speed", "600", "--out", str(tmp_path),
                                 *PLAIN])
    elapsed = time.monotonic() - started
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["ticks"] == 10 and summary["powerflow_solves"] == 10  # real time solves tick by tick
    assert 0.9 <= elapsed < 10


def test_default_replay_runs_the_controlled_fleet_and_reports_its_gain(tmp_path: Path) -> None:
    result = runner.invoke(app, ["replay", "--start", "2024-01-15T16:00", "--end", "2024-01-15T19:00",
                                 "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "rolling-milp vs no control (same devices)" in text
    controlled = json.loads((tmp_path / "summary.json").read_text())
    reference = json.loads((tmp_path / "no-control" / "summary.json").read_text())
    assert controlled["controller"]["strategy"] == "rolling-milp" and controlled["controller"]["decisions"] == 11
    assert reference["controller"]["strategy"] == "none"
    assert set(controlled["devices"]) == set(reference["devices"]) and len(controlled["devices"]) == 12
    reported = float(text.split("kWh over the period, ")[1].split(" % less")[0])
    p_unb = {name: pd.read_parquet(folder / "metrics.parquet")["p_unb_kw_f0"].sum() / 60.0
             for name, folder in (("ctl", tmp_path), ("ref", tmp_path / "no-control"))}
    assert reported == pytest.approx(100 * (1 - p_unb["ctl"] / p_unb["ref"]), abs=0.06)
    assert "KPIs: rolling-milp vs no control" in text and "max VUF, %" in text
    assert ("is no worse than no control on any KPI" in text) != ("flagged: rolling-milp is worse" in text)
