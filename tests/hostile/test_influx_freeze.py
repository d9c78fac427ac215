"""Issue 20, acceptance: the real influxd process is frozen (SIGSTOP) or stopped during a real-time replay at
speed 60 recording live with ``--influx``. The ticks stay on time (the recorder's HTTP waits happen on its own
thread, a frozen or stopped server's batches go to the spool) and once it answers again every point is in the
database exactly once: the counts read back per measurement are exactly the run's.

CI holds the server for 20 s each way; the issue's 60 s freeze and 300 s stop are the same test with
``PHASETWIN_INFLUX_FREEZE_S=60 PHASETWIN_INFLUX_STOP_S=300`` (the replay then lasts 20 s longer than the hold)."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.influx_readback import by_measurement, influxdb_points
from support.servers import InfluxDBServer

from devices.fleet import FleetSpec
from phasetwin.run.inputs import customer_bus_index
from phasetwin.run.replay import replay
from phasetwin.run.scenario import Scenario
from streams.influx.settings import influx_settings_from_url
from twin.feeders import open_feeder

HOLD_S = {"sigstop": float(os.environ.get("PHASETWIN_INFLUX_FREEZE_S", "20")),
          "stopped": float(os.environ.get("PHASETWIN_INFLUX_STOP_S", "20"))}


@pytest.mark.slow
@pytest.mark.parametrize("how", ["sigstop", "stopped"])
def test_a_frozen_or_stopped_influxd_delays_no_tick_and_loses_no_point(influxdb: InfluxDBServer, tmp_path: Path,
                                                                       how: str) -> None:
    db, run = f"freeze_{uuid.uuid4().hex[:8]}", f"freeze-{uuid.uuid4().hex[:8]}"
    settings = influx_settings_from_url(f"influxdb+v1://{influxdb.host}:{influxdb.port}/{db}?timeout_s=2&"
                                        "backoff_s=0.1&backoff_max_s=1&max_retries=2&flush_interval_s=0.5")
    pid = influxdb.pid
    assert pid is not None
    frozen: dict[str, float] = {}
    hold_s = HOLD_S[how]

    def freeze() -> None:
        if how == "sigstop":
            os.kill(pid, signal.SIGSTOP)
        else:
            influxdb.stop()
        frozen["at"] = time.monotonic()
        time.sleep(hold_s)
        if how == "sigstop":
            os.kill(pid, signal.SIGCONT)
        else:
            influxdb.start()
        frozen["for"] = time.monotonic() - frozen["at"]

    def progress(done: int, total: int) -> None:
        if done == 3:
            threading.Thread(target=freeze, daemon=True).start()

    start = datetime(2024, 1, 15, 6, tzinfo=UTC)
    minutes = max(28, int(hold_s) + 20)
    scenario = Scenario(start_utc=start, end_utc=start + timedelta(minutes=minutes), speed=60, out=tmp_path / "run",
                        fleet=FleetSpec(psd=2, pess=0), run_id=run)
    try:
        result = replay(scenario, progress=progress, influx=settings)
    finally:
        if how == "sigstop":
            os.kill(pid, signal.SIGCONT)
        elif not influxdb.running:
            influxdb.start()
    s = result.summary
    assert frozen["for"] >= hold_s
    assert s.ticks == minutes and s.max_lateness_s < 0.5, f"max lateness {s.max_lateness_s:.3f} s"
    r = s.recorder
    assert r["dropped"] == 0 and r["rejected"] == 0 and r["spooled"] == 0 and r["failures"] > 0, r
    counts = by_measurement(influxdb_points(influxdb, db, run))
    n_bus = len(customer_bus_index(open_feeder("ieee-european-lv").load_feeder()))
    assert counts["network"] == counts["twin"] == minutes
    assert counts["bus_voltage"] == 3 * n_bus * minutes
    assert counts["device"] == 2 * minutes
    assert r["written"] == sum(counts.values())
    print(f"{how} {hold_s:g} s: max lateness {s.max_lateness_s:.3f} s; {r['written']} points written, "
          f"failures {r['failures']}")
