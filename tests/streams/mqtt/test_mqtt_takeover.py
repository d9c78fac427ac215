"""Issue 33, failure 6, on the shipped secured broker: the read-only ``recorder`` user cannot learn the twin's
client id from the sync topics nor knock the twin off by connecting with it (``use_username_as_clientid``);
a command nobody took before its lifetime is not delivered later (MQTT message expiry); a payload above the
shipped ``max_packet_size`` never reaches a subscriber. On an open broker (no such protection) a client-id
takeover raises the bus's connect-flap alarm."""

from __future__ import annotations

import queue
import time
import uuid
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from support.paho_clients import stop_client
from support.secure_broker import SecureMosquittoServer
from support.servers import MosquittoServer

from streams import topics
from streams.messages import DeviceAction, DeviceCommand
from streams.mqtt.bus import FLAP_DISCONNECTS, MqttBus, MqttSettings

pytestmark = pytest.mark.mosquitto
T0 = datetime(2024, 1, 15, tzinfo=UTC)


@pytest.fixture(scope="module")
def broker(secure_broker: SecureMosquittoServer) -> SecureMosquittoServer:
    return secure_broker


def _client(host: str, port: int, user: str | None, password: str | None, client_id: str,
            *, clean: bool = True) -> tuple[mqtt.Client, queue.Queue[mqtt.MQTTMessage]]:
    got: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv5)
    if user:
        client.username_pw_set(user, password)
    client.on_message = lambda c, u, m: got.put(m)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0 if clean else 600
    client.connect(host, port, clean_start=clean, properties=props)
    client.loop_start()
    return client, got


def _twin(broker: SecureMosquittoServer) -> MqttBus:
    return MqttBus(MqttSettings(host=broker.host, port=broker.port, username="twin",
                                password=broker.passwords["twin"]))


def test_the_recorder_cannot_learn_nor_take_over_the_twins_client_id(broker: SecureMosquittoServer) -> None:
    bus = _twin(broker)
    spy, seen = _client(broker.host, broker.port, "recorder", broker.passwords["recorder"], "spy")
    spy.subscribe(f"{topics.ROOT}/_bus/#", qos=1)
    time.sleep(0.3)
    for _ in range(3):
        bus.settle()
    names = [seen.get(timeout=5).topic for _ in range(3)]
    assert names and not any(bus.client_id in name for name in names), "the sync topic names no client id"
    for _ in range(2 * FLAP_DISCONNECTS):  # the attack of the issue, with the id it could have read
        thief, _ = _client(broker.host, broker.port, "recorder", broker.passwords["recorder"], bus.client_id)
        time.sleep(0.3)
        thief.loop_stop()
        thief.disconnect()
    bus.settle()
    assert bus.counters.disconnects == 0 and bus.counters.connect_flap_alarms == 0
    stop_client(spy)
    bus.close()


def test_a_client_id_takeover_on_an_open_broker_raises_the_flap_alarm(mosquitto: MosquittoServer) -> None:
    bus = MqttBus(MqttSettings(host=mosquitto.host, port=mosquitto.port, reconnect_min_s=1, reconnect_max_s=1))
    for _ in range(FLAP_DISCONNECTS):
        thief, _ = _client(mosquitto.host, mosquitto.port, None, None, bus.client_id)
        time.sleep(0.3)
        thief.loop_stop()
        thief.disconnect()
        time.sleep(1.5)  # the bus reconnects
    assert bus.counters.disconnects >= FLAP_DISCONNECTS and bus.counters.connect_flap_alarms == 1
    bus.close()


def test_an_expired_command_is_not_delivered_later(broker: SecureMosquittoServer) -> None:
    feeder = f"exp-{uuid.uuid4().hex[:6]}"
    device, got = _client(broker.host, broker.port, "psd-1", broker.passwords["psd-1"], "psd-1", clean=False)
    device.subscribe(topics.device_cmd(feeder, "psd-1"), qos=1)
    time.sleep(0.3)
    device.loop_stop()
    device.disconnect()  # away, its persistent session kept: the broker queues its commands
    bus = _twin(broker)
    for seq, lifetime_s in ((1, 1), (2, 60)):
        bus.publish(topics.device_cmd(feeder, "psd-1"), DeviceCommand(
            device_id="psd-1", seq=seq, issued_utc=T0, expires_utc=T0 + timedelta(seconds=lifetime_s),
            action=DeviceAction.SET_PHASE, phase="B"))
    bus.settle()
    time.sleep(2.5)
    device, got = _client(broker.host, broker.port, "psd-1", broker.passwords["psd-1"], "psd-1", clean=False)
    first = got.get(timeout=5)
    assert DeviceCommand.model_validate_json(first.payload).seq == 2, "the 1 s command expired in the queue"
    time.sleep(0.5)
    assert got.empty()
    device.loop_stop()
    device.disconnect()
    bus.close()


def test_a_payload_above_the_limit_reaches_no_subscriber(broker: SecureMosquittoServer) -> None:
    feeder = f"big-{uuid.uuid4().hex[:6]}"
    reader, got = _client(broker.host, broker.port, "recorder", broker.passwords["recorder"], "reader")
    reader.subscribe(topics.grid_state(feeder), qos=1)
    time.sleep(0.3)
    sender, _ = _client(broker.host, broker.port, "twin", broker.passwords["twin"], "sender")
    sender.publish(topics.grid_state(feeder), b"[" + b"0," * (5 * 1024 * 1024) + b"0]", qos=1)
    time.sleep(1.0)
    stop_client(sender)
    sender, _ = _client(broker.host, broker.port, "twin", broker.passwords["twin"], "sender")
    sender.publish(topics.grid_state(feeder), b"small", qos=1).wait_for_publish(5)
    assert got.get(timeout=5).payload == b"small", "the 10 MB payload never arrived; the one after it did"
    stop_client(sender)
    stop_client(reader)
