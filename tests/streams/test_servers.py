"""The server fixtures give real, working servers: every check here is a round trip through one of them.

```
test ──publish QoS 1──► Mosquitto ──deliver──► test   (payloads, order, persistent sessions, restart)
test ──POST /write────► influxd   ◄──/query─── test   (counts and values, across a restart)
```
"""

from __future__ import annotations

import queue
import random
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from support.servers import MosquittoServer, ServerError, find_binary

if TYPE_CHECKING:
    from pathlib import Path

    from paho.mqtt.reasoncodes import ReasonCode
    from support.servers import InfluxDBServer

_WAIT_S = 10.0
_T = TypeVar("_T")


# ---------------------------------------------------------------------------------------------------------
# MQTT
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Connack:
    session_present: bool
    reason: ReasonCode


def _next(items: queue.Queue[_T], what: str) -> _T:
    try:
        return items.get(timeout=_WAIT_S)
    except queue.Empty:
        pass
    pytest.fail(f"no {what} within {_WAIT_S:g} s", pytrace=False)


class _Peer:
    """A paho v2 MQTT 5 client for tests, used as a context manager that disconnects it.

    Callbacks run on paho's network thread and only enqueue; the test thread waits on the queues.
    """

    def __init__(
        self,
        broker: MosquittoServer,
        *,
        client_id: str,
        clean_start: bool = True,
        session_expiry_s: int = 0,
        subscribe_to: str | None = None,
    ) -> None:
        self.broker = broker
        self.clean_start = clean_start
        self.session_expiry_s = session_expiry_s
        self.subscribe_to = subscribe_to
        self.connacks: queue.Queue[_Connack] = queue.Queue()
        self.subacks: queue.Queue[list[ReasonCode]] = queue.Queue()
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    def __enter__(self) -> _Peer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        if self.subscribe_to is not None and not reason.is_failure:
            client.subscribe(self.subscribe_to, qos=1)
        self.connacks.put(_Connack(session_present=flags.session_present, reason=reason))

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        self.subacks.put(list(reasons))

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self.messages.put(message)

    def connect(self) -> _Connack:
        """Connect, wait for CONNACK (and SUBACK when subscribing); return the CONNACK."""
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = self.session_expiry_s
        self.client.connect(
            self.broker.host,
            self.broker.port,
            keepalive=30,
            clean_start=self.clean_start,
            properties=properties,
        )
        self.client.loop_start()
        connack = _next(self.connacks, "CONNACK")
        assert not connack.reason.is_failure, f"CONNACK refused: {connack.reason}"
        if self.subscribe_to is not None:
            granted = _next(self.subacks, "SUBACK")
            assert [reason.value for reason in granted] == [1], f"SUBACK did not grant QoS 1: {granted}"
        return connack

    def publish_all(self, topic: str, payloads: list[bytes]) -> None:
        """Publish every payload with QoS 1 and wait until the broker acknowledged each one."""
        infos = [self.client.publish(topic, payload, qos=1) for payload in payloads]
        for info in infos:
            info.wait_for_publish(timeout=_WAIT_S)
            assert info.is_published(), f"no PUBACK for message {info.mid}"

    def receive(self, count: int) -> list[mqtt.MQTTMessage]:
        return [_next(self.messages, f"message {n + 1} of {count}") for n in range(count)]


def _random_payloads(seed: int, count: int) -> list[bytes]:
    rng = random.Random(seed)
    sizes = [0, 1, 65_536, 300_000] + [rng.randrange(1, 4_096) for _ in range(count - 4)]
    return [rng.randbytes(size) for size in sizes]


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _publish(broker: MosquittoServer, topic: str, payloads: list[bytes]) -> None:
    with _Peer(broker, client_id=_unique("pub")) as publisher:
        publisher.connect()
        publisher.publish_all(topic, payloads)


@pytest.mark.mosquitto
def test_qos1_round_trip_keeps_every_payload_and_their_order(mosquitto: MosquittoServer) -> None:
    topic = f"phasetwin-test/{_unique('round-trip')}"
    payloads = _random_payloads(seed=7, count=400)
    with (
        _Peer(mosquitto, client_id=_unique("sub"), subscribe_to=topic) as subscriber,
        _Peer(mosquitto, client_id=_unique("pub")) as publisher,
    ):
        subscriber.connect()
        publisher.connect()
        publisher.publish_all(topic, payloads)
        received = subscriber.receive(len(payloads))

    assert [message.topic for message in received] == [topic] * len(payloads)
    assert {message.qos for message in received} == {1}
    assert [message.payload for message in received] == payloads


# Clean start is off from the first CONNECT on: Mosquitto 2.0.11 keeps the session of a client whose last
# CONNECT had clean start on across a disconnect, but does not save it to disk, so a broker restart loses
# it. paho's default, MQTT_CLEAN_START_FIRST_ONLY, is exactly that case.
def _subscribe_and_go_away(broker: MosquittoServer, topic: str) -> str:
    """Subscribe with a persistent session (expiry 10 min), disconnect; return the client id."""
    client_id = _unique("persistent")
    with _Peer(
        broker, client_id=client_id, clean_start=False, session_expiry_s=600, subscribe_to=topic
    ) as subscriber:
        first = subscriber.connect()
    assert not first.session_present
    return client_id


def _come_back_and_receive(broker: MosquittoServer, client_id: str, count: int) -> list[bytes]:
    """Reconnect without clean start and without subscribing: anything received comes from the session."""
    with _Peer(broker, client_id=client_id, clean_start=False, session_expiry_s=600) as subscriber:
        connack = subscriber.connect()
        assert connack.session_present, "the broker did not keep the session"
        return [bytes(message.payload) for message in subscriber.receive(count)]


@pytest.mark.mosquitto
def test_persistent_session_receives_qos1_messages_sent_while_it_was_away(mosquitto: MosquittoServer) -> None:
    topic = f"phasetwin-test/{_unique('away')}"
    client_id = _subscribe_and_go_away(mosquitto, topic)
    payloads = [f"away {n}".encode() for n in range(60)]

    _publish(mosquitto, topic, payloads)

    assert _come_back_and_receive(mosquitto, client_id, len(payloads)) == payloads


@pytest.mark.mosquitto
def test_persistent_session_and_its_queue_survive_a_broker_restart(mosquitto: MosquittoServer) -> None:
    topic = f"phasetwin-test/{_unique('restart')}"
    client_id = _subscribe_and_go_away(mosquitto, topic)
    before = [f"before restart {n}".encode() for n in range(50)]
    after = [f"after restart {n}".encode() for n in range(50)]
    old_url = mosquitto.url

    _publish(mosquitto, topic, before)
    mosquitto.stop()
    assert not mosquitto.running
    mosquitto.start()
    assert mosquitto.url == old_url
    # Published after the restart, these reach the subscriber only if its subscription was restored too.
    _publish(mosquitto, topic, after)

    assert _come_back_and_receive(mosquitto, client_id, len(before) + len(after)) == before + after


@pytest.mark.mosquitto
def test_a_broker_that_cannot_bind_fails_with_its_log(mosquitto: MosquittoServer, tmp_path: Path) -> None:
    second = MosquittoServer(workdir=tmp_path, port=mosquitto.port)
    try:
        with pytest.raises(ServerError, match=r"(?s)mosquitto exited with code \d+ while starting.*in use"):
            second.start()
    finally:
        second.kill()
    assert not second.running


def test_a_missing_server_binary_says_how_to_install_it() -> None:
    with pytest.raises(ServerError, match=r"not installed .* run the tests with scripts/test"):
        find_binary("no-such-server", package="no-such-package")


# ---------------------------------------------------------------------------------------------------------
# InfluxDB 1.x
# ---------------------------------------------------------------------------------------------------------

_T0_S = 1_700_000_000
_METERS = ("m01", "m02", "m03")
_PHASES = ("a", "b", "c")


@dataclass(frozen=True)
class _Point:
    time_s: int
    meter: str
    phase: str
    p_kw: float
    q_kvar: float
    sample: int

    def line(self) -> str:
        return (
            f"meter_power,meter={self.meter},phase={self.phase} "
            f"p_kw={self.p_kw!r},q_kvar={self.q_kvar!r},sample={self.sample}i {self.time_s}"
        )


def _points(*, seed: int, ticks: range) -> list[_Point]:
    rng = random.Random(seed)
    return [
        _Point(
            time_s=_T0_S + 60 * tick,
            meter=meter,
            phase=phase,
            p_kw=rng.uniform(-5.0, 12.0),
            q_kvar=rng.uniform(-2.0, 2.0),
            sample=tick,
        )
        for tick in ticks
        for meter in _METERS
        for phase in _PHASES
    ]


def _write(server: InfluxDBServer, db: str, points: list[_Point]) -> None:
    query = urllib.parse.urlencode({"db": db, "precision": "s"})
    body = "\n".join(point.line() for point in points).encode()
    request = urllib.request.Request(f"{server.url}/write?{query}", data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=_WAIT_S) as response:
            assert response.status == 204
    except urllib.error.HTTPError as exc:
        with exc:
            pytest.fail(f"/write answered HTTP {exc.code}: {exc.read().decode(errors='replace')}")


def _read_back(server: InfluxDBServer, db: str) -> list[_Point]:
    answer = server.query(
        "SELECT p_kw, q_kvar, sample FROM meter_power GROUP BY * ORDER BY time", db, epoch="s"
    )
    points = []
    for series in answer["results"][0].get("series", []):
        for row in series["values"]:
            record = dict(zip(series["columns"], row, strict=True))
            points.append(
                _Point(
                    time_s=record["time"],
                    meter=series["tags"]["meter"],
                    phase=series["tags"]["phase"],
                    p_kw=record["p_kw"],
                    q_kvar=record["q_kvar"],
                    sample=record["sample"],
                )
            )
    return sorted(points, key=lambda point: (point.time_s, point.meter, point.phase))


def _count(server: InfluxDBServer, db: str) -> int:
    answer = server.query("SELECT count(p_kw) FROM meter_power", db)
    series = answer["results"][0].get("series", [])
    return int(series[0]["values"][0][1]) if series else 0


def _new_database(server: InfluxDBServer) -> str:
    db = _unique("phasetwin_test").replace("-", "_")
    server.query(f'CREATE DATABASE "{db}"')
    names = [row[0] for row in server.query("SHOW DATABASES")["results"][0]["series"][0]["values"]]
    assert db in names
    return db


@pytest.mark.influxdb
def test_line_protocol_points_read_back_with_their_values(influxdb: InfluxDBServer) -> None:
    db = _new_database(influxdb)
    written = _points(seed=11, ticks=range(40))

    _write(influxdb, db, written)

    assert _count(influxdb, db) == len(written)
    per_series = influxdb.query("SELECT count(p_kw) FROM meter_power GROUP BY meter, phase", db)
    counts = {
        (series["tags"]["meter"], series["tags"]["phase"]): series["values"][0][1]
        for series in per_series["results"][0]["series"]
    }
    assert counts == {(meter, phase): 40 for meter in _METERS for phase in _PHASES}
    assert _read_back(influxdb, db) == sorted(written, key=lambda p: (p.time_s, p.meter, p.phase))


@pytest.mark.influxdb
def test_points_survive_an_influxd_restart(influxdb: InfluxDBServer) -> None:
    db = _new_database(influxdb)
    before = _points(seed=12, ticks=range(30))
    after = _points(seed=13, ticks=range(30, 45))
    _write(influxdb, db, before)
    old_url = influxdb.url

    influxdb.stop()
    assert not influxdb.running
    influxdb.start()

    assert influxdb.url == old_url
    assert _read_back(influxdb, db) == before
    _write(influxdb, db, after)
    assert _count(influxdb, db) == len(before) + len(after)


@pytest.mark.influxdb
def test_query_errors_are_raised_with_the_server_message(influxdb: InfluxDBServer) -> None:
    db = _new_database(influxdb)
    with pytest.raises(ServerError, match=r"error parsing query"):
        influxdb.query("SELECT FROM WHERE", db)
