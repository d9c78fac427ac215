"""`phasetwin meter-voltages` → `scramble-phases` → `identify` → `plan rephase --phases` on the bundled IEEE day.

The twin simulates the day on the feeder's true phases and writes what class-1.0 meters report (15-minute
means); 20 % of the records are scrambled; identification must recover the true phases, not the records.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from controllers.planning.plan_file import read_plan_file
from phasetwin.cli.main import app

runner = CliRunner()


@pytest.fixture(scope="module")
def scrambled_day(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("identify")
    result = runner.invoke(app, ["meter-voltages", "--class", "1.0", "--seed", "3", "--out", str(root / "meters.csv"),
                                 "--run-dir", str(root / "day")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["scramble-phases", "--share", "0.2", "--seed", "7", "--out", str(root / "records")])
    assert result.exit_code == 0, result.output
    return root


def _identify(root: Path, meters: Path, out: str, *extra: str) -> tuple[int, str]:
    result = runner.invoke(app, ["identify", str(meters), "--records", str(root / "records/recorded.json"),
                                 "--truth", str(root / "records/true.json"), "--out", str(root / out), *extra])
    return result.exit_code, result.output


@pytest.mark.slow
def test_scrambled_records_are_corrected_from_the_meters(scrambled_day: Path) -> None:
    root = scrambled_day
    code, output = _identify(root, root / "meters.csv", "id")
    assert code == 0, output
    recorded = read_plan_file(root / "records/recorded.json").configurations
    true = read_plan_file(root / "records/true.json").configurations
    assert sum(recorded[c] != true[c] for c in true) == 11  # 20 % of 55
    with (root / "id/phases.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 55
    for row in rows:
        assert row["true"] == true[row["customer_id"]] and row["recorded"] == recorded[row["customer_id"]]
        if row["flagged"] == "False":
            assert row["identified"] == row["true"]
    report = json.loads((root / "id/report.json").read_text())
    for method in ("correlation", "energy"):
        assert report["methods"][method]["score"]["accuracy"] >= 0.98
    identified = read_plan_file(root / "id/identified.json")
    assert identified.initial == recorded
    assert all(identified.configurations[r["customer_id"]] == r["true"] for r in rows if r["flagged"] == "False")


@pytest.mark.slow
def test_a_customer_without_data_is_reported_and_a_plan_starts_from_identified_phases(scrambled_day: Path) -> None:
    root = scrambled_day
    frame = pd.read_csv(root / "meters.csv", dtype={"terminal": str})
    frame[frame["meter"] != "LOAD7"].to_csv(root / "meters_no7.csv", index=False)
    code, output = _identify(root, root / "meters_no7.csv", "id7")
    assert code == 0, output
    report = json.loads((root / "id7/report.json").read_text())
    # LOAD7's load is in the transformer's phase powers but nobody measured it: energy cannot tell anyone apart,
    # the voltages still can
    assert report["methods"]["energy"]["high_confidence"] == 0
    assert report["methods"]["both"]["high_confidence"] >= 40
    with (root / "id7/phases.csv").open() as fh:
        row = next(r for r in csv.DictReader(fh) if r["customer_id"] == "LOAD7")
    assert (row["identified"], row["flagged"], row["reason"]) == ("", "True", "no meter data")
    assert json.loads((root / "id7/report.json").read_text())["customers_without_data"] == ["LOAD7"]
    recorded = read_plan_file(root / "records/recorded.json").configurations
    identified = read_plan_file(root / "id7/identified.json").configurations
    assert identified["LOAD7"] == recorded["LOAD7"]  # the record stands where nothing was identified
    result = runner.invoke(app, ["plan", "rephase", "--feeder", "ieee-european-lv", "--phases",
                                 str(root / "id7/identified.json"), "--check-days", "all", "--time-limit", "5",
                                 "--out", str(root / "plan")])
    assert result.exit_code == 0, result.output
    plan = read_plan_file(root / "plan/plan.json")
    assert plan.initial == identified and plan.initial != recorded
    # the report is strict JSON, and the console, report.json and table3.csv number the LV feeders alike
    report = json.loads((root / "plan/report.json").read_text(), parse_constant=lambda token: pytest.fail(token))
    with (root / "plan/table3.csv").open() as fh:
        table3 = {int(r["feeder"]) for r in csv.DictReader(fh)}
    shown = {int(n) for n in re.findall(r"^\W*feeder\s+(\d+)\s*$", result.output, flags=re.MULTILINE)}
    assert {f["feeder"] for f in report["feeders"]} == table3 == shown == {0}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("time_utc,meter,v_v\n", "missing column\\(s\\) terminal, p_kw"),
        ("time_utc,meter,terminal,v_v,p_kw\n2024-01-15T00:00:00+00:00,LOAD1,1,n/a,0.3\n"
         "2024-01-15T00:00:00+00:00,transformer,A,240,1\n", "row 2, column v_v: 'n/a' is not a number"),
        ("time_utc,meter,terminal,v_v,p_kw\n2024-01-15T00:00:00,LOAD1,1,230,0.3\n"
         "2024-01-15T00:00:00,transformer,A,240,1\n", "timestamps carry no offset"),
        ("time_utc,meter,terminal,v_v,p_kw\n2024-01-15T00:00:00+00:00,LOAD1,7,230,0.3\n"
         "2024-01-15T00:00:00+00:00,transformer,A,240,1\n", "meter 'LOAD1' has terminal '7'; expected 1, 2 or 3"),
        ("time_utc,meter,terminal,v_v,p_kw\n2024-01-15T00:00:00+00:00,LOAD1,1,230,0.3\n",
         "no rows of the reference meter 'transformer'"),
        ("time_utc,meter,terminal,v_v,p_kw\n2024-01-15T00:00:00+00:00,NOBODY,1,230,0.3\n"
         "2024-01-15T00:00:00+00:00,transformer,A,240,1\n", "meter\\(s\\) NOBODY are not customers of feeder"),
    ],
)
def test_bad_meter_files_get_one_message_and_exit_2(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "meters.csv"
    path.write_text(content)
    result = runner.invoke(app, ["identify", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    import re

    assert re.search(message, " ".join(result.output.split())), result.output


@pytest.mark.parametrize("test", ["model", "correlation"])
def test_watch_reports_a_moved_customer_with_the_time_it_was_noticed(tmp_path: Path, test: str) -> None:
    """Four days of the IEEE feeder with 11 shared profiles (benchmarks/phase_id_cases.py), LOAD45 moved to the
    next phase on day 3 at noon; the baseline is days 1-2, the watch a 1-day window stepped by an hour, by the
    modelled test (the default) and by the correlation vote."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
    from phase_id_cases import Move, case_feeder, profile_loads_kw, simulate

    from phasetwin.run.meter_readings import meter_voltages
    from streams.meters.voltages import write_meter_voltages
    from twin.smart_meter import MeterModel

    feeder = case_feeder("ieee", seed=1)
    who = [c.id for c in feeder.customers].index("LOAD45")
    to_phase = (int(feeder.customers[who].phases[0]) + 1) % 3
    load = profile_loads_kw(len(feeder.customers), n_profiles=11, days=4, tick_s=900, seed=1)
    truth = simulate(feeder, load, tick_s=900, move=Move(customer=who, to_phase=to_phase, at_interval=2 * 96 + 48))
    path = write_meter_voltages(tmp_path / "meters.csv", meter_voltages(truth, model=MeterModel(seed=1)))
    result = runner.invoke(app, ["identify", str(path), "--watch", "--baseline-days", "2", "--time-limit", "5",
                                 "--watch-test", test, "--out", str(tmp_path / "watch")])
    assert result.exit_code == 0, result.output
    moves = pd.read_csv(tmp_path / "watch/moves.csv")
    assert moves["customer_id"].tolist() == ["LOAD45"] and moves["to"].tolist() == ["ABC"[to_phase]]
    noticed = pd.Timestamp(moves["noticed_utc"][0])
    moved_at = truth.time_utc[0] + pd.Timedelta(hours=60)
    assert moved_at < noticed <= moved_at + pd.Timedelta(days=1)
    assert "moved: LOAD45" in result.output
    result = runner.invoke(app, ["identify", str(path), "--watch", "--baseline-days", "5", "--out",
                                 str(tmp_path / "bad")])
    assert result.exit_code == 2 and "--baseline-days 5" in result.output
    result = runner.invoke(app, ["identify", str(path), "--watch", "--watch-test", "vote", "--out",
                                 str(tmp_path / "bad")])
    assert result.exit_code == 2 and "--watch-test 'vote'" in result.output
