"""The recorder wired end to end through the CLI, against real servers: SIGTERM mid-replay loses and duplicates
nothing (counts and values read back from VictoriaMetrics, compared with the run folder), and
`phasetwin export influx` pushes a run folder to InfluxDB 1.x idempotently."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from support.influx_readback import by_measurement, influxdb_points, victoriametrics_points
from support.servers import InfluxDBServer, VictoriaMetricsServer

from phasetwin.run.inputs import customer_bus_index
from streams.runfolder.matrix import read_frame
from twin.feeders import open_feeder

ROOT = Path(__file__).resolve().parents[3]  # tests/phasetwin/<folder>/ → the checkout
PHASETWIN = str(Path(sys.executable).with_name("phasetwin"))
REPLAY = ["replay", "--start", "2024-01-15T06:00", "--psd", "3", "--pess", "0", "--controller", "none",
          "--no-baseline"]


def _operator_buses() -> int:
    return len(customer_bus_index(open_feeder("ieee-european-lv").load_feeder()))


@pytest.mark.slow
def test_sigterm_mid_replay_flushes_the_recorder_nothing_lost_or_duplicated(
    victoriametrics: VictoriaMetricsServer, tmp_path: Path
) -> None:
    run = f"sigterm-{uuid.uuid4().hex[:8]}"
    twin = subprocess.Popen(
        [PHASETWIN, *REPLAY, "--end", "2024-01-15T12:00", "--speed", "600", "--out", str(tmp_path / "run"),
         "--influx", f"{victoriametrics.url}?bucket=twin&flush_interval_s=0.2", "--run-id", run],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # until the first points are in: the replay is under way
        victoriametrics.force_flush()
        if victoriametrics.samples(f'network_p_unb_kw{{run="{run}"}}'):
            break
        time.sleep(0.3)
    twin.send_signal(signal.SIGTERM)
    output, _ = twin.communicate(timeout=120)
    assert twin.returncode == 0, output

    summary = json.loads((tmp_path / "run/summary.json").read_text())
    ticks = summary["ticks"]
    assert summary["stopped_early"] is True and 0 < ticks < 360, output
    victoriametrics.force_flush()
    got, repeats = victoriametrics_points(victoriametrics, run)
    assert repeats == {}, "a point was written twice"
    counts = by_measurement(got)
    assert counts["network"] == ticks
    assert counts["transformer"] == counts["voltage_band"] == 3 * ticks
    assert counts["bus_voltage"] == 3 * _operator_buses() * ticks
    assert counts["device"] == 3 * ticks
    assert counts["twin"] == ticks
    r = summary["recorder"]
    assert (r["written"], r["spooled"], r["dropped"], r["rejected"]) == (sum(counts.values()), 0, 0, 0)
    # values: the database against the run folder the same process wrote
    metrics = pd.read_parquet(tmp_path / "run/metrics.parquet").iloc[:ticks]
    by_time = {k[2]: v["p_unb_kw"] for k, v in got.items() if k[0] == "network"}
    seconds = (metrics["time_utc"].astype("int64") // 10**9).to_numpy()
    assert np.allclose([by_time[int(t)] for t in seconds], metrics["p_unb_kw_f0"], rtol=1e-9, atol=1e-9)


def test_export_influx_pushes_a_run_folder_to_influxdb_1_and_again_without_duplicates(
    influxdb: InfluxDBServer, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    done = subprocess.run([PHASETWIN, *REPLAY, "--end", "2024-01-15T07:00", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((out / "summary.json").read_text())
    db = f"export_{uuid.uuid4().hex[:8]}"
    for _ in range(2):
        pushed = subprocess.run([PHASETWIN, "export", "influx", str(out), "--url", f"influxdb+v1://{influxdb.host}:"
                                 f"{influxdb.port}/{db}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    got = influxdb_points(influxdb, db, summary["run_id"])
    counts = by_measurement(got)
    assert counts["network"] == summary["ticks"] == 60
    assert counts["bus_voltage"] == 3 * _operator_buses() * 60
    voltages = read_frame(out / "voltages_pu.parquet")
    first = int(voltages["time_utc"].iloc[0].timestamp())
    bus = open_feeder("ieee-european-lv").load_feeder().transformer.lv_bus  # always an operator bus
    stored = [v["vm_pu"] for k, v in got.items() if k[0] == "bus_voltage" and k[2] == first
              and dict(k[1]).get("bus") == bus and dict(k[1]).get("phase") == "A"]
    assert stored == [pytest.approx(float(voltages[f"{bus}_A"].iloc[0]), rel=1e-6)]


def test_a_bad_influx_url_is_a_clear_error(tmp_path: Path) -> None:
    done = subprocess.run([PHASETWIN, *REPLAY, "--end", "2024-01-15T06:10", "--out", str(tmp_path),
                           "--influx", "ftp://nowhere"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    text = " ".join((done.stdout + done.stderr).split())
    assert "URL scheme 'ftp' is not one of influxdb+v1, influxdb+v2" in text
    assert not (tmp_path / "summary.json").exists(), "nothing ran"


def test_the_status_topic_reports_the_recorders_counts(victoriametrics: VictoriaMetricsServer, tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from phasetwin.run.replay import replay
    from phasetwin.run.scenario import Scenario
    from streams import topics
    from streams.bus import LocalBus
    from streams.influx.settings import influx_settings_from_url
    from streams.messages import Message, TwinStatus

    bus = LocalBus()
    statuses: list[TwinStatus] = []

    def keep(topic: str, message: Message) -> None:
        assert isinstance(message, TwinStatus)
        statuses.append(message)

    bus.subscribe(topics.twin_status("ieee-european-lv"), keep)
    settings = influx_settings_from_url(f"{victoriametrics.url}?bucket=twin&flush_interval_s=0.05")
    start = datetime(2024, 1, 15, 6, tzinfo=UTC)
    result = replay(Scenario(start_utc=start, end_utc=start.replace(hour=7), speed=900.0, out=tmp_path,
                             run_id=f"status-{uuid.uuid4().hex[:8]}"), bus=bus, influx=settings)
    written = [s.points_written for s in statuses]
    assert len(written) == 60 and written == sorted(written) and written[-1] > 0
    assert written[-1] <= result.summary.recorder["written"]
    assert all(s.points_dropped == 0 for s in statuses)
