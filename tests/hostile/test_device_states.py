"""Issue 33, failure 1, on the shipped secured broker: an external (HIL) device may publish on its own state
topic only (the ACL), but what it says there is checked too. A state with ``p_kw: NaN`` and a state that
claims another customer (and a phase for it) are dead-lettered with their reason; the run goes on to its
summary, and neither reaches the device table nor the grid.

The forged states are published from the run's progress callback, through the device's own MQTT connection
with its own password, and acknowledged by the broker before the next tick (so the tick is known)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pandas as pd
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from support.secure_broker import SecureMosquittoServer

from devices.fleet import FleetSpec, choose_devices
from phasetwin.run.replay import replay
from phasetwin.run.scenario import Scenario
from streams import topics
from streams.mqtt.bus import MqttBus, MqttSettings
from twin.feeders import open_feeder

pytestmark = [pytest.mark.mosquitto, pytest.mark.slow]
FEEDER = "ieee-european-lv"
START = datetime(2024, 1, 15, 6, tzinfo=UTC)
FLEET = FleetSpec(psd=2, pess=0)


def _specs() -> list[tuple[str, str, str]]:
    feeder = open_feeder(FEEDER).load_feeder()
    return [(d.device_id, d.customer_id, feeder.customer(d.customer_id).phases[0].name)
            for d in choose_devices(feeder, FLEET)]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureMosquittoServer]:
    server = SecureMosquittoServer(workdir=tmp_path_factory.mktemp("mosquitto-secure"),
                                   devices=tuple(d for d, _, _ in _specs()))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _state(device_id: str, customer_id: str, phase: str, tick: int, p_kw: list[float]) -> str:
    return json.dumps({
        "feeder": FEEDER, "tick": tick, "time_utc": (START + timedelta(minutes=tick)).isoformat(),
        "device_id": device_id, "kind": "psd", "customer_id": customer_id, "mode": "normal", "phase": phase,
        "p_kw": p_kw, "in_transition": False, "operations_today": 0, "operations_total": 0,
        "dwell_remaining_s": 0, "last_seq": -1, "commands_executed": 0, "rejections": 0, "unsupplied_kwh": 0,
        "operation_cost": 0, "battery": None})  # json.dumps writes NaN as the bare token NaN


def test_forged_device_states_are_dead_lettered_and_the_run_goes_on(broker: SecureMosquittoServer,
                                                                     tmp_path: Path) -> None:
    (inside, inside_customer, inside_phase), (hil, hil_customer, hil_phase) = _specs()
    other = next(p for p in "ABC" if p != inside_phase)
    device = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"{hil}-{uuid.uuid4().hex[:6]}",
                         protocol=mqtt.MQTTv5)
    device.username_pw_set(hil, broker.passwords[hil])
    device.connect(broker.host, broker.port)
    device.loop_start()

    def attack(done: int, total: int) -> None:
        if done == 3:
            forged = [_state(hil, hil_customer, hil_phase, 3, [float("nan"), 0.0, 0.0]),  # NaN on its own topic
                      _state(hil, inside_customer, other, 3, [0.0, 0.0, 0.0])]  # speaks for another customer
            for payload in forged:
                info = device.publish(topics.device_state(FEEDER, hil), payload, qos=1)
                info.wait_for_publish(10)
                assert info.rc == mqtt.MQTT_ERR_SUCCESS

    scenario = Scenario(start_utc=START, end_utc=START + timedelta(minutes=8), fleet=FLEET,
                        external_devices=(hil,), out=tmp_path / "run")  # type: ignore[arg-type]
    bus = MqttBus(MqttSettings(host=broker.host, port=broker.port, username="twin", password=broker.passwords["twin"]))
    replay(scenario, bus=bus, progress=attack)
    device.loop_stop()
    device.disconnect()
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["ticks"] == 8, "the run went on to its end"
    assert summary["ingest"]["quarantined"] == {"id_mismatch": 1, "non_finite": 1}
    states = pd.read_parquet(tmp_path / "run" / "devices.parquet")
    assert set(states["device_id"]) == {inside}, "no forged state reached the device table"
    assert set(states["customer_id"]) == {inside_customer}
    assert set(states["phase"]) == {inside_phase}, "the other customer kept its phase"
