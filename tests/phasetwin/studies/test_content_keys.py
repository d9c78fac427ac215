"""Studies and recorded scenarios keyed by the content of every file a run reads (issue 29, item 1).

A stock pandapower network (Kerber Landnetz, saved with ``pp.to_json`` as users have it) needs assumptions for
what it lacks; they are options (``--assume``, ``[feeders.assumptions]``), the network file is resolved and
hashed, and a changed byte in any input reruns exactly the tasks that read it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandapower as pp
import pandapower.networks as pn
import pandas as pd
import pytest
from typer.testing import CliRunner

from phasetwin.cli.main import app
from phasetwin.run.scenario import Scenario
from phasetwin.run.scenario_file import input_hashes, read_scenario_file
from twin.loaders import pandapower_json
from twin.loaders.assumptions import parse_feeder_spec
from twin.loaders.opendss import referenced_files

runner = CliRunner()
ZERO_SEQUENCE = "r0/r1=4,x0/x1=4,c0/c1=1"
EXT_GRID = "s_sc_max_mva=100,rx_max=0.1,x0x_max=1,r0x0_max=0.1"
PLAIN = ["--psd", "0", "--pess", "0", "--controller", "none", "--no-baseline"]


def _network(folder: Path, make: object = pn.create_kerber_landnetz_freileitung_1) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "net.json"
    pp.to_json(make(), str(path))  # type: ignore[operator]
    return path


def _day(network: Path, path: Path, *, leave_out: int = 0) -> list[str]:
    """Two hours of hourly per-terminal kW of the network's customers (all but the last ``leave_out``)."""
    feeder = pandapower_json.load_feeder(network, spec=parse_feeder_spec(
        f"{network};zero-sequence={ZERO_SEQUENCE};ext-grid={EXT_GRID}"))
    rng = np.random.default_rng(3)
    columns: dict[str, object] = {"time": ["2024-01-15T00:00:00Z", "2024-01-15T01:00:00Z", "2024-01-15T02:00:00Z"]}
    customers = feeder.customers[:len(feeder.customers) - leave_out]
    for c in customers:
        for terminal in range(1, c.n_phases + 1):
            columns[f"{c.id}_{terminal}"] = np.round(rng.uniform(0.2, 1.0, 3), 3)
    pd.DataFrame(columns).to_csv(path, index=False)
    return [c.id for c in feeder.customers[len(customers):]]


def _triple_line_lengths(path: Path) -> None:
    net = pp.from_json(str(path))
    net.line["length_km"] *= 3
    pp.to_json(net, str(path))


def _to_run(output: str) -> int:
    match = re.search(r"(\d+) of (\d+) task\(s\) to run", output)
    assert match, output
    return int(match.group(1))


def _pending_feeders(study: Path) -> list[str]:
    from phasetwin.studies.execute import pending
    from phasetwin.studies.grid import task_grid
    from phasetwin.studies.spec import read_study

    spec, folder = read_study(study)
    return [t.feeder for t in pending(task_grid(spec, study_dir=folder), folder)]


def test_a_changed_network_or_data_file_reruns_exactly_its_tasks(tmp_path: Path) -> None:
    """Two feeders, each a stock network file with its data; the first in the ``PATH;key=value`` form every
    SimBench/Kerber user writes, the second with ``[feeders.assumptions]``. Tripling the line lengths of the
    first file makes its tasks (and only them) to run again; a changed data byte of the second likewise."""
    net_a = _network(tmp_path / "a")
    net_b = _network(tmp_path / "b", pn.create_kerber_landnetz_kabel_1)
    _day(net_a, tmp_path / "a" / "day.csv")
    _day(net_b, tmp_path / "b" / "day.csv")
    study = tmp_path / "study.toml"
    study.write_text(f'''tick_s = 3600
[[feeders]]
feeder = "a/net.json;zero-sequence={ZERO_SEQUENCE};ext-grid={EXT_GRID}"
data = "a/day.csv"
[[feeders]]
feeder = "b/net.json"
data = "b/day.csv"
[feeders.assumptions]
zero-sequence = "{ZERO_SEQUENCE}"
ext-grid = "{EXT_GRID}"
[[periods]]
start_utc = 2024-01-15T00:00:00Z
end_utc = 2024-01-15T02:00:00Z
[[fleets]]
psd = 0
[[strategies]]
strategy = "none"
''')
    run = runner.invoke(app, ["study", "run", str(study), "--workers", "0"])
    assert run.exit_code == 0, run.output
    plan = runner.invoke(app, ["study", "plan", str(study)])
    assert _to_run(plan.output) == 0, plan.output
    # labels: the file stem told apart by place, never the path-plus-assumptions string
    assert "net#1" in plan.output and "net#2" in plan.output and "zero-sequence" not in plan.output
    assert "…" not in plan.output and "…" not in run.output, "no cell is cut at 80 columns"

    _triple_line_lengths(net_a)
    plan = runner.invoke(app, ["study", "plan", str(study)])
    assert _to_run(plan.output) == 1, plan.output
    assert _pending_feeders(study) == ["net#1"]

    run = runner.invoke(app, ["study", "run", str(study), "--workers", "0"])
    assert run.exit_code == 0 and "1 to run" in run.output, run.output
    data_b = tmp_path / "b" / "day.csv"
    data_b.write_text(data_b.read_text().replace("0.", "0.0", 1))  # one byte more in one value
    assert _pending_feeders(study) == ["net#2"]


def test_replay_records_assumptions_and_every_input_and_replays_from_elsewhere(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--assume`` on a stock network, relative paths, an unmetered customer drawing a profile scaled to its
    annual energy: scenario.toml holds the absolute network path, the assumptions as a table and the hash of the
    network, the data and the annual-energy file; ``replay --config`` from another folder reproduces the run, and
    refuses once the network changed."""
    monkeypatch.chdir(tmp_path)
    net = _network(tmp_path / "grid")
    missing = _day(net, tmp_path / "grid" / "day.csv", leave_out=1)
    (tmp_path / "grid" / "annual.csv").write_text(f"customer,annual_kwh\n{missing[0]},3500\n")
    result = runner.invoke(app, [
        "replay", "--feeder", "grid/net.json", "--assume", f"zero-sequence={ZERO_SEQUENCE}",
        "--assume", f"ext-grid={EXT_GRID}", "--data", "grid/day.csv", "--unmetered", "profile:grid/annual.csv",
        "--tick", "3600", "--end", "2024-01-15T02:00", "--out", "run", *PLAIN])
    assert result.exit_code == 0, result.output
    recorded = read_scenario_file(tmp_path / "run" / "scenario.toml")
    assert recorded.scenario.feeder == str(net.resolve())
    assert recorded.scenario.assumptions.zero_sequence == ZERO_SEQUENCE
    assert set(recorded.inputs) == {str(net.resolve()), str((tmp_path / "grid" / "day.csv").resolve()),
                                    str((tmp_path / "grid" / "annual.csv").resolve())}

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    again = runner.invoke(app, ["replay", "--config", str(tmp_path / "run" / "scenario.toml"), "--out", "again"])
    assert again.exit_code == 0, again.output
    assert (elsewhere / "again" / "scenario.toml").is_file()

    _triple_line_lengths(net)
    refused = runner.invoke(app, ["replay", "--config", str(tmp_path / "run" / "scenario.toml")])
    assert refused.exit_code == 2 and "net.json changed" in " ".join(refused.output.split()), refused.output


def test_assumptions_are_options_and_never_part_of_the_path() -> None:
    scenario = Scenario(feeder=f"net.json;zero-sequence={ZERO_SEQUENCE}")
    assert scenario.feeder == "net.json" and scenario.assumptions.zero_sequence == ZERO_SEQUENCE
    assert scenario.feeder_spec == f"net.json;zero-sequence={ZERO_SEQUENCE}" and scenario.feeder_label == "net"
    with pytest.raises(ValueError, match=r"a named feeder takes no assumptions"):
        Scenario(feeder="ieee-european-lv", assumptions={"zero-sequence": ZERO_SEQUENCE})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="r0/r1"):
        Scenario(feeder="net.json", assumptions={"zero-sequence": "r0/r1=-1,x0/x1=4"})  # type: ignore[arg-type]
    bad = runner.invoke(app, ["replay", "--feeder", "net.json", "--assume", "zero-seq=1"])
    assert bad.exit_code == 2 and "--assume 'zero-seq=1'" in " ".join(bad.output.split()), bad.output


def test_an_opendss_circuit_is_hashed_with_every_file_it_redirects_to_or_loads(tmp_path: Path) -> None:
    (tmp_path / "shapes").mkdir()
    (tmp_path / "shapes" / "house.csv").write_text("1\n0.5\n")
    (tmp_path / "lines.dss").write_text("new linecode.c nphases=3 r1=0.1 x1=0.1 units=km\n")
    (tmp_path / "loads.dss").write_text(
        "! a comment naming file=ignored.csv\nnew loadshape.h npts=2 minterval=60 mult=(file=shapes/house.csv)\n")
    (tmp_path / "master.dss").write_text("clear\nnew circuit.x\nRedirect lines.dss\ncompile 'loads.dss'\n"
                                         "Buscoords coords.csv // positions\n")
    (tmp_path / "coords.csv").write_text("a,0,0\n")
    assert set(referenced_files(tmp_path / "master.dss")) == {
        (tmp_path / name).resolve() for name in ("lines.dss", "loads.dss", "shapes/house.csv", "coords.csv")}
    scenario = Scenario(feeder=str(tmp_path / "master.dss"))
    before = input_hashes(scenario)
    assert len(before) == 5
    (tmp_path / "shapes" / "house.csv").write_text("1\n0.6\n")
    after = input_hashes(scenario)
    assert [k for k in before if before[k] != after[k]] == [str((tmp_path / "shapes" / "house.csv").resolve())]


def _two_days(network: Path, path: Path) -> None:
    """Two days of hourly kW, every customer but the last metered, plus one meter not on the feeder."""
    _day(network, path, leave_out=1)
    frame = pd.read_csv(path)
    times = pd.date_range("2024-01-15", periods=49, freq="h", tz="UTC")
    frame = pd.concat([frame.iloc[[i % len(frame)]] for i in range(49)], ignore_index=True)
    frame["time"] = times.strftime("%Y-%m-%dT%H:%M:%SZ")
    frame["stranger_1"] = 0.5
    frame.to_csv(path, index=False)


def test_study_settings_hold_under_every_period_form_and_per_feeder(tmp_path: Path) -> None:
    """``[scenario] unmetered`` once was ignored while the days of ``every = "day"`` were found on the data (the
    feeder has an unmetered customer: refused); ``[[feeders]]`` now takes unmetered, unknown_meters, fill_gaps."""
    from phasetwin.studies.grid import task_grid
    from phasetwin.studies.spec import read_study

    net = _network(tmp_path)
    _two_days(net, tmp_path / "days.csv")
    feeder = f'feeder = "net.json"\ndata = "days.csv"\n[feeders.assumptions]\nzero-sequence = "{ZERO_SEQUENCE}"\n' \
             f'ext-grid = "{EXT_GRID}"\n'
    common = '[[periods]]\nevery = "day"\n[[fleets]]\npsd = 0\n[[strategies]]\nstrategy = "none"\n'
    study = tmp_path / "shared.toml"
    study.write_text('tick_s = 3600\n[scenario]\nunmetered = "zero"\nunknown_meters = "ignore"\n'
                     f'[[feeders]]\n{feeder}{common}')
    spec, folder = read_study(study)
    tasks = task_grid(spec, study_dir=folder)
    assert [t.period for t in tasks] == ["2024-01-15T00:00..2024-01-16T00:00", "2024-01-16T00:00..2024-01-17T00:00"]
    assert {t.scenario.unmetered.rule.value for t in tasks} == {"zero"} and tasks[0].feeder == "net"

    study = tmp_path / "per-feeder.toml"
    study.write_text(f'tick_s = 3600\n[[feeders]]\nunmetered = "zero"\nunknown_meters = "ignore"\nfill_gaps = 0\n'
                     f'{feeder}{common}')
    spec, folder = read_study(study)
    s = task_grid(spec, study_dir=folder)[0].scenario
    assert (s.unmetered.rule.value, s.unknown_meters.value, s.data_fill_steps) == ("zero", "ignore", 0)


def test_run_ids_come_from_the_network_file_stem() -> None:
    from phasetwin.run.assemble import run_tags

    scenario = Scenario(feeder=f"/data/grids/kerber.json;zero-sequence={ZERO_SEQUENCE}")
    run_id, _ = run_tags(scenario, datetime(2024, 1, 15, tzinfo=UTC))
    assert run_id == "kerber-20240115T0000-60s-none"
    assert run_tags(Scenario(feeder="/data/feeder.dss"), datetime(2024, 1, 15, tzinfo=UTC))[0].startswith("feeder-")


def test_every_kind_of_input_file_is_in_the_key(tmp_path: Path) -> None:
    """Schedule, keyring, unmetered profile, plans, meter data, network: each file's bytes change the key; a
    device list is read into the scenario itself (fleet.explicit), so its content is in the key as well."""
    from phasetwin.run.scenario_file import scenario_hash

    files = {name: tmp_path / f"{name}.txt" for name in ("data", "schedule", "keyring", "annual", "rephase",
                                                          "seasonal", "net")}
    for path in files.values():
        path.write_text("1\n")
    (tmp_path / "net.json").write_text("{}")
    scenario = Scenario(feeder=str(tmp_path / "net.json"), data=files["data"], schedule=files["schedule"],
                        keyring=files["keyring"], unmetered=f"profile:{files['annual']}",  # type: ignore[arg-type]
                        rephase=files["rephase"], seasonal_plan=files["seasonal"])
    before = scenario_hash(scenario, input_hashes(scenario))
    assert len(input_hashes(scenario)) == 7
    for name, path in files.items():
        if name == "net":
            path = tmp_path / "net.json"
        original = path.read_text()
        path.write_text(original + " ")
        assert scenario_hash(scenario, input_hashes(scenario)) != before, name
        path.write_text(original)
    assert scenario_hash(scenario, input_hashes(scenario)) == before


def test_the_code_is_in_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A study filled by other code is run again: an edit to any source file, not a cache file, changes the code
    fingerprint, and a scenario's key follows the fingerprint."""
    from phasetwin.run import code_version, scenario_file

    package = tmp_path / "pkg"
    (package / "sub" / "__pycache__").mkdir(parents=True)
    (package / "a.py").write_text("X = 1\n")
    (package / "sub" / "b.py").write_text("Y = 2\n")
    before = code_version.source_fingerprint([package])
    (package / "sub" / "__pycache__" / "b.cpython-312.pyc").write_bytes(b"\0")
    (package / "notes.txt").write_text("not code")
    assert code_version.source_fingerprint([package]) == before
    (package / "sub" / "b.py").write_text("Y = 3\n")
    assert code_version.source_fingerprint([package]) != before
    edited = code_version.source_fingerprint([package])
    (package / "sub" / "b.py").rename(package / "b.py")  # same content, moved: another module
    assert code_version.source_fingerprint([package]) not in (before, edited)
    assert len(code_version.code_fingerprint()) == 64
    assert set(code_version.library_versions()) == set(code_version.RESULT_LIBRARIES)
    scenario = Scenario()
    key = scenario_file.scenario_hash(scenario, {})
    monkeypatch.setattr(scenario_file, "code_fingerprint", lambda: "0" * 64)
    assert scenario_file.scenario_hash(scenario, {}) != key
