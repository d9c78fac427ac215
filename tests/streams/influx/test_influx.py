"""The InfluxDB recorder against real servers: every published message's points arrive once, with their values,
also across a 30 s database outage; the spool's bound drops the oldest points, counted and logged.

```
replay ──LocalBus──► collector (the test's own copy of every message) ──► expected points (tests/influx_readback)
             └─────► InfluxRecorder ──v1 /write──────► influxd         ─┐
                                    └─v2 /api/v2/write► VictoriaMetrics ─┴─► read back ──► compared, per point
```
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from support.influx_readback import (
    DAY,
    Collected,
    FeederLayout,
    by_measurement,
    compare,
    fast_settings,
    influxdb_points,
    loading_points,
    run_id,
    victoriametrics_points,
)
from support.servers import free_port

from devices.fleet import FleetSpec
from phasetwin.run.replay import replay
from phasetwin.run.scenario import Scenario
from streams.bus import LocalBus
from streams.influx.recorder import InfluxError, InfluxRecorder, InfluxSettings, flush_spool
from streams.messages import ControllerPlan, GridState
from streams.runfolder.recorder import Layout

if TYPE_CHECKING:
    from conftest import RecordedRun
    from support.servers import InfluxDBServer, VictoriaMetricsServer

REL = 1e-9  # 10 significant digits written


def _recorder(bus: LocalBus, ieee: FeederLayout, settings: InfluxSettings, run: str,
              scenario: str = "test") -> InfluxRecorder:
    return InfluxRecorder(bus=bus, feeder=ieee.name, layout=ieee.layout, customer_bus_index=ieee.customer_bus_index,
                          head_line_index=ieee.head_line_index, run_id=run, scenario=scenario, settings=settings)


def _lp_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.lp"))


# --- v1: InfluxDB 1.x -------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_controlled_replay_reaches_influxdb_1_point_for_point(
    recorded_run: RecordedRun, influxdb: InfluxDBServer, ieee_layout: FeederLayout
) -> None:
    r = recorded_run
    expected = ieee_layout.expected(run=r.run, scenario=r.scenario).points(r.messages)
    # loading: the run folder's loading.parquet (the run's own LoadingRecorder), not recomputed here
    expected |= loading_points(r.folder, run=r.run, scenario=r.scenario, feeder=ieee_layout.name)
    got = influxdb_points(influxdb, r.db, r.run)
    assert compare(got, expected, rel=REL) == []
    counts = by_measurement(expected)
    assert set(counts) == {"bus_voltage", "line_current", "transformer", "phase_load", "unbalance", "voltage_band",
                           "network", "loading", "device", "controller", "ltupf", "twin"}
    assert counts["loading"] == 120 * 3
    assert counts["bus_voltage"] == 120 * len(ieee_layout.customer_bus_index) * 3
    assert counts["controller"] == 7 and counts["ltupf"] == 7  # a plan every 15 min but the first, all checked
    assert (r.counts.written, r.counts.spooled, r.counts.lost, r.counts.ignored) == (len(expected), 0, 0, 0)
    assert not _lp_files(r.settings.spool_dir or Path("-"))


def test_ltupf_pairs_each_prediction_with_the_power_flow_over_its_step(
    influxdb: InfluxDBServer, tmp_path: Path
) -> None:
    """Three plans: a complete step, one the run ends inside, one without a prediction (no point)."""
    layout = Layout(bus_ids=("b1", "b2"), line_ids=("l1",), n_lv_feeders=1)
    db, run = f"ltupf_{run_id('x').replace('-', '_')}", run_id("ltupf")
    bus = LocalBus()
    recorder = InfluxRecorder(bus=bus, feeder="tiny", layout=layout, customer_bus_index=[0, 1], head_line_index=[0],
                              run_id=run, scenario="s",
                              settings=InfluxSettings(url=influxdb.url, api="v1", bucket=db, spool_dir=tmp_path))
    lows = [0.97, 0.95, 0.96, 0.90, 0.99, 0.94, 0.93]
    for tick, low in enumerate(lows):
        t = DAY + timedelta(minutes=tick)
        if tick in (0, 3, 4):
            predicted = {0: (0.96, 1.02), 3: (None, None), 4: (0.92, 1.01)}[tick]
            bus.publish("phasetwin/v1/tiny/controller/plan", ControllerPlan(
                feeder="tiny", tick=tick, time_utc=t, controller_id="ctl", strategy="rolling-milp", status="optimal",
                reason="", step_start_utc=t + timedelta(minutes=1), step_s=180, n_steps=4, objective=1.0,
                p_unb_kwh=2.0, switches=0, solve_s=0.1, commands=(), fallbacks=0,
                predicted_vm_min_pu=predicted[0], predicted_vm_max_pu=predicted[1]))
        bus.publish("phasetwin/v1/tiny/grid/state", GridState(
            feeder="tiny", tick=tick, time_utc=t, engine="test", vm_pu=np.full((2, 3), 1.0), va_deg=np.zeros((2, 3)),
            i_ka=np.zeros((1, 3)), i_n_ka=np.zeros(1), p_trafo_kw=(1.0, 2.0, 3.0), q_trafo_kvar=(0.0, 0.0, 0.0),
            loss_kw=0.1, phase_load_kw=np.ones((1, 3)), p_unb_kw=np.zeros(1), vm_min_pu=(1.0, low, 1.0),
            vm_max_pu=(1.0 + (1 - low), 1.0, float("nan")), vuf_max_pct=0.0, i_n_max_a=0.0, kappa_trafo=0.0))
    recorder.close()
    answer = influxdb.query("SELECT * FROM ltupf", db=db, epoch="s")["results"][0]["series"][0]
    rows = [dict(zip(answer["columns"], row, strict=True)) for row in answer["values"]]
    t0 = int(DAY.timestamp())
    # step 1: ticks 1..3 -> min(0.95, 0.96, 0.90) = 0.90, max over vm_max = 1.10; step 2: ticks 5..6 (run ends)
    assert [(r["time"] - t0, r["predicted_vm_min_pu"], r["actual_vm_min_pu"], r["actual_vm_max_pu"])
            for r in rows] == [(60, 0.96, 0.90, pytest.approx(1.10)), (300, 0.92, 0.93, pytest.approx(1.07))]
    assert rows[0]["error_vm_min_pu"] == pytest.approx(0.06) and rows[1]["error_vm_max_pu"] == pytest.approx(-0.06)


def test_points_the_server_refuses_are_counted_as_rejected_not_retried(
    influxdb: InfluxDBServer, ieee_layout: FeederLayout, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db, run = f"rej_{run_id('x').replace('-', '_')}", run_id("rejected")
    influxdb.query(f'CREATE DATABASE "{db}"')
    first = int((DAY + timedelta(hours=3)).timestamp())
    # loss_kw as a string in this shard: every float loss_kw the recorder sends conflicts (HTTP 400 partial write)
    influxdb_write = InfluxSettings(url=influxdb.url, api="v1", bucket=db)
    from streams.influx.transport import Outcome, create_transport
    transport = create_transport(influxdb_write)
    assert transport.post(f'network,feeder=x,run=x,scenario=x loss_kw="text" {first}\n'.encode()).outcome \
        is Outcome.WRITTEN
    transport.close()
    collected = Collected.on(ieee_layout.name)
    recorder = _recorder(collected.bus, ieee_layout, InfluxSettings(url=influxdb.url, api="v1", bucket=db,
                                                                    spool_dir=tmp_path), run)
    replay(Scenario(start_utc=DAY + timedelta(hours=3), end_utc=DAY + timedelta(hours=3, minutes=10),
                    out=tmp_path / "run"), bus=collected.bus)
    with caplog.at_level(logging.ERROR, logger="streams.influx.shipper"):
        c = recorder.close()
    expected = ieee_layout.expected(run=run, scenario="test").points(collected.messages)
    assert (c.rejected, c.written, c.retries) == (10, len(expected) - 10, 0)
    assert "the server refused 10 of" in caplog.text and "field type conflict" in caplog.text
    got = influxdb_points(influxdb, db, run)
    assert by_measurement(got) == by_measurement({k: v for k, v in expected.items() if k[0] != "network"})


# --- v2: VictoriaMetrics ----------------------------------------------------------------------------------------

def test_full_detail_to_victoriametrics_v2_every_bus_and_line_once_with_back_pressure(
    victoriametrics: VictoriaMetricsServer, ieee_layout: FeederLayout, tmp_path: Path
) -> None:
    run = run_id("full")
    collected = Collected.on(ieee_layout.name)
    settings = InfluxSettings(url=victoriametrics.url, bucket="twin", org="grid", detail="full",
                              queue_max_messages=1, spool_dir=tmp_path / "spool")
    recorder = _recorder(collected.bus, ieee_layout, settings, run)
    replay(Scenario(start_utc=DAY + timedelta(hours=12), end_utc=DAY + timedelta(hours=12, minutes=12),
                    out=tmp_path / "run", fleet=FleetSpec(psd=2, pess=1)), bus=collected.bus)
    c = recorder.close()
    expected = ieee_layout.expected(run=run, scenario="test", full=True).points(collected.messages)
    got, repeats = victoriametrics_points(victoriametrics, run)
    assert repeats == {}
    assert compare(got, expected, rel=REL, numbers_only=True) == []
    n_bus, n_line = len(ieee_layout.layout.bus_ids), len(ieee_layout.layout.line_ids)
    assert by_measurement(expected)["bus_voltage"] == 12 * n_bus * 3
    assert by_measurement(expected)["line_current"] == 12 * n_line * 4
    assert (c.written, c.lost, c.spooled, c.messages) == (len(expected), 0, 0, 12 * (2 + 3))


@pytest.mark.slow
def test_a_30_s_outage_in_a_real_time_replay_loses_and_duplicates_nothing(
    victoriametrics: VictoriaMetricsServer, ieee_layout: FeederLayout, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """50 ticks at one tick per wall second; VictoriaMetrics is stopped from 10 s to 40 s."""
    run = run_id("outage")
    collected = Collected.on(ieee_layout.name)
    settings = InfluxSettings(url=victoriametrics.url, bucket="twin", spool_dir=tmp_path / "spool",
                              flush_interval_s=0.5, backoff_s=0.1, backoff_max_s=1.0, max_retries=2, timeout_s=5)
    recorder = _recorder(collected.bus, ieee_layout, settings, run)
    outage: dict[str, float] = {}

    def stop_and_restart() -> None:
        time.sleep(10)
        outage["stopped_at_written"] = recorder.counters.written
        victoriametrics.stop()
        time.sleep(30)
        outage["spooled_before_start"] = recorder.counters.spooled
        victoriametrics.start()

    operator = threading.Thread(target=stop_and_restart, name="outage")
    start = DAY + timedelta(hours=18)
    with caplog.at_level(logging.WARNING, logger="streams.influx.shipper"):
        operator.start()
        replay(Scenario(start_utc=start, end_utc=start + timedelta(minutes=50), speed=60.0, out=tmp_path / "run",
                        fleet=FleetSpec(psd=2)), bus=collected.bus)
        operator.join()
        c = recorder.close(timeout_s=60)
    assert outage["stopped_at_written"] > 0 and outage["spooled_before_start"] > 0
    assert "does not take writes" in caplog.text and "answers again; replaying" in caplog.text
    expected = ieee_layout.expected(run=run, scenario="test").points(collected.messages)
    got, repeats = victoriametrics_points(victoriametrics, run)
    assert repeats == {}
    assert by_measurement(got) == by_measurement(expected)
    assert compare(got, expected, rel=REL, numbers_only=True) == []
    assert (c.written, c.spooled, c.dropped, c.rejected, c.ignored) == (len(expected), 0, 0, 0, 0)
    assert c.failures > 0 and c.retries > 0
    assert not _lp_files(tmp_path / "spool")


def test_a_full_spool_drops_the_oldest_points_counts_and_logs_them_and_flush_spool_sends_the_rest(
    victoriametrics: VictoriaMetricsServer, ieee_layout: FeederLayout, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    run = run_id("spool")
    spool = tmp_path / "spool"
    down = fast_settings(InfluxSettings(url=f"http://127.0.0.1:{free_port()}", bucket="twin", spool_dir=spool,
                                        spool_max_mb=0.2, batch_points=200))
    down = InfluxSettings.model_validate({**down.model_dump(), "max_retries": 0, "backoff_max_s": 60})
    collected = Collected.on(ieee_layout.name)
    recorder = _recorder(collected.bus, ieee_layout, down, run)
    with caplog.at_level(logging.ERROR, logger="streams.influx.spool"):
        replay(Scenario(start_utc=DAY, end_utc=DAY + timedelta(minutes=30), out=tmp_path / "run"),
               bus=collected.bus)
        c = recorder.close(timeout_s=2)
    expected = ieee_layout.expected(run=run, scenario="test").points(collected.messages)
    files = _lp_files(spool)
    lines = [line for f in files for line in f.read_text().splitlines()]
    assert sum(f.stat().st_size for f in files) <= 200_000 and len(files) >= 2
    assert [int(f.stem.split("-")[1]) for f in files] == [len(f.read_text().splitlines()) for f in files]
    assert (c.written, c.spooled) == (0, len(lines))
    assert c.dropped == len(expected) - len(lines) > 0
    logged = sum(int(m.split("dropped the oldest ")[1].split(" ")[0]) for m in caplog.messages
                 if "dropped the oldest" in m)
    assert logged == c.dropped
    # the newest data were kept: the spool ends with the last tick and starts after the first; batches in order
    stamps = [[int(line.rsplit(" ", 1)[1]) for line in f.read_text().splitlines()] for f in files]
    last, first = max(k[2] for k in expected), min(k[2] for k in expected)
    assert max(stamps[-1]) == last and min(stamps[0]) > first
    assert all(max(older) <= min(newer) for older, newer in itertools.pairwise(stamps))

    up = InfluxSettings.model_validate({**down.model_dump(), "url": victoriametrics.url})
    flushed = flush_spool(up)
    assert (flushed.written, flushed.spooled, flushed.lost) == (len(lines), 0, 0)
    assert not _lp_files(spool)
    got, repeats = victoriametrics_points(victoriametrics, run)
    assert repeats == {}
    assert len(got) == len(lines)
    assert compare(got, {k: v for k, v in expected.items() if k in got}, rel=REL, numbers_only=True) == []


# --- life cycle -----------------------------------------------------------------------------------------------

def test_bad_tags_and_a_shared_spool_are_refused_and_close_is_idempotent(
    ieee_layout: FeederLayout, victoriametrics: VictoriaMetricsServer, tmp_path: Path
) -> None:
    settings = InfluxSettings(url=victoriametrics.url, bucket="twin", spool_dir=tmp_path)
    with pytest.raises(InfluxError, match=r"run 'a\\\\b': tag run='a\\\\b' holds '\\\\'"):
        _recorder(LocalBus(), ieee_layout, settings, "a\\b")
    with pytest.raises(InfluxError, match=r"bus_index holds \[9999\]; expected indices in 0\.\.906"):
        InfluxRecorder(bus=LocalBus(), feeder=ieee_layout.name, layout=ieee_layout.layout,
                       customer_bus_index=[9999], head_line_index=[], run_id="r", scenario="s", settings=settings)
    first = _recorder(LocalBus(), ieee_layout, settings, "r1")
    with pytest.raises(InfluxError, match=r"spool folder .* is in use by another recorder or flush"):
        _recorder(LocalBus(), ieee_layout, settings, "r2")
    with pytest.raises(InfluxError, match=r"is in use by another recorder"):
        flush_spool(settings)
    counts = first.close()
    assert first.close() is counts
    assert (counts.written, counts.messages, counts.batches) == (0, 0, 0)
    with _recorder(LocalBus(), ieee_layout, settings, "r3") as third:  # the lock was released
        assert third.counters.written == 0
