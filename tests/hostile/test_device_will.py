"""Issue 33, failure 5 (the will): an external device registers its MQTT will (its state with safe_reason
``offline``) and then dies without a word (its socket closed). Mosquitto publishes the will; the twin marks
the device unavailable at once — not three silent ticks later — and keeps its last phase for the grid."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pandas as pd
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from support.servers import MosquittoServer

from devices.fleet import FleetSpec, choose_devices
from phasetwin.run.replay import replay
from phasetwin.run.scenario import Scenario
from streams import topics
from streams.mqtt.bus import MqttBus, MqttSettings
from twin.feeders import open_feeder

FEEDER = "ieee-european-lv"
START = datetime(2024, 1, 15, 6, tzinfo=UTC)
FLEET = FleetSpec(psd=1, pess=0)
DIES_AT = 4


class MortalDevice:
    """A PSD on the bus that states its phase every tick and dies (socket closed, no DISCONNECT) at ``DIES_AT``."""

    def __init__(self, broker: MosquittoServer, device_id: str, customer_id: str, phase: str) -> None:
        self.device_id, self.customer_id, self.phase = device_id, customer_id, phase
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                  client_id=f"{device_id}-{uuid.uuid4().hex[:6]}", protocol=mqtt.MQTTv5)
        self.client.will_set(topics.device_state(FEEDER, device_id), json.dumps(self.state(0, START, "offline")),
                             qos=1)
        self.client.on_message = self._on_clock
        self.client.connect(broker.host, broker.port)
        self.client.subscribe(topics.twin_clock(FEEDER), qos=1)
        self.client.loop_start()
        self.dead = False

    def state(self, tick: int, time_utc: datetime, safe_reason: str | None = None) -> dict[str, Any]:
        return {"feeder": FEEDER, "tick": tick, "time_utc": time_utc.isoformat(), "device_id": self.device_id,
                "kind": "psd", "customer_id": self.customer_id, "mode": "safe" if safe_reason else "normal",
                "safe_reason": safe_reason, "phase": self.phase, "p_kw": [0, 0, 0], "in_transition": False,
                "operations_today": 0, "operations_total": 0, "dwell_remaining_s": 0, "last_seq": -1,
                "commands_executed": 0, "rejections": 0, "unsupplied_kwh": 0, "operation_cost": 0,
                "battery": None}

    def bury(self) -> None:
        """End the client for good: paho reconnected the dead device on its own, and that connection would stay
        open until garbage collection reported it, in whichever later test (an unclosed-socket warning)."""
        self.client.disconnect()
        self.client.loop_stop()
        sock = self.client.socket()
        if sock is not None:
            sock.close()

    def _on_clock(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        clock = json.loads(msg.payload)
        if self.dead:
            return
        if clock["tick"] >= DIES_AT:
            self.dead = True
            sock = client.socket()
            if sock is not None:
                sock.close()  # the connection dies: the broker publishes the will
            return
        client.publish(topics.device_state(FEEDER, self.device_id),
                       json.dumps(self.state(clock["tick"], datetime.fromisoformat(clock["time_utc"]))), qos=1)


@pytest.mark.slow
def test_the_will_of_a_dead_device_marks_it_unavailable_at_once(mosquitto: MosquittoServer, tmp_path: Path) -> None:
    feeder = open_feeder(FEEDER).load_feeder()
    spec = choose_devices(feeder, FLEET)[0]
    phase = feeder.customer(spec.customer_id).phases[0].name
    device = MortalDevice(mosquitto, spec.device_id, spec.customer_id, phase)
    scenario = Scenario(start_utc=START, end_utc=START + timedelta(minutes=12), fleet=FLEET, speed=120,
                        external_devices=(spec.device_id,), out=tmp_path / "run")  # type: ignore[arg-type]
    try:
        replay(scenario, bus=MqttBus(MqttSettings(host=mosquitto.host, port=mosquitto.port)))
    finally:
        device.bury()
    events = pd.read_parquet(tmp_path / "run" / "hil.parquet")
    gone = events[events["kind"] == "unavailable"]
    assert len(gone) == 1 and gone.iloc[0]["detail"] == "MQTT will"
    assert gone.iloc[0]["time_utc"] <= pd.Timestamp(START + timedelta(minutes=DIES_AT + 1)), "at once"
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["hil"]["unavailable_now"] == [spec.device_id]
    assert summary["ingest"]["quarantined"] == {}, "the will is part of the contract, not a bad payload"
