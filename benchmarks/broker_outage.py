"""Issue 33, acceptance: a 30 s broker outage in a real-time run; the run folder and InfluxDB hold the same ticks.

    .venv/bin/python benchmarks/broker_outage.py [--outage-s 30] [--speed 60] [--quick]

Starts its own Mosquitto and InfluxDB 1.x (tests/support/servers.py) on free loopback ports and replays the IEEE
European LV feeder in real time (``--speed``: 60 = a 60 s tick per wall second) on the broker, recording live to
InfluxDB (``--influx``) with 2 PSDs. At tick 5 the Mosquitto process is stopped; ``--outage-s`` wall seconds later
it is started again (persistent, as shipped); the run goes on for ``--after`` ticks (20) after the outage.
Printed and checked: the ticks with a grid state in the run folder (``voltages_pu.parquet``) and in InfluxDB
(``network`` points), the run folder's counts (``summary.json`` → ``powerflow.run_folder_ticks``: complete,
late-filled, missing), the lateness of the ticks, and the readings that came late. Exits with status 1 when the
two differ.

``tests/hostile/test_late_grid_states.py`` runs a 6 s outage without the database in the suite; this is the
issue's full length with the database. ``--quick``: a 1 s outage at speed 180, 9 ticks after (about ten
seconds, most of it the servers' start and stop; nothing asserted beyond the comparison itself).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.append(str(Path(__file__).resolve().parents[1] / "tests"))

START = datetime(2024, 1, 15, 6, tzinfo=UTC)
STOP_AT_TICK = 5


def outage_run(*, outage_s: float, speed: float, after: int, workdir: Path) -> dict[str, object]:
    from support.servers import InfluxDBServer, MosquittoServer

    from devices.fleet import FleetSpec
    from phasetwin.run.replay import replay
    from phasetwin.run.scenario import Scenario
    from streams.influx.settings import influx_settings_from_url
    from streams.mqtt.bus import MqttBus, MqttSettings
    from streams.runfolder.matrix import read_frame

    (workdir / "broker").mkdir()
    (workdir / "influxd").mkdir()
    broker, influxd = MosquittoServer(workdir=workdir / "broker"), InfluxDBServer(workdir=workdir / "influxd")
    broker.start()
    influxd.start()
    try:
        tick_wall_s = 60 / speed
        n_ticks = STOP_AT_TICK + int(outage_s / tick_wall_s) + after
        db, run_id = f"outage_{uuid.uuid4().hex[:8]}", f"outage-{uuid.uuid4().hex[:8]}"
        influx = influx_settings_from_url(f"influxdb+v1://{influxd.host}:{influxd.port}/{db}?flush_interval_s=0.5")
        scenario = Scenario(start_utc=START, end_utc=START + timedelta(minutes=n_ticks), speed=speed,
                            fleet=FleetSpec(psd=2, pess=0), run_id=run_id, out=workdir / "run")
        held: dict[str, float] = {}

        def outage() -> None:
            broker.stop()
            held["at"] = time.monotonic()
            time.sleep(outage_s)
            broker.start()
            held["for"] = time.monotonic() - held["at"]

        def progress(done: int, total: int) -> None:
            if done == STOP_AT_TICK:
                threading.Thread(target=outage, daemon=True).start()

        bus = MqttBus(MqttSettings(host=broker.host, port=broker.port, keepalive_s=5))
        summary = replay(scenario, bus=bus, progress=progress, influx=influx).summary
        vm = read_frame(workdir / "run" / "voltages_pu.parquet")
        folder_ticks = {int(t) for t, ok in zip(range(len(vm)), vm.iloc[:, 1:].notna().all(axis=1), strict=True) if ok}
        answer = influxd.query(f"SELECT \"loss_kw\" FROM \"network\" WHERE \"run\" = '{run_id}'", db=db, epoch="s")
        times = [int(row[0]) for result in answer["results"] for serie in result.get("series", [])
                 for row in serie["values"]]
        start_s = int(START.timestamp())
        influx_ticks = {(t - start_s) // 60 for t in times}
    finally:
        if not broker.running:
            broker.start()
        broker.stop()
        influxd.stop()
    return {"summary": summary, "held_s": held.get("for", 0.0), "n_ticks": n_ticks, "folder": folder_ticks,
            "influx": influx_ticks, "influx_points": len(times)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--outage-s", type=float, default=30.0, help="wall seconds the broker is down")
    parser.add_argument("--speed", type=float, default=60.0, help="simulated s per wall s (60 s ticks)")
    parser.add_argument("--after", type=int, default=20, help="ticks the run goes on after the outage")
    parser.add_argument("--quick", action="store_true", help="a 1 s outage at speed 180, 9 ticks after")
    args = parser.parse_args()
    if args.quick:
        args.outage_s, args.speed, args.after = 1.0, 180.0, 9
    with tempfile.TemporaryDirectory() as tmp:
        r = outage_run(outage_s=args.outage_s, speed=args.speed, after=args.after, workdir=Path(tmp))
    s = r["summary"]
    folder, influx = r["folder"], r["influx"]
    assert isinstance(folder, set) and isinstance(influx, set)
    ticks = s.powerflow["run_folder_ticks"]  # type: ignore[attr-defined]
    print(f"broker down {r['held_s']:.1f} s from tick {STOP_AT_TICK} of a {r['n_ticks']}-tick run at speed "
          f"{args.speed:g} (a tick every {60 / args.speed:.2f} s)")
    print(f"  run folder: {len(folder)} tick(s) with a grid state; counts {ticks}")
    print(f"  InfluxDB:   {len(influx)} tick(s), {r['influx_points']} network point(s)")
    print(f"  same ticks: {folder == influx}; readings late {s.readings_late}, missing {s.readings_missing}; "  # type: ignore[attr-defined]
          f"overruns {s.overruns}, max lateness {s.max_lateness_s:.3f} s; bus {s.bus.get('disconnects')} "  # type: ignore[attr-defined]
          f"disconnect(s), stalls {s.bus.get('broker_stalls')}")  # type: ignore[attr-defined]
    if folder != influx:
        print(f"  FAILED: only in the run folder {sorted(folder - influx)[:20]}, only in InfluxDB "
              f"{sorted(influx - folder)[:20]}")
        sys.exit(1)
    sys.exit(0)


if __name__ == "__main__":
    main()
