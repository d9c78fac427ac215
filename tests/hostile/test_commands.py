"""Issue 20, acceptance, on a real Mosquitto: forged, unsigned, revoked-key, tampered and replayed commands are
all refused with their reason and never actuate; future-dated heartbeats and commands change nothing, so a
device still reaches its safe state within lease + one tick of the last valid renewal; every command decided
on is in the audit log.

The attack is published from the run's progress callback (between two ticks), through its own MQTT connection,
and acknowledged by the broker before the next tick: the broker then delivers it before the twin's next sync
marker, so the tick that decides it is known and the test is reproducible."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pandas as pd
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from support.servers import MosquittoServer

from devices.fleet import FleetSpec
from phasetwin.cli.keys import new_key, revoke
from phasetwin.run.replay import replay
from phasetwin.run.scenario import Scenario
from streams import topics
from streams.messages import ControllerHeartbeat, DeviceAction, DeviceCommand
from streams.mqtt.bus import MqttBus, MqttSettings
from streams.signing import Keyring, Signer

FEEDER = "ieee-european-lv"
START = datetime(2024, 1, 15, 6, tzinfo=UTC)
N_EACH = 50


def _attacker(broker: MosquittoServer) -> tuple[mqtt.Client, list[DeviceCommand]]:
    seen: list[DeviceCommand] = []
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"evil-{uuid.uuid4()}",
                         protocol=mqtt.MQTTv5)
    client.on_message = lambda c, u, msg: seen.append(DeviceCommand.model_validate_json(msg.payload))
    client.connect(broker.host, broker.port)
    client.loop_start()
    client.subscribe(topics.device_cmds(FEEDER), qos=1)  # an eavesdropper on the broker captures commands
    return client, seen


def _send(client: mqtt.Client, device_id: str, payloads: list[str]) -> None:
    infos = [client.publish(topics.device_cmd(FEEDER, device_id), p, qos=1) for p in payloads]
    for info in infos:
        info.wait_for_publish(10)


def _scenario(out: Path, schedule: Path, **extra: object) -> Scenario:
    return Scenario(start_utc=START, end_utc=START + timedelta(minutes=45), fleet=FleetSpec(psd=1, pess=0),
                    schedule=schedule, out=out, **extra)  # type: ignore[arg-type]


def _run(broker: MosquittoServer, scenario: Scenario, at_tick: int, attack: Callable[[], None]) -> None:
    def progress(done: int, total: int) -> None:
        if done == at_tick:
            attack()

    replay(scenario, bus=MqttBus(MqttSettings(host=broker.host, port=broker.port)), progress=progress)


def _device(tmp_path: Path) -> tuple[str, str, str]:
    """The PSD's id, a phase to move it to (not its own) and a third phase for the attacker."""
    from devices.fleet import choose_devices
    from twin.feeders import open_feeder

    feeder = open_feeder(FEEDER).load_feeder()
    spec = choose_devices(feeder, FleetSpec(psd=1, pess=0))[0]
    own = feeder.customer(spec.customer_id).phases[0].name
    target, evil = [p for p in "ABC" if p != own]
    return spec.device_id, target, evil


@pytest.mark.slow
def test_forged_unsigned_revoked_tampered_and_replayed_commands_never_actuate(mosquitto: MosquittoServer,
                                                                                tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    good_key, ring = new_key(key_id="ctl", folder=keys)
    old_key, _ = new_key(key_id="old", folder=keys)
    revoke(keyring=ring, key_id="old")
    old = Signer.from_json(old_key.read_text(), source="old")
    evil = Signer.generate("ctl")  # claims the real key id
    stranger = Signer.generate("stranger")
    device, target, evil_phase = _device(tmp_path)
    schedule = tmp_path / "schedule.csv"
    schedule.write_text(f"time_utc,device_id,action,phase\n2024-01-15T06:05Z,{device},set_phase,{target}\n")
    client, captured = _attacker(mosquitto)
    expected: dict[str, int] = {}

    def attack() -> None:
        legit = next(c for c in captured if c.device_id == device)
        now = START + timedelta(minutes=10)
        fresh = [DeviceCommand(device_id=device, seq=legit.seq + 1 + k, issued_utc=now,
                               expires_utc=now + timedelta(minutes=5), action=DeviceAction.SET_PHASE, phase=evil_phase,
                               source="ctl") for k in range(N_EACH)]
        forged = [evil.sign(c).model_dump_json() for c in fresh]
        strangers = [stranger.sign(c).model_dump_json() for c in fresh]
        unsigned = [c.model_dump_json() for c in fresh]
        revoked = [old.sign(c).model_dump_json() for c in fresh]
        tampered = [legit.model_copy(update={"phase": evil_phase, "seq": legit.seq + 1 + k,
                                             "expires_utc": now + timedelta(minutes=5)}).model_dump_json()
                    for k in range(N_EACH)]
        replayed = [legit.model_dump_json()] * N_EACH
        for batch in (forged, strangers, unsigned, revoked, tampered, replayed):
            _send(client, device, batch)
        expected.update({"auth_failed": 5 * N_EACH})  # the exact replays: answered as duplicates, not acted on

    scenario = _scenario(tmp_path / "run", schedule, keyring=ring, signing_key=good_key)
    _run(mosquitto, scenario, 10, attack)
    client.loop_stop()
    client.disconnect()  # closes the socket (an open one is reported at a later garbage collection)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["auth"]["signed"] and summary["auth"]["commands_refused"] == expected
    # an exact replay of the accepted command is answered as a duplicate of it (applied once, acknowledged again)
    assert summary["acks"] == {"accepted": 1, "applied": 1 + N_EACH, "rejected:auth_failed": 5 * N_EACH}
    states = pd.read_parquet(tmp_path / "run" / "devices.parquet")
    assert set(states["phase"].iloc[6:]) == {target}, "only the legitimate command moved the switch"
    assert states["operations_total"].max() == 1
    acks = pd.read_parquet(tmp_path / "run" / "acks.parquet")
    assert int(acks["duplicate"].sum()) == N_EACH
    audit = [json.loads(line) for line in (tmp_path / "run" / "audit.jsonl").read_text().splitlines()]
    assert len(audit) == 1 + 6 * N_EACH and [a["entry"] for a in audit] == list(range(len(audit)))
    assert audit[0]["outcome"] == "accepted" and audit[0]["key_id"] == "ctl" and audit[0]["origin"] == "schedule"
    refused = [a for a in audit[1:] if a["outcome"] == "rejected"]
    assert all(a["tick"] == 10 for a in audit[1:])
    assert len(refused) == 5 * N_EACH and all(a["reason"] == "auth_failed" and not a["authentic"] for a in refused)
    repeats = [a for a in audit[1:] if a["outcome"] == "applied"]
    assert len(repeats) == N_EACH and all(a["seq"] == audit[0]["seq"] for a in repeats)
    assert {a["key_id"] for a in refused} == {"ctl", "stranger", "", "old"}
    assert all(a["received_utc"] and a["decided_utc"] == "2024-01-15T06:10:00Z" for a in refused)
    assert Keyring.read(ring).revoked == frozenset({"old"})


@pytest.mark.slow
def test_future_dated_heartbeat_and_command_change_nothing(mosquitto: MosquittoServer, tmp_path: Path) -> None:
    device, target, evil_phase = _device(tmp_path)
    schedule = tmp_path / "schedule.csv"
    schedule.write_text(f"time_utc,device_id,action,phase\n2024-01-15T06:05Z,{device},set_phase,{target}\n")
    client, _ = _attacker(mosquitto)
    future = datetime(2030, 1, 1, tzinfo=UTC)

    def attack() -> None:
        heartbeat = ControllerHeartbeat(feeder=FEEDER, tick=10**6, time_utc=future, controller_id="rolling-milp")
        infos = [client.publish(topics.controller_heartbeat(FEEDER), heartbeat.model_dump_json(), qos=1)]
        command = DeviceCommand(device_id=device, seq=2 * 10**12, issued_utc=future,
                                expires_utc=future + timedelta(days=1), action=DeviceAction.SET_PHASE,
                                phase=evil_phase)
        infos.append(client.publish(topics.device_cmd(FEEDER, device), command.model_dump_json(), qos=1))
        for info in infos:
            info.wait_for_publish(10)

    _run(mosquitto, _scenario(tmp_path / "run", schedule), 10, attack)
    client.loop_stop()
    client.disconnect()  # closes the socket (an open one is reported at a later garbage collection)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["auth"]["heartbeats_refused"] == {"future": 1} and summary["auth"]["heartbeats_accepted"] == 0
    assert summary["acks"] == {"accepted": 1, "applied": 1, "rejected:future": 1}
    states = pd.read_parquet(tmp_path / "run" / "devices.parquet").set_index("time_utc")
    lease_s, tick_s = 1800, 60
    renewed = pd.Timestamp("2024-01-15T06:05Z")  # the scheduled command: the last valid renewal
    safe = states[states["mode"] == "safe"]
    assert set(safe.loc[: renewed - pd.Timedelta(seconds=1), "safe_reason"]) == {"started"}
    first_expired = safe.loc[renewed:].index.min()
    assert first_expired - renewed <= pd.Timedelta(seconds=lease_s + tick_s)
    assert set(safe.loc[renewed:, "safe_reason"]) == {"lease_expired"}
    assert set(states["phase"].iloc[6:]) == {target}
