"""A run folder read into the view's timeline, on a feeder other than the IEEE LV one: the IEEE 13-node feeder
(4.16 kV, no coordinates: tree layout), its bundled day at 1 h ticks without devices or controller. The
timeline's ticks are compared with the Parquet tables read here; a folder of another feeder is refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from controllers.online.settings import ControllerSettings, Strategy
from devices.fleet import FleetSpec
from phasetwin.run.replay import replay
from phasetwin.run.scenario import Scenario
from phasetwin.view.document import worst_phase_vm_pu
from phasetwin.view.runfolder import RunFolderError, read_run_folder
from streams.runfolder.matrix import read_frame


@pytest.fixture(scope="module")
def ieee13_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("view13") / "run"
    replay(Scenario(feeder="ieee13", tick_s=3600, fleet=FleetSpec(psd=0, pess=0),
                    controller=ControllerSettings(strategy=Strategy.NONE), out=out))
    return out


def test_the_timeline_holds_the_tables_tick_by_tick(ieee13_run: Path) -> None:
    timeline = read_run_folder(ieee13_run)
    metrics = pd.read_parquet(ieee13_run / "metrics.parquet")
    voltages = read_frame(ieee13_run / "voltages_pu.parquet")
    assert timeline.count() == len(metrics) == 24
    assert not timeline.drawing.from_coordinates and len(timeline.drawing.bus_ids) == 14
    assert timeline.control_period_s is None and timeline.reference is None and timeline.finished
    for k in (0, 13, 23):
        t = timeline.at(k)
        assert t.tick == k and pd.Timestamp(t.time_utc) == metrics["time_utc"].iloc[k]
        assert t.vuf_max_pct == metrics["vuf_max_pct"].iloc[k]
        columns = [[f"{b}_{p}" for p in "ABC"] for b in timeline.drawing.bus_ids]
        table = np.array([[voltages[c].iloc[k] for c in bus] for bus in columns], dtype=float)
        np.testing.assert_array_equal(np.asarray(t.vm_pu, dtype=float), table)
        farthest = [row[np.nanargmax(np.abs(row - 1.0))] if np.isfinite(row).any() else np.nan for row in table]
        np.testing.assert_allclose(worst_phase_vm_pu(table), farthest)


def test_a_folder_of_another_feeder_is_refused(ieee13_run: Path, tmp_path: Path) -> None:
    folder = tmp_path / "moved"
    folder.mkdir()
    for item in ieee13_run.iterdir():
        (folder / item.name).symlink_to(item)
    (folder / "scenario.json").unlink()
    scenario = json.loads((ieee13_run / "scenario.json").read_text()) | {"feeder": "cigre-mv"}
    (folder / "scenario.json").write_text(json.dumps(scenario))
    with pytest.raises(RunFolderError, match=r"voltages_pu.parquet lacks \d+ column\(s\) of feeder 'cigre"):
        read_run_folder(folder)


def test_a_folder_without_a_scenario_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RunFolderError, match=r"no scenario.json; expected a run folder written by phasetwin"):
        read_run_folder(tmp_path)
