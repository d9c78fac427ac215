"""MQTT throughput and latency on loopback, through the twin's bus and with raw paho, in the same run.

    .venv/bin/python benchmarks/mqtt.py [--messages 20000] [--round-trips 2000]

Starts its own Mosquitto (tests/servers.py: no-delay, persistent) on a free loopback port and measures, with the
other side of every measurement (feed, device) in a process of its own, as it would be:
1. raw paho: QoS 1 meter-sized messages from one client to another, messages/s;
2. twin ingest: the same messages (valid ``MeterReading`` JSON on ``.../meter/{id}``) from an external paho
   publisher into ``MqttBus`` → contract validation → the grid role's reading handler, messages/s, live and
   from a broker backlog (the twin's own capacity);
3. a whole replay over MQTT with one message per meter (``--per-meter-topics``): readings/s end to end;
4. command → ack round trip: raw paho echo vs ``MqttBus`` (the command decoded and validated, a ``DeviceAck``
   built, encoded and published back), dispatched in paho's thread (``immediate``, a device adapter) and from a
   pumping thread (the twin's mode) — p50/p99 over ``--round-trips`` sequential round trips.
Targets (issue 6): ≥ 10,000 meter messages/s ingested; command → ack p99 ≤ 1 ms.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.append(str(Path(__file__).resolve().parents[1] / "tests"))

from servers import MosquittoServer

from streams import topics
from streams.messages import AckStatus, DeviceAck, DeviceAction, DeviceCommand, Message, MeterReading
from streams.mqtt import MqttBus, MqttSettings

T0 = datetime(2024, 1, 15, tzinfo=UTC)


def _nodelay(client: mqtt.Client, userdata: object, sock: object) -> None:
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _client(broker: MosquittoServer, name: str) -> mqtt.Client:
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"{name}-{uuid.uuid4().hex[:6]}",
                         protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.on_socket_open = _nodelay
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client


def _meter_payloads(feeder: str, n: int, meters: list[str]) -> list[tuple[str, bytes]]:
    out = []
    for k in range(n):
        m = meters[k % len(meters)]
        reading = MeterReading(feeder=feeder, tick=k // len(meters), time_utc=T0 + timedelta(minutes=k // len(meters)),
                               meter_id=m, p_kw=(1.0 + k % 7 * 0.1,), q_kvar=(0.2,))
        out.append((topics.meter(feeder, m), reading.model_dump_json().encode()))
    return out


def _feed_process(host: str, port: int, payloads: list[tuple[str, bytes]]) -> None:
    """Child process: publish every payload at QoS 1 as fast as paho can, wait for the broker's acks."""
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"feed-{uuid.uuid4().hex[:6]}",
                         protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.on_socket_open = _nodelay
    client.connect(host, port)
    client.loop_start()
    infos = [client.publish(topic, payload, qos=1) for topic, payload in payloads]
    for info in infos:
        info.wait_for_publish(60)
    client.loop_stop()
    client.disconnect()


def _start_feed(broker: MosquittoServer, payloads: list[tuple[str, bytes]]) -> multiprocessing.Process:
    feed = multiprocessing.get_context("fork").Process(target=_feed_process, args=(broker.host, broker.port, payloads))
    feed.start()
    return feed


def raw_throughput(broker: MosquittoServer, payloads: list[tuple[str, bytes]]) -> float:
    done = threading.Event()
    count = [0]

    def on_message(c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        count[0] += 1
        if count[0] == len(payloads):
            done.set()

    sub = _client(broker, "raw-sub")
    sub.on_message = on_message
    feeder = payloads[0][0].split("/")[2]
    sub.subscribe(topics.meters(feeder), qos=1)
    time.sleep(0.3)
    t0 = time.perf_counter()
    feed = _start_feed(broker, payloads)
    done.wait(120)
    rate = count[0] / (time.perf_counter() - t0)
    feed.join()
    sub.loop_stop()
    sub.disconnect()
    return rate


def twin_ingest(broker: MosquittoServer, payloads: list[tuple[str, bytes]], feeder_name: str) -> tuple[float, float]:
    """(live rate, backlog rate): the twin ingesting while the feed publishes, and draining the same number of
    messages queued by the broker for its session while it was away (its own capacity, not the feed's)."""
    from twin.feeders import open_feeder
    from twin.grid import GridRole
    from twin.powerflow import Engine, create_powerflow

    feeder = open_feeder("ieee-european-lv").load_feeder()
    bus = MqttBus(MqttSettings(host=broker.host, port=broker.port), name="bench")
    handled = [0]
    grid = GridRole(bus=bus, feeder=feeder, name=feeder_name, powerflow=create_powerflow(feeder, engine=Engine.PGM))
    bus.subscribe(topics.meters(feeder_name), lambda t, m: handled.__setitem__(0, handled[0] + 1))
    def ingest(started: float) -> float:
        target = handled[0] + len(payloads)
        deadline = time.monotonic() + 120
        while handled[0] < target and time.monotonic() < deadline:
            bus.pump(0.05)
        return len(payloads) / (time.perf_counter() - started)

    t0 = time.perf_counter()
    feed = _start_feed(broker, payloads)
    live = ingest(t0)
    feed.join()
    bus._client.disconnect()  # the session stays on the broker (expiry > 0) and queues what comes
    bus._client.loop_stop()
    time.sleep(0.3)
    feed = _start_feed(broker, payloads)
    feed.join()
    t0 = time.perf_counter()
    bus._client.reconnect()
    bus._client.loop_start()
    backlog = ingest(t0)
    c = grid.counters  # no tick runs: the grid role holds or rejects what is ahead of its first tick
    assert c.readings_held + c.readings_rejected + c.readings_duplicate + int(grid._fresh.sum()) == 2 * len(payloads)
    bus.close()
    return live, backlog


def replay_per_meter(broker: MosquittoServer, out: Path) -> tuple[float, int, float]:
    from twin.runner import replay
    from twin.scenario import Scenario

    scenario = Scenario(per_meter_topics=True, out=out, start_utc=T0, end_utc=T0 + timedelta(hours=6))
    bus = MqttBus(MqttSettings(host=broker.host, port=broker.port), name="bench-replay")
    t0 = time.perf_counter()
    result = replay(scenario, bus=bus)
    wall = time.perf_counter() - t0
    return result.summary.readings_published / wall, result.summary.readings_published, wall


def _raw_echo_process(host: str, port: int, ready: Any, stop: Any) -> None:
    """Child process: a raw paho device that answers every command with its payload on the ack topic."""
    echo = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"echo-{uuid.uuid4().hex[:6]}",
                       protocol=mqtt.MQTTv5)
    echo.on_socket_open = _nodelay
    echo.on_message = lambda c, u, msg: c.publish(msg.topic.replace("/cmd", "/ack"), msg.payload, qos=1)
    echo.on_subscribe = lambda *args: ready.set()
    echo.connect(host, port)
    echo.subscribe("bench/raw/device/+/cmd", qos=1)
    echo.loop_start()
    stop.wait(600)
    echo.loop_stop()
    echo.disconnect()


def _bus_responder_process(host: str, port: int, feeder: str, immediate: bool, ready: Any, stop: Any) -> None:
    """Child process: an ``MqttBus`` role that validates each command and publishes a ``DeviceAck``."""
    bus = MqttBus(MqttSettings(host=host, port=port), name="bench-rtt", immediate=immediate)

    def respond(topic: str, message: Message) -> None:
        assert isinstance(message, DeviceCommand)
        bus.publish(topics.device_ack(feeder, message.device_id), DeviceAck.trusted(
            feeder=feeder, tick=0, time_utc=message.issued_utc, device_id=message.device_id, seq=message.seq,
            status=AckStatus.ACCEPTED, reason=None, detail="", duplicate=False, effective_utc=None))

    bus.subscribe(topics.device_cmds(feeder), respond)
    ready.set()
    while not stop.is_set():
        if immediate:
            stop.wait(0.1)
        else:
            bus.pump(0.05)
    bus.close()


def _with_responder(
    target: Callable[..., None], args: tuple[Any, ...], measure: Callable[[], np.ndarray]
) -> np.ndarray:
    ctx = multiprocessing.get_context("fork")
    ready, stop = ctx.Event(), ctx.Event()
    child = ctx.Process(target=target, args=(*args, ready, stop))
    child.start()
    try:
        if not ready.wait(30):
            raise RuntimeError("the responder process did not start")
        return measure()
    finally:
        stop.set()
        child.join(30)


def raw_round_trips(broker: MosquittoServer, n: int) -> np.ndarray:
    return _with_responder(_raw_echo_process, (broker.host, broker.port), lambda: _round_trips(
        broker, n, "bench/raw/device/d1/cmd", "bench/raw/device/d1/ack", None))


def bus_round_trips(broker: MosquittoServer, n: int, *, immediate: bool) -> np.ndarray:
    feeder = f"bench{uuid.uuid4().hex[:6]}"
    return _with_responder(_bus_responder_process, (broker.host, broker.port, feeder, immediate), lambda: _round_trips(
        broker, n, topics.device_cmd(feeder, "psd-1"), topics.device_ack(feeder, "psd-1"), feeder))


def _round_trips(broker: MosquittoServer, n: int, cmd_topic: str, ack_topic: str, feeder: str | None) -> np.ndarray:
    got = threading.Event()
    client = _client(broker, "rtt")
    client.on_message = lambda c, u, msg: got.set()
    client.subscribe(ack_topic, qos=1)
    time.sleep(0.3)
    out = np.empty(n)
    for k in range(n + 50):
        payload = DeviceCommand(device_id="psd-1", seq=k, issued_utc=T0, expires_utc=T0 + timedelta(minutes=1),
                                action=DeviceAction.SET_PHASE, phase="B", source="bench").model_dump_json().encode()
        got.clear()
        t0 = time.perf_counter()
        client.publish(cmd_topic, payload, qos=1)
        if not got.wait(5):
            raise RuntimeError(f"no ack for round trip {k}")
        if k >= 50:  # warm-up
            out[k - 50] = time.perf_counter() - t0
    client.loop_stop()
    client.disconnect()
    return out


def main() -> None:
    # The ingest measurement sends readings far ahead of the grid role's tick on purpose (it rejects and would
    # log each one); logging 40,000 warnings to a terminal would be what is measured.
    logging.disable(logging.WARNING)
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--round-trips", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        broker = MosquittoServer(workdir=Path(tmp))
        broker.start()
        try:
            feeder = f"bench{uuid.uuid4().hex[:6]}"
            from twin.feeders import open_feeder

            meters = [c.id for c in open_feeder("ieee-european-lv").load_feeder().customers]
            payloads = _meter_payloads(feeder, args.messages, meters)
            raw = raw_throughput(broker, payloads)
            payloads = _meter_payloads(feeder + "x", args.messages, meters)
            ingest, backlog = twin_ingest(broker, payloads, feeder + "x")
            replay_rate, readings, replay_wall = replay_per_meter(broker, Path(tmp) / "run")
            raw_rtt = raw_round_trips(broker, args.round_trips) * 1e3
            bus_rtt = bus_round_trips(broker, args.round_trips, immediate=True) * 1e3
            pumped_rtt = bus_round_trips(broker, args.round_trips, immediate=False) * 1e3
        finally:
            broker.stop()
    print(f"meter messages, QoS 1, {args.messages} messages of ~{len(payloads[0][1])} bytes:")
    print(f"  raw paho client → client      {raw:10.0f} msg/s")
    print(f"  external feed → twin grid     {ingest:10.0f} msg/s   ({ingest / raw:.2f} of raw: the feed is the limit)")
    print(f"  broker backlog → twin grid    {backlog:10.0f} msg/s   ({backlog / raw:.2f} of raw)")
    print(f"  replay over MQTT, per meter   {replay_rate:10.0f} readings/s ({readings} readings, power flow "
          f"included, {replay_wall:.1f} s)")
    print(f"command → ack round trip, {args.round_trips} sequential, ms:")
    for name, rtt in (("raw paho echo", raw_rtt), ("MqttBus immediate", bus_rtt), ("MqttBus pumped", pumped_rtt)):
        print(f"  {name:17s} p50 {np.percentile(rtt, 50):.3f}  p99 {np.percentile(rtt, 99):.3f}  "
              f"max {rtt.max():.3f}")
    print(f"  ratio immediate/raw: p50 {np.percentile(bus_rtt, 50) / np.percentile(raw_rtt, 50):.2f}, "
          f"p99 {np.percentile(bus_rtt, 99) / np.percentile(raw_rtt, 99):.2f}")


if __name__ == "__main__":
    main()
