"""The production setup as shipped (issue 29, item 2): Mosquitto run from ``docker/mosquitto``'s config and ACL,
the twin logged in as ``twin``, an external device written from the contract alone (plain paho, no phasetwin
import, logged in with its device id) and an external controller (plain paho, user ``controller``).

The device needs the twin's clock: every state carries the twin's ``tick`` and ``time_utc``. The shipped ACL
once left ``twin/clock`` out; Mosquitto granted the subscription and dropped every delivery, so the device
published no state, the controller never commanded it and the twin reported it gone silent. Here the controller
reads the device's state, commands it to another phase, the device applies the command, and the twin counts the
commands and acks and keeps the device available.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pandas as pd
import pytest
from support.paho_clients import started_client, stop_client
from support.secure_broker import SecureMosquittoServer

ROOT = Path(__file__).resolve().parents[3]
PHASETWIN = str(Path(sys.executable).with_name("phasetwin"))
FEEDER = "ieee-european-lv"
DEVICE, CUSTOMER = "psd-LOAD53", "LOAD53"
PERIOD_TICKS = 15
BASE = f"phasetwin/v1/{FEEDER}"


def _client(broker: SecureMosquittoServer, user: str, topics: tuple[str, ...],
            on_message: Callable[[mqtt.Client, Any, mqtt.MQTTMessage], None]) -> mqtt.Client:
    return started_client(broker.host, broker.port, name=user, topics=topics, on_message=on_message,
                          login=(user, broker.passwords[user]))


class ContractDevice:
    """A PSD from docs/contract alone: states on every clock tick, commands applied and acknowledged."""

    def __init__(self, broker: SecureMosquittoServer) -> None:
        self.phase = "A"
        self.applied: list[str] = []
        self.heartbeats = 0
        self.client = _client(broker, DEVICE, (
            f"{BASE}/twin/clock", f"{BASE}/device/{DEVICE}/cmd", f"{BASE}/controller/heartbeat"), self._on_message)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        payload = json.loads(msg.payload)
        if msg.topic.endswith("/cmd"):
            self.phase = payload["phase"]
            self.applied.append(payload["phase"])
            self._publish("ack", {"feeder": FEEDER, "tick": 0, "time_utc": payload["issued_utc"],
                                  "device_id": DEVICE, "seq": payload["seq"], "status": "applied"})
        elif msg.topic.endswith("/heartbeat"):
            self.heartbeats += 1
        elif msg.topic.endswith("/clock"):
            self._publish("state", {
                "feeder": FEEDER, "tick": payload["tick"], "time_utc": payload["time_utc"], "device_id": DEVICE,
                "kind": "psd", "customer_id": CUSTOMER, "mode": "normal", "phase": self.phase, "p_kw": [0, 0, 0],
                "in_transition": False, "operations_today": len(self.applied), "operations_total": len(self.applied),
                "dwell_remaining_s": 0, "last_seq": -1, "commands_executed": len(self.applied), "rejections": 0,
                "unsupplied_kwh": 0, "operation_cost": 0, "battery": None})

    def _publish(self, kind: str, payload: dict[str, Any]) -> None:
        self.client.publish(f"{BASE}/device/{DEVICE}/{kind}", json.dumps(payload), qos=1)

    def stop(self) -> None:
        stop_client(self.client)


class ContractController:
    """An external controller from docs/contract alone: each control period a heartbeat and, once it has read
    the device's state, a command moving the device off the phase that state reports."""

    def __init__(self, broker: SecureMosquittoServer) -> None:
        self.states: dict[str, str] = {}
        self.sent: list[str] = []
        self.acks = 0
        self.ticks = 0
        self.seq = int(time.time())
        self.lock = threading.Lock()
        self.client = _client(broker, "controller", (
            f"{BASE}/twin/clock", f"{BASE}/device/+/state", f"{BASE}/device/+/ack"), self._on_message)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        payload = json.loads(msg.payload)
        with self.lock:
            if msg.topic.endswith("/state"):
                self.states[payload["device_id"]] = payload["phase"]
            elif msg.topic.endswith("/ack"):
                self.acks += payload["device_id"] == DEVICE
            elif msg.topic.endswith("/clock"):
                self.ticks += 1
                if payload["tick"] and payload["tick"] % PERIOD_TICKS == 0:
                    self._decide(payload)

    def _decide(self, clock: dict[str, Any]) -> None:
        now = datetime.fromisoformat(clock["time_utc"])
        self._publish(f"{BASE}/controller/heartbeat", {"feeder": FEEDER, "tick": clock["tick"],
                                                        "time_utc": clock["time_utc"], "controller_id": "ext"})
        if DEVICE not in self.states:
            return
        target = "B" if self.states[DEVICE] != "B" else "C"
        self.seq += 1
        self._publish(f"{BASE}/device/{DEVICE}/cmd", {
            "device_id": DEVICE, "seq": self.seq, "issued_utc": clock["time_utc"],
            "expires_utc": (now + timedelta(seconds=PERIOD_TICKS * clock["tick_s"])).isoformat(),
            "action": "set_phase", "phase": target, "source": "ext"})
        self.sent.append(target)

    def _publish(self, topic: str, payload: dict[str, Any]) -> None:
        self.client.publish(topic, json.dumps(payload), qos=1)

    def stop(self) -> None:
        stop_client(self.client)


@pytest.fixture
def broker(tmp_path: Path) -> Any:
    server = SecureMosquittoServer(workdir=tmp_path / "broker", devices=(DEVICE,))
    server.start()
    yield server
    server.stop()


@pytest.mark.slow
def test_contract_device_and_controller_work_through_the_shipped_broker(
        broker: SecureMosquittoServer, tmp_path: Path) -> None:
    device, controller = ContractDevice(broker), ContractController(broker)
    out = tmp_path / "run"
    try:
        twin = subprocess.run(
            [PHASETWIN, "run", "--bus", f"mqtt://twin:{broker.passwords['twin']}@{broker.host}:{broker.port}",
             "--speed", "600", "--start", "2024-01-15T06:00", "--end", "2024-01-15T07:00", "--psd", "10",
             "--pess", "0", "--external", "controller", "--external", f"device:{DEVICE}", "--out", str(out)],
            cwd=ROOT, capture_output=True, text=True, timeout=180)
    finally:
        device.stop()
        controller.stop()
    assert twin.returncode == 0, twin.stdout + twin.stderr
    assert controller.ticks > 0 and device.heartbeats > 0
    assert DEVICE in controller.states, "the controller read the device's states"
    assert controller.sent and device.applied == controller.sent, "every command reached the device and was applied"
    assert controller.acks == len(controller.sent)
    hil = json.loads((out / "summary.json").read_text())["hil"]
    # available at the end (a moment of lag on a loaded machine may mark it unavailable once, then available)
    assert hil["unavailable_now"] == [] and hil["unavailable_events"] <= 1, hil
    assert hil["commands"] == len(controller.sent) and hil["acks"] >= len(controller.sent)
    states = pd.read_parquet(out / "devices.parquet")
    ours = states[states["device_id"] == DEVICE]
    assert len(ours) >= 50 and set(controller.sent) <= set(ours["phase"]), "the twin used the device's states"
