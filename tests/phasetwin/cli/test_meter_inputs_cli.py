"""Bring your own meter data (issue 17): partial metering, data you can trust, and --rephase with phase-labelled
data, through the `phasetwin replay` command on the IEEE European LV feeder.

Every file here is written from the bundled day (wide form, one column ``<customer>_<phase as measured>`` per
customer, kW); the expected figures are computed from that file with pandas, apart from the twin.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from controllers.planning.plan_file import write_plan
from phasetwin.cli.main import app
from twin.feeders import open_feeder
from twin.network import Feeder
from twin.phase import Phase

runner = CliRunner()
PERIOD = ["--start", "2024-01-15T18:00", "--end", "2024-01-15T18:30"]
PLAIN = ["--psd", "0", "--pess", "0", "--controller", "none", "--no-baseline"]
N_TICKS = 30
FIRST = 18 * 60  # row of 18:00 in the 1-minute day


@pytest.fixture(scope="module")
def ieee() -> tuple[Feeder, pd.DataFrame]:
    """The feeder and its day as a wide frame: time + one column per customer, named by its phase."""
    entry = open_feeder("ieee-european-lv")
    feeder = entry.load_feeder()
    assert entry.load_data is not None
    table = entry.load_data(feeder)
    columns = {"time": [t.isoformat() for t in table.time_utc]}
    for i, c in enumerate(feeder.customers):
        columns[f"{c.id}_{c.phases[0].name}"] = table.p_kw[:, i, 0]
    return feeder, pd.DataFrame(columns)


def _replay(tmp_path: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["replay", "--out", str(tmp_path / "run"), *PERIOD, *PLAIN, *args])
    text = " ".join(result.output.split())
    assert "Traceback" not in result.output
    if result.exit_code != 0:
        assert result.exit_code == 2, result.output
        assert text.count("error:") == 1, result.output
    return result.exit_code, text


def _csv(frame: pd.DataFrame, path: Path) -> str:
    frame.to_csv(path, index=False)
    return str(path)


# --- bad input: one message, exit 2, no traceback ---------------------------------------------------------------


def test_ten_of_55_metered_is_refused_by_default_with_the_remedy(tmp_path: Path, ieee: tuple[Feeder, pd.DataFrame]
                                                                   ) -> None:
    _, day = ieee
    code, text = _replay(tmp_path, "--data", _csv(day.iloc[:, :11], tmp_path / "ten.csv"))
    assert code == 2
    assert "45 customer(s) of feeder 'ieee-european-lv' with no data: 'LOAD11', 'LOAD12'" in text
    assert "'LOAD55'; give their data or a policy for them: --unmetered zero, profile or profile:ANNUAL_KWH.csv" in text


def test_an_extra_meter_is_refused_by_default_with_the_remedy(tmp_path: Path, ieee: tuple[Feeder, pd.DataFrame]
                                                              ) -> None:
    _, day = ieee
    code, text = _replay(tmp_path, "--data", _csv(day.assign(STRANGER_A=1.0), tmp_path / "extra.csv"))
    assert code == 2
    assert ("1 data customer(s) not in feeder 'ieee-european-lv': 'STRANGER'; remove them from the data or drop "
            "them with --unknown-meters ignore") in text


def test_watts_declared_as_kw_are_named_as_a_unit_problem(tmp_path: Path, ieee: tuple[Feeder, pd.DataFrame]) -> None:
    _, day = ieee
    watts = day.copy()
    watts.iloc[:, 1:] *= 1000.0
    median_kw = float(np.median(watts.iloc[:, 1:].abs().mean()))
    code, text = _replay(tmp_path, "--data", _csv(watts, tmp_path / "w.csv"))
    assert code == 2
    assert f"the median customer load is {median_kw:.6g} kW read as kW" in text
    assert ("the values look like W, not kW: use --unit W if they are power, or --unit Wh if they are energy "
            "per 60 s") in text
    code, _ = _replay(tmp_path, "--data", str(tmp_path / "w.csv"), "--unit", "W")
    assert code == 0


def test_units_are_case_insensitive(tmp_path: Path, ieee: tuple[Feeder, pd.DataFrame]) -> None:
    _, day = ieee
    path = _csv(day, tmp_path / "kw.csv")
    energies = []
    for unit in ("kW", "kw", "KW"):
        code, _ = _replay(tmp_path, "--data", path, "--unit", unit)
        assert code == 0
        energies.append(json.loads((tmp_path / "run" / "summary.json").read_text())["energy_kwh"])
    assert energies[0] == energies[1] == energies[2]


def test_a_text_cell_is_refused_naming_file_line_column_and_value(tmp_path: Path,
                                                                  ieee: tuple[Feeder, pd.DataFrame]) -> None:
    _, day = ieee
    bad = day.astype(object)
    bad.loc[5, "LOAD7_B"] = "n/a"
    path = _csv(bad, tmp_path / "na.csv")
    code, text = _replay(tmp_path, "--data", path)
    assert code == 2
    assert (f"{path}: 1 problem(s): 1. column 'LOAD7_B': 1 value(s) are not finite numbers: 'n/a' at line 7; write "
            "numbers, and leave the cell of a missing value empty") in text


def test_a_gap_is_refused_naming_customer_time_and_remedy_and_fill_gaps_repairs_it(
    tmp_path: Path, ieee: tuple[Feeder, pd.DataFrame]
) -> None:
    _, day = ieee
    gap = day.copy()
    gap.loc[FIRST + 5 : FIRST + 11, "LOAD7_B"] = np.nan  # 7 empty cells, 18:05 .. 18:11
    path = _csv(gap, tmp_path / "gap.csv")
    code, text = _replay(tmp_path, "--data", path)
    assert code == 2
    assert ("meter data have gaps in the period; set --fill-gaps to 7 (steps of 60 s) to carry the last value over "
            "the gaps, or choose a period without gaps: 1 problem(s): 1. customer 'LOAD7': 1 gap(s) of NaN on "
            "terminal(s) 1: 7 step(s) 2024-01-15T18:05:00+00:00 .. 2024-01-15T18:11:00+00:00") in text
    code, text = _replay(tmp_path, "--data", path, "--fill-gaps", "7")
    assert code == 0
    quality = json.loads((tmp_path / "run" / "data_quality.json").read_text())
    assert (quality["max_fill_steps"], quality["quality"]["nan_values"], quality["quality"]["filled_values"]) == (
        7, 7, 7)
    assert "data: 1440 rows read, 7 empty cells, 7 cells filled; 55 of 55 customers metered" in text
    carried = gap.loc[FIRST + 4, "LOAD7_B"]
    loads = pd.read_parquet(tmp_path / "run" / "metrics.parquet")["load_b_kw_f0"].to_numpy()
    expected = day.iloc[FIRST : FIRST + N_TICKS].filter(like="_B").sum(axis=1).to_numpy()
    expected[5:12] += carried - day.loc[FIRST + 5 : FIRST + 11, "LOAD7_B"].to_numpy()
    np.testing.assert_allclose(loads, expected, atol=1e-9)


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ("bogus", "unmetered policy 'bogus': expected error, zero, profile or profile:FILE"),
        ("zero:x.csv", "unmetered policy 'zero:x.csv': only profile takes a file (profile:ANNUAL_KWH.csv)"),
    ],
)
def test_a_bad_unmetered_policy_is_refused(tmp_path: Path, policy: str, message: str) -> None:
    code, text = _replay(tmp_path, "--unmetered", policy)
    assert code == 2 and message in text


def test_an_annual_energy_file_that_misses_customers_is_refused(tmp_path: Path,
                                                               ieee: tuple[Feeder, pd.DataFrame]) -> None:
    _, day = ieee
    annual = tmp_path / "annual.csv"
    annual.write_text("customer,annual_kwh\nLOAD12,3000\nLOAD13,lots\nNOBODY,1\n")
    code, text = _replay(tmp_path, "--data", _csv(day.iloc[:, :11], tmp_path / "ten.csv"),
                         "--unmetered", f"profile:{annual}")
    assert code == 2
    assert f"{annual}: annual energies (--unmetered profile:FILE): 3 problem(s):" in text
    assert "line 3: annual_kwh 'lots' for 'LOAD13' is not a number ≥ 0" in text
    assert "1 customer(s) not in feeder 'ieee-european-lv': 'NOBODY'" in text
    assert "no annual energy for 43 unmetered customer(s): 'LOAD11', 'LOAD14'" in text


# --- partial metering: exact counts and the loads the twin sees ------------------------------------------------


def _metered_ids(feeder: Feeder, share: float) -> list[str]:
    """Every k-th customer, spread along the feeder: round(share · 55) of them."""
    ids = [c.id for c in feeder.customers]
    n = round(share * len(ids))
    return [ids[i] for i in np.linspace(0, len(ids) - 1, n).round().astype(int)]


@pytest.mark.slow
@pytest.mark.parametrize("share", [0.1, 0.5, 1.0])
def test_partial_metering_counts_are_exact_and_loads_follow_each_policy(
    tmp_path: Path, ieee: tuple[Feeder, pd.DataFrame], share: float
) -> None:
    feeder, day = ieee
    metered = _metered_ids(feeder, share)
    unmetered = [c.id for c in feeder.customers if c.id not in metered]
    columns = [f"{c.id}_{c.phases[0].name}" for c in feeder.customers if c.id in metered]
    # two meters the feeder does not have: dropped and counted under --unknown-meters ignore
    data = day[["time", *columns]].assign(EXTRA1_A=5.0, EXTRA2_C=7.0)
    path = _csv(data, tmp_path / "meters.csv")
    annual_kwh = {cid: 1000.0 + 50.0 * k for k, cid in enumerate(unmetered)}
    annual = tmp_path / "annual.csv"
    annual.write_text("customer,annual_kwh\n" + "".join(f"{c},{e}\n" for c, e in annual_kwh.items()))
    mean_kw = day[columns].mean(axis=1).to_numpy()  # the metered customers' mean profile, per minute of the day
    phase_of = {c.id: c.phases[0].name for c in feeder.customers}
    for policy in ("error", "zero", "profile", f"profile:{annual}"):
        code, text = _replay(tmp_path, "--data", path, "--unmetered", policy, "--unknown-meters", "ignore")
        if policy == "error" and unmetered:
            assert code == 2 and f"{len(unmetered)} customer(s) of feeder 'ieee-european-lv' with no data" in text
            continue
        assert code == 0
        summary = json.loads((tmp_path / "run" / "summary.json").read_text())
        assert summary["metering"] == {"customers": 55, "metered": len(metered), "unmetered": len(unmetered),
                                       "unmetered_policy": policy, "unknown_meters": 2,
                                       "unknown_meters_policy": "ignore"}
        record = json.loads((tmp_path / "run" / "data_quality.json").read_text())["metering"]
        assert record["unmetered_ids"] == unmetered and record["unknown_meter_ids"] == ["EXTRA1", "EXTRA2"]
        unknown_note = "2 unknown meter(s) (ignore)"
        assert f"{len(metered)} of 55 customers metered" in text and unknown_note in text
        metrics = pd.read_parquet(tmp_path / "run" / "metrics.parquet")
        for ph in "ABC":
            expected = day[[c for c in columns if c.endswith(f"_{ph}")]].sum(axis=1).to_numpy()
            if policy == "profile":
                expected = expected + mean_kw * sum(1 for c in unmetered if phase_of[c] == ph)
            elif policy.startswith("profile:"):
                level = sum(annual_kwh[c] for c in unmetered if phase_of[c] == ph) / 8760.0 / mean_kw.mean()
                expected = expected + mean_kw * level
            np.testing.assert_allclose(metrics[f"load_{ph.lower()}_kw_f0"], expected[FIRST : FIRST + N_TICKS],
                                       rtol=1e-9, atol=1e-9)


# --- --rephase with phase-labelled data ------------------------------------------------------------------------


def test_rephase_reads_phase_labels_as_measured_and_moves_the_load(tmp_path: Path,
                                                                   ieee: tuple[Feeder, pd.DataFrame]) -> None:
    """LOAD1 (A) and LOAD2 (B) swap phases by plan; their columns keep the phase they were measured on."""
    feeder, day = ieee
    moved = {c.id: c.phases[0] for c in feeder.customers if c.id in ("LOAD1", "LOAD2")}
    assert moved == {"LOAD1": Phase.A, "LOAD2": Phase.B}
    plan = write_plan(tmp_path / "plan.json", feeder=feeder.name,
                      configurations={"LOAD1": (Phase.B,), "LOAD2": (Phase.A,)})
    path = _csv(day, tmp_path / "meters.csv")
    code, _ = _replay(tmp_path, "--data", path)
    assert code == 0
    before = pd.read_parquet(tmp_path / "run" / "metrics.parquet")
    code, text = _replay(tmp_path, "--data", path, "--rephase", str(plan))
    assert code == 0, text
    after = pd.read_parquet(tmp_path / "run" / "metrics.parquet")
    rows = slice(FIRST, FIRST + N_TICKS)
    shift = (day["LOAD1_A"] - day["LOAD2_B"]).to_numpy()[rows]
    assert np.abs(shift).max() > 0.1
    np.testing.assert_allclose(after["load_b_kw_f0"] - before["load_b_kw_f0"], shift, atol=1e-9)
    np.testing.assert_allclose(after["load_a_kw_f0"] - before["load_a_kw_f0"], -shift, atol=1e-9)
    np.testing.assert_allclose(after["load_c_kw_f0"], before["load_c_kw_f0"], atol=1e-9)


def test_liege_with_a_tenth_metered_replays_their_loads_alone_under_zero(tmp_path: Path) -> None:
    """2 of the 23 Liège customers metered (Parquet, phase labels as measured), a day at 15-minute ticks: the
    aggregate load per feeder and phase is the sum of their raw columns."""
    from twin.loaders import liege

    raw = pd.read_parquet(liege.default_folder() / "timeseries_net_kw.parquet")
    ids = sorted({c.split("_")[0] for c in raw.columns})
    metered = ids[::12]
    assert len(metered) == round(0.1 * len(ids))
    raw[[c for c in raw.columns if c.split("_")[0] in metered]].to_parquet(tmp_path / "tenth.parquet")
    result = runner.invoke(app, ["replay", "--feeder", "liege-lv", "--data", str(tmp_path / "tenth.parquet"),
                                 "--unmetered", "zero", "--start", "2016-06-01", "--tick", "900",
                                 "--out", str(tmp_path / "run"), *PLAIN])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert (summary["metering"]["metered"], summary["metering"]["unmetered"]) == (2, 21)
    customers = pd.read_csv(liege.default_folder() / "customers.csv", dtype={"customer_id": str})
    feeder_of = dict(zip(customers["customer_id"], customers["feeder"], strict=True))
    day = raw[(raw.index >= "2016-06-01") & (raw.index < "2016-06-02")]
    metrics = pd.read_parquet(tmp_path / "run" / "metrics.parquet")
    for f in (0, 1):
        for ph in "ABC":
            cols = [c for c in day.columns if c.split("_")[0] in metered and feeder_of[c.split("_")[0]] == f
                    and c.endswith(f"_{ph}")]
            np.testing.assert_allclose(metrics[f"load_{ph.lower()}_kw_f{f}"], day[cols].sum(axis=1).to_numpy(),
                                       atol=1e-9)
