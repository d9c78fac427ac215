"""Issue 33, failure 2, on the shipped secured broker: signed commands captured in earlier runs (by the read-only
``recorder`` user) and replayed in a later run (with the ``controller`` user's password) are refused as
``wrong_run``: one of the same scenario, which the old code applied, and one future-dated from a run an hour
later, whose high sequence number made the old code refuse the new run's genuine command as a replay. The
genuine command is applied; the audit log marks only it authentic."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pandas as pd
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from support.secure_broker import SecureMosquittoServer

from devices.fleet import FleetSpec, choose_devices
from phasetwin.cli.keys import new_key
from phasetwin.run.replay import replay
from phasetwin.run.scenario import Scenario
from streams import topics
from streams.mqtt.bus import MqttBus, MqttSettings
from twin.feeders import open_feeder

pytestmark = [pytest.mark.mosquitto, pytest.mark.slow]
FEEDER = "ieee-european-lv"
START = datetime(2024, 1, 15, 6, tzinfo=UTC)
FLEET = FleetSpec(psd=1, pess=0)


@pytest.fixture(scope="module")
def broker(secure_broker: SecureMosquittoServer) -> SecureMosquittoServer:
    return secure_broker


def _client(broker: SecureMosquittoServer, user: str) -> mqtt.Client:
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"{user}-{uuid.uuid4().hex[:6]}",
                         protocol=mqtt.MQTTv5)
    client.username_pw_set(user, broker.passwords[user])
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client


def _run(broker: SecureMosquittoServer, tmp_path: Path, name: str, start: datetime, phase: str, keys: tuple[Path, Path],
         progress: object = None) -> Path:
    device = choose_devices(open_feeder(FEEDER).load_feeder(), FLEET)[0].device_id
    schedule = tmp_path / f"{name}.csv"
    schedule.write_text(f"time_utc,device_id,action,phase\n{(start + timedelta(minutes=2)).isoformat()},{device},"
                        f"set_phase,{phase}\n")
    key, ring = keys
    scenario = Scenario(start_utc=start, end_utc=start + timedelta(minutes=6), fleet=FLEET, schedule=schedule,
                        keyring=ring, signing_key=key, out=tmp_path / name)  # type: ignore[arg-type]
    bus = MqttBus(MqttSettings(host=broker.host, port=broker.port, username="twin", password=broker.passwords["twin"]))
    replay(scenario, bus=bus, progress=progress)  # type: ignore[arg-type]
    return tmp_path / name


def test_commands_captured_in_earlier_runs_are_refused_in_a_later_one(broker: SecureMosquittoServer,
                                                                      tmp_path: Path) -> None:
    feeder = open_feeder(FEEDER).load_feeder()
    spec = choose_devices(feeder, FLEET)[0]
    own = feeder.customer(spec.customer_id).phases[0].name
    target, evil = [p for p in "ABC" if p != own]
    keys = new_key(key_id="ctl", folder=tmp_path / "keys")
    captured: list[bytes] = []
    spy = _client(broker, "recorder")
    spy.on_message = lambda c, u, msg: captured.append(bytes(msg.payload))
    spy.subscribe(topics.device_cmds(FEEDER), qos=1)
    _run(broker, tmp_path, "earlier", START, evil, keys)
    _run(broker, tmp_path, "an-hour-later", START + timedelta(hours=1), evil, keys)
    spy.loop_stop()
    spy.disconnect()  # closes the socket (an open one is reported at a later garbage collection)
    assert len(captured) == 2, "one signed command captured from each earlier run"
    attacker = _client(broker, "controller")

    def replay_captures(done: int, total: int) -> None:
        if done == 1:
            for payload in captured:
                info = attacker.publish(topics.device_cmd(FEEDER, spec.device_id), payload, qos=1)
                info.wait_for_publish(10)

    folder = _run(broker, tmp_path, "later", START, target, keys, progress=replay_captures)
    attacker.loop_stop()
    attacker.disconnect()
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["acks"] == {"accepted": 1, "applied": 1, "rejected:wrong_run": 2}
    states = pd.read_parquet(folder / "devices.parquet")
    assert evil not in set(states["phase"]) and states["phase"].iloc[-1] == target
    audit = [json.loads(line) for line in (folder / "audit.jsonl").read_text().splitlines()]
    assert [(a["outcome"], a["reason"], a["authentic"]) for a in audit] == [
        ("rejected", "wrong_run", False), ("rejected", "wrong_run", False), ("accepted", None, True)]
    assert len({a["run_nonce"] for a in audit}) == 3, "each run had its own nonce"
