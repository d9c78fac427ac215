"""`phasetwin replay --config`: the scenario file, CLI overrides, the recorded scenario.toml and its reproduction."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from devices.fleet import FleetSpec, choose_devices
from phasetwin.cli.main import app
from phasetwin.run.scenario import Scenario
from phasetwin.run.scenario_file import read_scenario_file, scenario_hash, scenario_toml
from twin.loaders.ieee_european_lv import load_feeder

runner = CliRunner()
TABLES = ("voltages_pu.parquet", "transformer.parquet", "metrics.parquet", "devices.parquet", "acks.parquet")


def _write_config(folder: Path) -> Path:
    """Two hours, three PSDs, one of them moved by a scripted schedule (a file input), no controller."""
    psd = choose_devices(load_feeder(), FleetSpec(psd=3))[0].device_id
    (folder / "moves.csv").write_text(f"time_utc,device_id,action,phase\n2024-01-15T06:30Z,{psd},set_phase,A\n"
                                      f"2024-01-15T07:10Z,{psd},set_phase,C\n")
    config = folder / "run.toml"
    config.write_text('start_utc = 2024-01-15T06:00:00Z\nend_utc = 2024-01-15T08:00:00Z\nout = "runs/first"\n'
                      'schedule = "moves.csv"\n[fleet]\npsd = 3\n[replay]\nbaseline = false\n')
    return config


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("config")
    result = runner.invoke(app, ["replay", "--config", str(_write_config(folder))])
    assert result.exit_code == 0, result.output
    return folder


def test_the_file_sets_the_run_and_relative_paths_are_the_files(first_run: Path) -> None:
    out = first_run / "runs" / "first"
    recorded = tomllib.loads((out / "scenario.toml").read_text())
    assert recorded["schedule"] == str(first_run / "moves.csv")
    assert recorded["fleet"]["psd"] == 3 and recorded["controller"]["strategy"] == "none"
    assert list(recorded["inputs"]) == [str(first_run / "moves.csv")]
    summary = pd.read_json(out / "summary.json", typ="series")
    assert summary["ticks"] == 120
    acks = pd.read_parquet(out / "acks.parquet")
    assert (acks["status"] == "applied").sum() == 2  # the two scripted moves, nothing else commands


def test_a_run_reproduced_from_its_scenario_toml_records_identical_tables(first_run: Path) -> None:
    out, again = first_run / "runs" / "first", first_run / "runs" / "again"
    result = runner.invoke(app, ["replay", "--config", str(out / "scenario.toml"), "--out", str(again)])
    assert result.exit_code == 0, result.output
    for name in TABLES:
        pd.testing.assert_frame_equal(pd.read_parquet(out / name), pd.read_parquet(again / name), check_exact=True)
    first = read_scenario_file(out / "scenario.toml")
    second = read_scenario_file(again / "scenario.toml")
    assert second.scenario.out != first.scenario.out
    assert scenario_hash(second.scenario, second.inputs) == scenario_hash(first.scenario, first.inputs)


def test_options_given_on_the_command_line_override_the_file(first_run: Path) -> None:
    out = first_run / "runs" / "coarse"
    result = runner.invoke(app, ["replay", "--config", str(first_run / "run.toml"), "--out", str(out),
                                 "--tick", "300", "--psd", "2"])
    assert result.exit_code == 0, result.output
    recorded = read_scenario_file(out / "scenario.toml").scenario
    assert (recorded.tick_s, recorded.fleet.psd, recorded.schedule) == (300, 2, first_run / "moves.csv")
    assert len(pd.read_parquet(out / "metrics.parquet")) == 24


def test_a_changed_input_file_refuses_the_reproduction(first_run: Path, tmp_path: Path) -> None:
    recorded = (first_run / "runs" / "first" / "scenario.toml").read_text()
    copy = tmp_path / "moves.csv"
    copy.write_text((first_run / "moves.csv").read_text())
    (tmp_path / "scenario.toml").write_text(recorded.replace(str(first_run / "moves.csv"), str(copy)))
    copy.write_text(copy.read_text().replace("set_phase,C", "set_phase,B"))
    result = runner.invoke(app, ["replay", "--config", str(tmp_path / "scenario.toml")])
    assert result.exit_code == 2
    assert f"{copy}changed" in "".join(result.output.split()) and "Traceback" not in result.output


@pytest.mark.parametrize(("text", "message"), [
    ("tick_s = -5\n", "tick_s: Input should be greater than 0"),
    ("[fleet]\npsd = 'ten'\n", "fleet.psd: Input should be a valid integer"),
    ("feeder = 'x'\nbogus = 1\n", "bogus: Extra inputs are not permitted"),
    ("tick_s = \n", "not valid TOML"),
])
def test_a_bad_scenario_file_is_one_message_and_exit_2(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "bad.toml").write_text(text)
    result = runner.invoke(app, ["replay", "--config", str(tmp_path / "bad.toml")])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()) and "Traceback" not in result.output


def test_every_field_survives_the_toml_round_trip(tmp_path: Path) -> None:
    scenario = Scenario.model_validate({
        "feeder": "liege-lv", "tick_s": 900, "start_utc": "2016-06-01T00:00:00Z", "scale_phase": 1,
        "scale_factor": 2.0, "fleet": {"psd": 2, "pess": 1, "pess_access": "single",
                                       "explicit": [{"customer_id": "X", "kind": "psd"}]},
        "controller": {"strategy": "greedy", "forecast": "persistence", "solver": {"time_limit_s": 0.3}},
        "out": str(tmp_path / "o"),
    })
    (tmp_path / "s.toml").write_text(scenario_toml(scenario))
    assert read_scenario_file(tmp_path / "s.toml").scenario == scenario


def test_every_replay_option_has_its_place_in_a_scenario_file() -> None:
    import typer.main

    from phasetwin.run.scenario_file import CLI_FIELDS, ReplayOptions

    command = typer.main.get_command(app).commands["replay"]  # type: ignore[attr-defined]
    options = {p.name for p in command.params} - {"config"}
    assert options - set(CLI_FIELDS) == set()
    for name in options:
        where = CLI_FIELDS[name]
        model = ReplayOptions if where[0] == "replay" else Scenario
        path = where[1:] if where[0] == "replay" else where
        assert path[0] in model.model_fields, name


def test_the_solver_backend_option_lands_in_the_controller_settings_and_defaults_to_mathopt() -> None:
    from controllers.sparse_milp import Backend
    from phasetwin.run.options import ScenarioOptions

    assert ScenarioOptions().scenario().controller.solver.backend is Backend.MATHOPT
    chosen = ScenarioOptions(solver_backend=Backend.HIGHSPY).scenario()
    assert chosen.controller.solver.backend is Backend.HIGHSPY
    assert tomllib.loads(scenario_toml(chosen))["controller"]["solver"]["backend"] == "highspy"
