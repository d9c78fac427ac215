"""The command audit log reaches InfluxDB 1.x as well as the run folder: one ``audit`` point per line of
``audit.jsonl``, with the same outcome, reason, key id and origin (read back from a real influxd)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from support.influx_readback import influxdb_points
from support.servers import InfluxDBServer

from devices.fleet import FleetSpec
from phasetwin.run.replay import replay
from phasetwin.run.scenario import Scenario
from streams import topics
from streams.bus import LocalBus
from streams.influx.settings import influx_settings_from_url
from streams.messages import DeviceAction, DeviceCommand

START = datetime(2024, 1, 15, 6, tzinfo=UTC)


def test_every_audited_command_is_a_point_in_influxdb(influxdb: InfluxDBServer, tmp_path: Path) -> None:
    db, run = f"audit_{uuid.uuid4().hex[:8]}", f"audit-{uuid.uuid4().hex[:8]}"
    schedule = tmp_path / "schedule.csv"
    schedule.write_text("time_utc,device_id,action,phase\n2024-01-15T06:03Z,psd-LOAD53,set_phase,A\n"
                        "2024-01-15T06:04Z,psd-nobody,set_phase,A\n")
    bus = LocalBus()

    def progress(done: int, total: int) -> None:
        if done == 6:  # an operator's command dated in the future, between two ticks
            issued = datetime(2030, 1, 1, tzinfo=UTC)
            bus.publish(topics.device_cmd("ieee-european-lv", "psd-LOAD53"), DeviceCommand(
                device_id="psd-LOAD53", seq=10**13, issued_utc=issued, expires_utc=issued + timedelta(hours=1),
                action=DeviceAction.SET_PHASE, phase="C", source="operator"))

    scenario = Scenario(start_utc=START, end_utc=START + timedelta(minutes=10), fleet=FleetSpec(psd=1, pess=0),
                        schedule=schedule, out=tmp_path / "run", run_id=run)
    replay(scenario, bus=bus, progress=progress,
           influx=influx_settings_from_url(f"influxdb+v1://{influxdb.host}:{influxdb.port}/{db}"))
    lines = [json.loads(line) for line in (tmp_path / "run" / "audit.jsonl").read_text().splitlines()]
    assert [(a["device_id"], a["outcome"], a["reason"]) for a in lines] == [
        ("psd-LOAD53", "accepted", None), ("psd-nobody", "rejected", "unknown_device"),
        ("psd-LOAD53", "rejected", "future")]
    points = {dict(k[1])["entry"]: v for k, v in influxdb_points(influxdb, db, run).items() if k[0] == "audit"}
    assert sorted(points) == ["0", "1", "2"]
    for a in lines:
        p = points[str(a["entry"])]
        assert (p["outcome"], p.get("reason", ""), p["origin"], p.get("key_id", "")) == (
            a["outcome"], a["reason"] or "", a["origin"], a["key_id"])
        assert p["decided_utc"] == datetime.fromisoformat(a["decided_utc"]).isoformat()
