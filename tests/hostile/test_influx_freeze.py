"""Issue 20, acceptance (shortened): the real influxd process is frozen (SIGSTOP) for 20 s during a real-time
replay at speed 60 recording live with ``--influx``. The ticks stay on time (the recorder's HTTP waits happen on
its own thread, a frozen server's batches go to the spool) and after SIGCONT every point is in the database
exactly once: the counts read back per measurement are exactly the run's."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from influx_readback import by_measurement, influxdb_points
from servers import InfluxDBServer

from devices.fleet import FleetSpec
from streams.influx.settings import influx_settings_from_url
from twin.app.runner import customer_bus_index, replay
from twin.app.scenario import Scenario
from twin.feeders import open_feeder

FREEZE_S = 20.0


@pytest.mark.slow
def test_a_frozen_influxd_delays_no_tick_and_loses_no_point(influxdb: InfluxDBServer, tmp_path: Path) -> None:
    db, run = f"freeze_{uuid.uuid4().hex[:8]}", f"freeze-{uuid.uuid4().hex[:8]}"
    settings = influx_settings_from_url(f"influxdb+v1://{influxdb.host}:{influxdb.port}/{db}?timeout_s=2&"
                                        "backoff_s=0.1&backoff_max_s=1&max_retries=2&flush_interval_s=0.5")
    pid = influxdb.pid
    assert pid is not None
    frozen: dict[str, float] = {}

    def freeze() -> None:
        os.kill(pid, signal.SIGSTOP)
        frozen["at"] = time.monotonic()
        time.sleep(FREEZE_S)
        os.kill(pid, signal.SIGCONT)
        frozen["for"] = time.monotonic() - frozen["at"]

    def progress(done: int, total: int) -> None:
        if done == 3:
            threading.Thread(target=freeze, daemon=True).start()

    start = datetime(2024, 1, 15, 6, tzinfo=UTC)
    scenario = Scenario(start_utc=start, end_utc=start + timedelta(minutes=28), speed=60, out=tmp_path / "run",
                        fleet=FleetSpec(psd=2, pess=0), run_id=run)
    try:
        result = replay(scenario, progress=progress, influx=settings)
    finally:
        os.kill(pid, signal.SIGCONT)
    s = result.summary
    assert frozen["for"] >= FREEZE_S
    assert s.ticks == 28 and s.max_lateness_s < 0.5, f"max lateness {s.max_lateness_s:.3f} s"
    r = s.recorder
    assert r["dropped"] == 0 and r["rejected"] == 0 and r["spooled"] == 0 and r["failures"] > 0, r
    counts = by_measurement(influxdb_points(influxdb, db, run))
    n_bus = len(customer_bus_index(open_feeder("ieee-european-lv").load_feeder()))
    assert counts["network"] == counts["twin"] == 28
    assert counts["bus_voltage"] == 3 * n_bus * 28
    assert counts["device"] == 2 * 28
    assert r["written"] == sum(counts.values())
    print(f"max lateness {s.max_lateness_s:.3f} s; {r['written']} points written, failures {r['failures']}")
