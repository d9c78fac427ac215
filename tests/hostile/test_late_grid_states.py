"""Issue 33, failure 3: nothing is lost from the run folder. Grid states that come late (a broker outage delays
them in real time) are written in their own rows; a tick with no state at all is written empty and counted
missing; the counts say complete, late-filled and missing.

First on the in-process bus (exact), then a real-time run whose Mosquitto is stopped for 6 s: every tick of
the run is in the run folder, those whose state came after its flush was due counted late-filled."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from support.servers import MosquittoServer

from phasetwin.run.replay import replay
from phasetwin.run.scenario import Scenario
from streams import topics
from streams.bus import LocalBus
from streams.messages import GridState
from streams.mqtt.bus import MqttBus, MqttSettings
from streams.runfolder.matrix import read_frame
from streams.runfolder.recorder import Layout, ParquetRecorder

START = datetime(2024, 3, 1, tzinfo=UTC)
LAYOUT = Layout(bus_ids=("b0", "b1"), line_ids=("l0",), n_lv_feeders=1)


def _state(tick: int) -> GridState:
    v = 1.0 + tick / 1000
    return GridState.trusted(
        feeder="f", tick=tick, time_utc=START + timedelta(minutes=tick), engine="test",
        vm_pu=np.full((2, 3), v), va_deg=np.zeros((2, 3)), i_ka=np.full((1, 3), 0.1), i_n_ka=np.zeros(1),
        p_trafo_kw=(1.0, 2.0, 3.0), q_trafo_kvar=(0.0, 0.0, 0.0), loss_kw=0.1, phase_load_kw=np.ones((1, 3)),
        p_unb_kw=np.ones(1), vm_min_pu=(v, v, v), vm_max_pu=(v, v, v), vuf_max_pct=0.0, i_n_max_a=0.0,
        kappa_trafo=0.0)


def test_late_states_fill_their_rows_and_missing_ticks_are_counted(tmp_path: Path) -> None:
    bus = LocalBus()
    rec = ParquetRecorder(bus=bus, feeder="f", layout=LAYOUT, time_utc=pd.date_range(START, periods=40, freq="60s"),
                          folder=tmp_path, flush_ticks=5, hold_ticks=10)
    late = {3, 4, 5}
    for tick in range(20):
        if tick not in late and tick != 7:  # 7 never comes
            bus.publish(topics.grid_state("f"), _state(tick))
        rec.flush(tick + 1)  # the runner: every tick is due once it is done
        if tick == 12:
            assert rec.flushed_ticks == 3, "held back at the first tick without a state"
            for t in sorted(late):  # the outage is over: the backlog arrives
                bus.publish(topics.grid_state("f"), _state(t))
    assert rec.flushed_ticks == 20, "tick 7 waited 10 ticks, then went out empty"
    bus.publish(topics.grid_state("f"), _state(0))  # long written: dropped and counted
    rec.close(20)
    assert rec.tick_counts() == {"complete": 16, "late_filled": 3, "missing": 1, "late_dropped": 1}
    vm = read_frame(tmp_path / "voltages_pu.parquet")
    assert len(vm) == 20 and vm["time_utc"].is_monotonic_increasing
    filled = vm["b0_A"].to_numpy()
    expected = np.float32([1.0 + t / 1000 for t in range(20)])
    assert np.isnan(filled[7]) and np.array_equal(np.delete(filled, 7), np.delete(expected, 7))


def test_a_broker_outage_in_real_time_loses_no_tick_from_the_run_folder(mosquitto: MosquittoServer,
                                                                         tmp_path: Path) -> None:
    scenario = Scenario(start_utc=datetime(2024, 1, 15, 6, tzinfo=UTC),
                        end_utc=datetime(2024, 1, 15, 6, 30, tzinfo=UTC), speed=120, flush_ticks=3,
                        out=tmp_path / "run")
    bus = MqttBus(MqttSettings(host=mosquitto.host, port=mosquitto.port, keepalive_s=2))

    def outage() -> None:
        mosquitto.stop()
        time.sleep(6.0)
        mosquitto.start()

    def progress(done: int, total: int) -> None:
        if done == 4:
            threading.Thread(target=outage, daemon=True).start()

    result = replay(scenario, bus=bus, progress=progress)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    ticks = summary["powerflow"]["run_folder_ticks"]
    vm = read_frame(tmp_path / "run" / "voltages_pu.parquet")
    assert len(vm) == 30 and int(vm.iloc[:, 1:].notna().all(axis=1).sum()) == 30, ticks
    assert ticks["missing"] == 0 and ticks["late_dropped"] == 0 and ticks["late_filled"] > 0, ticks
    assert ticks["complete"] + ticks["late_filled"] == 30
    print(f"run folder ticks after a 6 s outage: {ticks}; lateness max {result.summary.max_lateness_s:.3f} s")
