"""The message contract survives a real broker: a replay's messages, sent as JSON through Mosquitto and
decoded on the other side, equal the in-process objects.

```
replay ──LocalBus──► tap ──paho QoS 1──► Mosquitto ──► subscriber ──decode()──► compare with the originals
```
"""

from __future__ import annotations

import queue
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from support.paho_clients import stop_client
from support.servers import MosquittoServer

from phasetwin.run.replay import replay
from phasetwin.run.scenario import Scenario
from streams.bus import LocalBus
from streams.contract import ContractError, decode
from streams.messages import GridState, Message


class TappedBus(LocalBus):
    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[str, Message]] = []

    def publish(self, topic: str, message: Message) -> None:
        self.sent.append((topic, message))
        super().publish(topic, message)


def _client(broker: MosquittoServer, name: str) -> mqtt.Client:
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"{name}-{uuid.uuid4()}",
                         protocol=mqtt.MQTTv5)
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client


def _equal(a: Message, b: Message) -> bool:
    for field in type(a).model_fields:
        x, y = getattr(a, field), getattr(b, field)
        if isinstance(x, np.ndarray):
            if not np.array_equal(x, y):
                return False
        elif x != y:
            return False
    return True


@pytest.mark.mosquitto
@pytest.mark.parametrize("per_meter", [False, True], ids=["frames", "per-meter"])
def test_replay_messages_round_trip_through_mosquitto(mosquitto: MosquittoServer, tmp_path: Path,
                                                       per_meter: bool) -> None:
    bus = TappedBus()
    replay(Scenario(end_utc=datetime(2024, 1, 15, 0, 10, tzinfo=UTC), out=tmp_path, per_meter_topics=per_meter),
           bus=bus)
    received: queue.Queue[tuple[str, bytes]] = queue.Queue()
    sub = _client(mosquitto, "sub")
    subscribed: queue.Queue[bool] = queue.Queue()
    sub.on_message = lambda c, u, msg: received.put((msg.topic, msg.payload))
    sub.on_subscribe = lambda c, u, mid, codes, props: subscribed.put(True)
    sub.subscribe("phasetwin/v1/#", qos=1)
    subscribed.get(timeout=10)
    pub = _client(mosquitto, "pub")
    for topic, message in bus.sent:
        pub.publish(topic, message.model_dump_json(), qos=1).wait_for_publish(timeout=10)
    got = [received.get(timeout=10) for _ in bus.sent]
    stop_client(pub)
    stop_client(sub)
    # clock, meters (one frame or 55 readings), grid state, status per tick
    assert len(bus.sent) == 10 * (1 + (55 if per_meter else 1) + 1 + 1)
    for (topic, original), (wire_topic, payload) in zip(bus.sent, got, strict=True):
        assert wire_topic == topic
        decoded = decode(wire_topic, payload)
        assert type(decoded) is type(original) and _equal(decoded, original), topic
    assert sum(isinstance(m, GridState) for _, m in bus.sent) == 10


def test_decode_names_the_topic_and_every_bad_field() -> None:
    with pytest.raises(ContractError, match=r"invalid MeterReading: tick: Input should be greater than or equal"
                                            r" to 0; p_kw: Tuple should have at most 3 items"):
        decode("phasetwin/v1/f/meter/m1", b'{"feeder":"f","tick":-1,"time_utc":"2024-01-01T00:00:00Z",'
                                           b'"meter_id":"m1","p_kw":[1,2,3,4],"q_kvar":[0]}')
    with pytest.raises(ContractError, match="is not part of the phasetwin/v1 contract"):
        decode("phasetwin/v2/f/meter/m1", b"{}")
    with pytest.raises(ContractError, match="Invalid JSON"):
        decode("phasetwin/v1/f/twin/clock", b"{not json")
