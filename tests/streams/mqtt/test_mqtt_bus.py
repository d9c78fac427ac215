"""MqttBus against a real Mosquitto: same recorded states as the in-process bus, no loss across a broker
restart, dead letters for bad payloads, subscriptions renewed after the broker lost them, TCP no-delay."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pandas as pd
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from support.servers import MosquittoServer

from controllers.online.settings import ControllerSettings, Strategy
from devices.fleet import FleetSpec
from phasetwin.run.replay import replay
from phasetwin.run.scenario import Scenario
from streams import topics
from streams.messages import ClockTick, Message
from streams.mqtt.bus import BusError, MqttBus, MqttSettings

TABLES = ("voltages_pu.parquet", "metrics.parquet", "transformer.parquet", "devices.parquet", "acks.parquet")


def _scenario(out: Path, hours: int = 4) -> Scenario:
    return Scenario(start_utc=datetime(2024, 1, 15, 6, tzinfo=UTC),
                    end_utc=datetime(2024, 1, 15, 6 + hours, tzinfo=UTC),
                    fleet=FleetSpec(psd=10, pess=2), controller=ControllerSettings(strategy=Strategy.GREEDY), out=out)


def _bus(broker: MosquittoServer, **overrides: object) -> MqttBus:
    return MqttBus(MqttSettings(host=broker.host, port=broker.port, **overrides))  # type: ignore[arg-type]


def _assert_same_tables(a: Path, b: Path) -> None:
    for name in TABLES:
        left, right = pd.read_parquet(a / name), pd.read_parquet(b / name)
        assert len(left) > 0, name
        pd.testing.assert_frame_equal(left, right, check_exact=True, obj=name)


def _raw_client(broker: MosquittoServer) -> mqtt.Client:
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"raw-{uuid.uuid4()}",
                         protocol=mqtt.MQTTv5)
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_replay_over_mqtt_records_the_same_states_as_in_process(mosquitto: MosquittoServer, tmp_path: Path,
                                                                 protocol: str) -> None:
    local = replay(_scenario(tmp_path / "local"))
    bus = _bus(mosquitto, protocol=protocol)
    over_mqtt = replay(_scenario(tmp_path / "mqtt"), bus=bus)
    _assert_same_tables(tmp_path / "local", tmp_path / "mqtt")
    assert over_mqtt.summary.bus["kind"] == "mqtt" and over_mqtt.summary.bus["deadletters"] == 0
    assert over_mqtt.summary.bus["dispatched"] > 0
    # the devices really moved, so commands, acks and states crossed the broker
    assert local.summary.controller["switch_commands"] > 0
    assert local.summary.acks == over_mqtt.summary.acks


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_broker_restart_mid_replay_loses_no_message(mosquitto: MosquittoServer, tmp_path: Path, protocol: str) -> None:
    replay(_scenario(tmp_path / "local"))
    bus = _bus(mosquitto, protocol=protocol)
    outage: dict[str, float] = {}

    def restart_broker() -> None:
        mosquitto.stop()
        outage["stopped"] = time.monotonic()
        time.sleep(2.0)
        mosquitto.start()
        outage["started"] = time.monotonic()

    worker: list[threading.Thread] = []

    def progress(done: int, total: int) -> None:
        if done == 100 and not worker:
            worker.append(threading.Thread(target=restart_broker))
            worker[0].start()
            time.sleep(0.5)  # let the stop land while the replay keeps publishing

    result = replay(_scenario(tmp_path / "mqtt"), bus=bus, progress=progress)
    worker[0].join()
    assert "started" in outage
    assert result.summary.bus["connects"] >= 2, "the bus never saw the broker go away"
    _assert_same_tables(tmp_path / "local", tmp_path / "mqtt")
    assert result.summary.readings_missing == 0 and result.summary.readings_late == 0


def test_malformed_payloads_go_to_the_dead_letter_topic_and_are_counted(mosquitto: MosquittoServer) -> None:
    feeder = f"f{uuid.uuid4().hex[:8]}"
    bus = _bus(mosquitto)
    got: list[Message] = []
    bus.subscribe(topics.twin_clock(feeder), lambda t, m: got.append(m))
    letters: list[dict[str, object]] = []
    watcher = _raw_client(mosquitto)
    watcher.on_message = lambda c, u, msg: letters.append(json.loads(msg.payload))
    watcher.subscribe(topics.deadletter(feeder), qos=1)
    time.sleep(0.3)
    sender = _raw_client(mosquitto)
    kinds = {
        "not json": b"{not json",
        "wrong type": json.dumps({"feeder": feeder, "tick": "x", "time_utc": "2024-01-15T00:00:00+00:00",
                                  "tick_s": 60, "speed": 0}).encode(),
        "extra field": json.dumps({"feeder": feeder, "tick": 1, "time_utc": "2024-01-15T00:00:00+00:00",
                                   "tick_s": 60, "speed": 0, "evil": 1}).encode(),
        "naive time": json.dumps({"feeder": feeder, "tick": 1, "time_utc": "2024-01-15T00:00:00",
                                  "tick_s": 60, "speed": 0}).encode(),
    }
    n_each = 2500
    infos = [sender.publish(topics.twin_clock(feeder), payload, qos=1)
             for _ in range(n_each) for payload in kinds.values()]
    for info in infos:
        info.wait_for_publish(10)
    good = ClockTick(feeder=feeder, tick=3, time_utc=datetime(2024, 1, 15, tzinfo=UTC), tick_s=60, speed=0)
    sender.publish(topics.twin_clock(feeder), good.model_dump_json(), qos=1).wait_for_publish(10)
    deadline = time.monotonic() + 30
    while bus.counters.dispatched < 1 and time.monotonic() < deadline:
        bus.pump(0.2)
    bus.settle()
    assert bus.counters.deadletters == 4 * n_each
    assert sum(bus.counters.deadletter_reasons.values()) == 4 * n_each
    assert got == [good], "the valid message after 10,000 bad ones must still be delivered, and only it"
    assert bus.counters.callback_errors == 0
    deadline = time.monotonic() + 30
    while len(letters) < 4 * n_each and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(letters) == 4 * n_each
    assert all(letter["reason"] and letter["topic"] == topics.twin_clock(feeder) for letter in letters)
    # reason codes from the fixed list, counted exactly per code; the detail says what was wrong
    assert dict(bus.counters.deadletter_reasons) == {"not_json": n_each, "invalid": 3 * n_each}
    assert {letter["reason"] for letter in letters} == {"not_json", "invalid"}
    texts = " ".join(str(letter["detail"]) for letter in letters[:4])
    assert "invalid ClockTick" in texts and "tick" in texts and "Extra inputs" in texts and "Invalid JSON" in texts
    for client in (watcher, sender):
        client.loop_stop()
        client.disconnect()
    bus.close()


def test_subscriptions_are_renewed_when_the_broker_lost_the_session(mosquitto: MosquittoServer) -> None:
    feeder = f"f{uuid.uuid4().hex[:8]}"
    bus = _bus(mosquitto)
    got: list[Message] = []
    bus.subscribe(topics.twin_clock(feeder), lambda t, m: got.append(m))
    mosquitto.kill()  # a crash: the broker forgets sessions it had not saved
    mosquitto.start()
    deadline = time.monotonic() + 15
    while bus.counters.connects < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert bus.counters.connects >= 2
    time.sleep(0.3)
    sender = _raw_client(mosquitto)
    tick = ClockTick(feeder=feeder, tick=1, time_utc=datetime(2024, 1, 15, tzinfo=UTC), tick_s=60, speed=0)
    sender.publish(topics.twin_clock(feeder), tick.model_dump_json(), qos=1).wait_for_publish(10)
    bus.settle()
    deadline = time.monotonic() + 5
    while not got and time.monotonic() < deadline:
        bus.pump(0.1)
    assert got == [tick]
    sender.loop_stop()
    sender.disconnect()
    bus.close()


def test_client_socket_has_tcp_nodelay(mosquitto: MosquittoServer) -> None:
    bus = _bus(mosquitto)
    sock = bus._client.socket()
    assert isinstance(sock, socket.socket)
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    bus.close()


def test_unreachable_broker_is_a_clear_error() -> None:
    from support.servers import free_port

    port = free_port()
    with pytest.raises(BusError, match=rf"cannot connect to the MQTT broker mqtt://127.0.0.1:{port}"):
        MqttBus(MqttSettings(port=port, connect_timeout_s=2))


@pytest.mark.parametrize(("url", "message"), [
    ("http://x:1883", "scheme 'http' is not supported"),
    ("mqtt://:1883", "has no host"),
    ("mqtt://host:99999", "port is not a number"),
    ("mqtt://host:1883?protocol=4", "protocol='4' is not supported; expected 5 or 3.1.1"),
    ("mqtt://host:1883?qos=2", "unknown query parameter"),
])
def test_bad_bus_urls_name_the_problem(url: str, message: str) -> None:
    with pytest.raises(BusError, match=message):
        MqttSettings.from_url(url)


def test_bus_url_with_credentials() -> None:
    s = MqttSettings.from_url("mqtts://twin:s%40cret@broker.example:8884")
    assert (s.host, s.port, s.username, s.password, s.tls) == ("broker.example", 8884, "twin", "s@cret", True)


def test_bus_url_chooses_the_protocol() -> None:
    assert MqttSettings.from_url("mqtt://h:1").protocol == "5"
    s = MqttSettings.from_url("mqtt://h:1?protocol=3.1.1")
    assert s.protocol == "3.1.1" and MqttSettings.from_url(s.url) == s


def test_mqtt311_refuses_overlapping_filters_and_keeps_the_first(mosquitto: MosquittoServer) -> None:
    feeder = f"f{uuid.uuid4().hex[:8]}"
    bus = _bus(mosquitto, protocol="3.1.1")
    got: list[Message] = []
    bus.subscribe(topics.twin_clock(feeder), lambda t, m: got.append(m))
    with pytest.raises(BusError, match=r"overlaps .* subscription identifiers"):
        bus.subscribe(f"{topics.ROOT}/{feeder}/#", lambda t, m: got.append(m))
    tick = ClockTick(feeder=feeder, tick=0, time_utc=datetime(2024, 1, 15, tzinfo=UTC), tick_s=60, speed=0)
    bus.publish(topics.twin_clock(feeder), tick)
    bus.settle()
    assert got == [tick]
    bus.close()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_session_persists_while_away_and_ends_on_close(mosquitto: MosquittoServer, protocol: str) -> None:
    """The broker queues QoS 1 messages for a bus that left without ending its session, and forgets the session
    after ``close()``."""
    feeder = f"f{uuid.uuid4().hex[:8]}"
    away = _bus(mosquitto, protocol=protocol)
    away.subscribe(topics.twin_clock(feeder), lambda t, m: None)
    away.close(end_session=False)  # as a crashed process would leave it
    ticks = [ClockTick(feeder=feeder, tick=k, time_utc=datetime(2024, 1, 15, tzinfo=UTC), tick_s=60, speed=0)
             for k in range(5)]
    sender = _bus(mosquitto)
    for tick in ticks:
        sender.publish(topics.twin_clock(feeder), tick)
    sender.close()
    bus = MqttBus(MqttSettings(host=mosquitto.host, port=mosquitto.port, protocol=protocol),  # type: ignore[arg-type]
                  client_id=away.client_id)
    got: list[Message] = []
    bus.subscribe(topics.twin_clock(feeder), lambda t, m: got.append(m))
    bus.settle()
    assert got == ticks
    bus.close()
    present: list[bool] = []
    v5 = protocol == "5"
    probe = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=bus.client_id,
                        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311, clean_session=None if v5 else False)
    probe.on_connect = lambda c, u, flags, rc, p: present.append(flags.session_present)
    probe.connect(mosquitto.host, mosquitto.port, **({"clean_start": False} if v5 else {}))
    probe.loop_start()
    deadline = time.monotonic() + 5
    while not present and time.monotonic() < deadline:
        time.sleep(0.01)
    probe.disconnect()
    probe.loop_stop()
    assert present == [False]


def test_overlapping_filters_reach_each_handler_once(mosquitto: MosquittoServer) -> None:
    feeder = f"f{uuid.uuid4().hex[:8]}"
    bus = _bus(mosquitto)
    narrow: list[Message] = []
    wide: list[Message] = []
    bus.subscribe(topics.twin_clock(feeder), lambda t, m: narrow.append(m))
    bus.subscribe(f"{topics.ROOT}/{feeder}/#", lambda t, m: wide.append(m))
    ticks = [ClockTick(feeder=feeder, tick=k, time_utc=datetime(2024, 1, 15, tzinfo=UTC), tick_s=60, speed=0)
             for k in range(3)]
    for tick in ticks:
        bus.publish(topics.twin_clock(feeder), tick)
    bus.settle()
    assert narrow == ticks and wide == ticks
    bus.close()


@pytest.mark.parametrize(("a", "b", "overlap"), [
    ("x/+/c", "x/b/c", True), ("x/#", "x/b/c", True), ("x/b", "x/b/c", False), ("x/+/c", "x/+/d", False),
    ("#", "anything", True), ("x/b/+", "x/+/c", True), ("x/b", "y/b", False),
])
def test_filters_overlap(a: str, b: str, overlap: bool) -> None:
    assert topics.filters_overlap(a, b) is overlap
    assert topics.filters_overlap(b, a) is overlap


def test_network_loop_survives_an_unexpected_error_and_counts_it(mosquitto: MosquittoServer) -> None:
    """A bug inside paho or the loop cannot be caused for real, so one ``loop_misc`` call is made to raise."""
    feeder = f"f{uuid.uuid4().hex[:8]}"
    bus = _bus(mosquitto)
    got: list[Message] = []
    bus.subscribe(topics.twin_clock(feeder), lambda t, m: got.append(m))
    real_misc = bus._client.loop_misc
    raised: list[bool] = []

    def failing_once() -> object:
        if not raised:
            raised.append(True)
            raise RuntimeError("injected fault")
        return real_misc()

    bus._client.loop_misc = failing_once  # type: ignore[method-assign]
    tick = ClockTick(feeder=feeder, tick=0, time_utc=datetime(2024, 1, 15, tzinfo=UTC), tick_s=60, speed=0)
    bus.publish(topics.twin_clock(feeder), tick)
    bus.settle()
    assert raised and got == [tick]
    assert bus.counters.loop_errors == 1
    bus.close()
