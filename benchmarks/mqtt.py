"""MQTT throughput and latency on loopback, through the twin's bus and with raw paho, in the same run.

    .venv/bin/python benchmarks/mqtt.py [--messages 20000] [--round-trips 2000] [--protocols 5,3.1.1]

Starts its own Mosquitto (tests/support/servers.py: no-delay, persistent) on a free loopback port and measures, with the
other side of every measurement (feed, device) in a process of its own, as it would be:
1. raw paho: QoS 1 meter-sized messages from a paho publisher to a paho subscriber, and from a minimal
   pre-encoded publisher (the "fast feed", cheap enough not to be the limit) to a paho subscriber, messages/s;
2. twin ingest: the same messages (valid ``MeterReading`` JSON on ``.../meter/{id}``) from the fast feed into
   ``MqttBus`` → contract validation → the grid role's reading handler, messages/s, live and from a broker
   backlog (the twin's own capacity);
3. a whole replay over MQTT with one message per meter (``--per-meter-topics``): readings/s end to end;
4. command → ack round trip: raw paho echo vs ``MqttBus`` (the command decoded and validated, a ``DeviceAck``
   built, encoded and published back), dispatched in the network thread (``immediate``, a device adapter) and
   from a pumping thread (the twin's mode) — p50/p99 over ``--round-trips`` sequential round trips to each,
   interleaved (one to each responder in turn) so that the machine's noise falls on all three alike.
Ingest and round trips are measured for each protocol of ``--protocols`` (the feed, the raw clients and the bus
all speak it): paho parses a ``Properties`` object for every MQTT 5 PUBLISH it receives, which MQTT 3.1.1 skips.
Targets (issue 6): ≥ 10,000 meter messages/s ingested; command → ack p99 ≤ 1 ms.
"""

from __future__ import annotations

import argparse
import gc
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

from support.servers import MosquittoServer

from streams import topics
from streams.messages import AckStatus, DeviceAck, DeviceAction, DeviceCommand, Message, MeterReading
from streams.mqtt.bus import MqttBus, MqttSettings

T0 = datetime(2024, 1, 15, tzinfo=UTC)


def _nodelay(client: mqtt.Client, userdata: object, sock: object) -> None:
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


PROTOCOLS = {"5": mqtt.MQTTv5, "3.1.1": mqtt.MQTTv311}


def _client(broker: MosquittoServer, name: str, protocol: str) -> mqtt.Client:
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"{name}-{uuid.uuid4().hex[:6]}",
                         protocol=PROTOCOLS[protocol])
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


def _feed_process(host: str, port: int, payloads: list[tuple[str, bytes]], protocol: str) -> None:
    """Child process: publish every payload at QoS 1 as fast as paho can, wait for the broker's acks."""
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"feed-{uuid.uuid4().hex[:6]}",
                         protocol=PROTOCOLS[protocol])
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


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _packet(header: int, body: bytes) -> bytes:
    return bytes([header]) + _varint(len(body)) + body


def _mqtt_string(text: str) -> bytes:
    raw = text.encode()
    return len(raw).to_bytes(2, "big") + raw


def _read_packet(sock: socket.socket, buf: bytearray) -> int:
    """Read one whole packet from ``sock`` (``buf`` keeps what came after it); return its type nibble."""
    while True:
        if len(buf) >= 2:
            length, mult, i = 0, 1, 1
            while i < len(buf) and i <= 4:
                length += (buf[i] & 127) * mult
                mult *= 128
                if not buf[i] & 128:
                    break
                i += 1
            else:
                i = -1
            if i > 0 and len(buf) >= i + 1 + length:
                kind = buf[0] >> 4
                del buf[: i + 1 + length]
                return kind
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the broker closed the connection")
        buf += chunk


def _fast_feed_process(host: str, port: int, payloads: list[tuple[str, bytes]], protocol: str) -> None:
    """Child process: a minimal MQTT publisher that writes pre-encoded QoS 1 PUBLISH packets, 20 in flight (the
    broker's default receive maximum), so that the feed costs little CPU and the receiving side is what limits."""
    v5 = protocol == "5"
    props = b"\x00" if v5 else b""
    packets = [_packet(0x32, _mqtt_string(topic) + (k % 65535 + 1).to_bytes(2, "big") + props + payload)
               for k, (topic, payload) in enumerate(payloads)]
    sock = socket.create_connection((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    connect = _mqtt_string("MQTT") + bytes([5 if v5 else 4, 0x02]) + (60).to_bytes(2, "big") + props
    sock.sendall(_packet(0x10, connect + _mqtt_string(f"fastfeed-{uuid.uuid4().hex[:6]}")))
    buf = bytearray()
    if _read_packet(sock, buf) != 2:
        raise RuntimeError("no CONNACK")
    window = 20
    for start in range(0, len(packets), window):
        batch = packets[start:start + window]
        sock.sendall(b"".join(batch))
        acked = 0
        while acked < len(batch):
            acked += _read_packet(sock, buf) == 4  # PUBACK
    sock.sendall(b"\xe0\x00")
    sock.close()


def _start_feed(broker: MosquittoServer, payloads: list[tuple[str, bytes]], protocol: str,
                *, fast: bool = False) -> multiprocessing.Process:
    feed = multiprocessing.get_context("fork").Process(target=_fast_feed_process if fast else _feed_process,
                                                        args=(broker.host, broker.port, payloads, protocol))
    feed.start()
    return feed


def raw_throughput(broker: MosquittoServer, payloads: list[tuple[str, bytes]], protocol: str, *,
                   fast_feed: bool) -> float:
    done = threading.Event()
    count = [0]

    def on_message(c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        count[0] += 1
        if count[0] == len(payloads):
            done.set()

    sub = _client(broker, "raw-sub", protocol)
    sub.on_message = on_message
    feeder = payloads[0][0].split("/")[2]
    sub.subscribe(topics.meters(feeder), qos=1)
    time.sleep(0.3)
    t0 = time.perf_counter()
    feed = _start_feed(broker, payloads, protocol, fast=fast_feed)
    done.wait(120)
    rate = count[0] / (time.perf_counter() - t0)
    feed.join()
    sub.loop_stop()
    sub.disconnect()
    return rate


def twin_ingest(broker: MosquittoServer, payloads: list[tuple[str, bytes]], feeder_name: str,
                protocol: str) -> tuple[float, float]:
    """(live rate, backlog rate): the twin ingesting while the feed publishes, and draining the same number of
    messages queued by the broker for its session while it was away (its own capacity, not the feed's)."""
    from twin.feeders import open_feeder
    from twin.grid.role import GridRole
    from twin.powerflow import Engine, create_powerflow

    feeder = open_feeder("ieee-european-lv").load_feeder()
    settings = MqttSettings(host=broker.host, port=broker.port, protocol=protocol)  # type: ignore[arg-type]
    handled = [0]

    def twin(client_id: str | None = None) -> tuple[MqttBus, GridRole]:
        bus = MqttBus(settings, name="bench", client_id=client_id)
        grid = GridRole(bus=bus, feeder=feeder, name=feeder_name, powerflow=create_powerflow(feeder, engine=Engine.PGM))
        bus.subscribe(topics.meters(feeder_name), lambda t, m: handled.__setitem__(0, handled[0] + 1))
        gc.freeze()  # as phasetwin.run.execute.execute does once the roles are set up
        return bus, grid

    def ingest(bus: MqttBus, started: float) -> float:
        target = handled[0] + len(payloads)
        deadline = time.monotonic() + 120
        while handled[0] < target and time.monotonic() < deadline:
            bus.pump(0.05)
        return len(payloads) / (time.perf_counter() - started)

    bus, grid = twin()
    t0 = time.perf_counter()
    feed = _start_feed(broker, payloads, protocol, fast=True)
    live = ingest(bus, t0)
    feed.join()
    bus.close(end_session=False)  # the broker keeps the session and queues what comes
    first = grid
    feed = _start_feed(broker, payloads, protocol, fast=True)
    feed.join()
    t0 = time.perf_counter()
    bus, grid = twin(bus.client_id)
    backlog = ingest(bus, t0)
    bus.close()
    for role in (first, grid):  # no tick runs: the grid role holds or rejects what is ahead of its first tick
        c = role.counters
        taken = c.readings_held + c.readings_rejected + c.readings_duplicate + c.readings_late + role.inbox.fresh
        assert taken == len(payloads), (taken, len(payloads))
    return live, backlog


def replay_per_meter(broker: MosquittoServer, out: Path, protocol: str) -> tuple[float, int, float]:
    from phasetwin.run.replay import replay
    from phasetwin.run.scenario import Scenario

    scenario = Scenario(per_meter_topics=True, out=out, start_utc=T0, end_utc=T0 + timedelta(hours=6))
    bus = MqttBus(MqttSettings(host=broker.host, port=broker.port, protocol=protocol),  # type: ignore[arg-type]
                  name="bench-replay")
    t0 = time.perf_counter()
    result = replay(scenario, bus=bus)
    wall = time.perf_counter() - t0
    return result.summary.readings_published / wall, result.summary.readings_published, wall


def _raw_echo_process(host: str, port: int, protocol: str, ready: Any, stop: Any) -> None:
    """Child process: a raw paho device that answers every command with its payload on the ack topic."""
    gc.freeze()  # the imports inherited from the parent are long-lived here as in a device process
    echo = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"echo-{uuid.uuid4().hex[:6]}",
                       protocol=PROTOCOLS[protocol])
    echo.on_socket_open = _nodelay
    echo.on_message = lambda c, u, msg: c.publish(msg.topic.replace("/cmd", "/ack"), msg.payload, qos=1)
    echo.on_subscribe = lambda *args: ready.set()
    echo.connect(host, port)
    echo.subscribe("bench/raw/device/+/cmd", qos=1)
    echo.loop_start()
    stop.wait(600)
    echo.loop_stop()
    echo.disconnect()


def _bus_responder_process(host: str, port: int, protocol: str, feeder: str, immediate: bool, ready: Any,
                           stop: Any) -> None:
    """Child process: an ``MqttBus`` role that validates each command and publishes a ``DeviceAck``."""
    gc.freeze()
    bus = MqttBus(MqttSettings(host=host, port=port, protocol=protocol),  # type: ignore[arg-type]
                  name="bench-rtt", immediate=immediate)

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


def round_trips(broker: MosquittoServer, n: int, protocol: str) -> dict[str, np.ndarray]:
    """Sequential command → ack round trips (s) to three responders, each in a process of its own, interleaved —
    one to each in turn — so that the machine's noise falls on the three alike."""
    ctx = multiprocessing.get_context("fork")
    host, port = broker.host, broker.port
    feeders = {immediate: f"bench{uuid.uuid4().hex[:6]}" for immediate in (True, False)}
    responders: dict[str, tuple[Callable[..., None], tuple[Any, ...], str, str]] = {
        "raw paho echo": (_raw_echo_process, (host, port, protocol), "bench/raw/device/d1/cmd",
                          "bench/raw/device/d1/ack"),
    }
    for immediate, feeder in feeders.items():
        responders["MqttBus immediate" if immediate else "MqttBus pumped"] = (
            _bus_responder_process, (host, port, protocol, feeder, immediate), topics.device_cmd(feeder, "psd-1"),
            topics.device_ack(feeder, "psd-1"))
    stop = ctx.Event()
    children = []
    try:
        for target, args, _, _ in responders.values():
            ready = ctx.Event()
            children.append(ctx.Process(target=target, args=(*args, ready, stop)))
            children[-1].start()
            if not ready.wait(30):
                raise RuntimeError("a responder process did not start")
        got = {ack: threading.Event() for _, _, _, ack in responders.values()}
        client = _client(broker, "rtt", protocol)
        client.on_message = lambda c, u, msg: got[msg.topic].set()
        for ack in got:
            client.subscribe(ack, qos=1)
        time.sleep(0.3)
        out = {name: np.empty(n) for name in responders}
        for k in range(n + 50):
            payload = DeviceCommand(device_id="psd-1", seq=k, issued_utc=T0, expires_utc=T0 + timedelta(minutes=1),
                                    action=DeviceAction.SET_PHASE, phase="B", source="bench").model_dump_json().encode()
            for name, (_, _, cmd, ack) in responders.items():
                got[ack].clear()
                t0 = time.perf_counter()
                client.publish(cmd, payload, qos=1)
                if not got[ack].wait(5):
                    raise RuntimeError(f"{name}: no ack for round trip {k}")
                if k >= 50:  # warm-up
                    out[name][k - 50] = time.perf_counter() - t0
        client.loop_stop()
        client.disconnect()
        return out
    finally:
        stop.set()
        for child in children:
            child.join(30)


def main() -> None:
    # The ingest measurement sends readings far ahead of the grid role's tick on purpose (it rejects and would
    # log each one); logging 40,000 warnings to a terminal would be what is measured.
    logging.getLogger("twin").setLevel(logging.ERROR)
    logging.getLogger("streams").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--round-trips", type=int, default=2000)
    parser.add_argument("--protocols", default="5,3.1.1", help="comma-separated: 5, 3.1.1")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 200 messages, 20 round trips, MQTT 5 only")
    args = parser.parse_args()
    if args.quick:
        args.messages, args.round_trips, args.protocols = 200, 20, "5"
    protocols = [p.strip() for p in args.protocols.split(",")]
    rates: dict[str, dict[str, float]] = {}
    rtts: dict[str, dict[str, np.ndarray]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        broker = MosquittoServer(workdir=Path(tmp))
        broker.start()
        try:
            from twin.feeders import open_feeder

            meters = [c.id for c in open_feeder("ieee-european-lv").load_feeder().customers]
            for protocol in protocols:
                feeder = f"bench{uuid.uuid4().hex[:6]}"
                payloads = _meter_payloads(feeder, args.messages, meters)
                raw = raw_throughput(broker, payloads, protocol, fast_feed=False)
                raw_fast = raw_throughput(broker, payloads, protocol, fast_feed=True)
                payloads = _meter_payloads(feeder + "x", args.messages, meters)
                live, backlog = twin_ingest(broker, payloads, feeder + "x", protocol)
                replay_rate, readings, replay_wall = replay_per_meter(broker, Path(tmp) / f"run{protocol}", protocol)
                rates[protocol] = {"raw": raw, "raw_fast": raw_fast, "live": live, "backlog": backlog,
                                   "replay": replay_rate, "readings": readings, "replay_wall": replay_wall}
                measured = round_trips(broker, args.round_trips, protocol)
                rtts[protocol] = {name: rtt * 1e3 for name, rtt in measured.items()}
        finally:
            broker.stop()
    print(f"meter messages, QoS 1, {args.messages} messages of ~{len(payloads[0][1])} bytes, msg/s:")
    print("  A: paho publisher → paho subscriber; B: fast feed → paho subscriber (what paho can receive);")
    print("  C: fast feed → twin (MqttBus, contract validation, grid role), live; D: broker backlog → twin;")
    print("  E: a replay over MQTT with one message per meter (published and received by the twin, power flow "
          "included)")
    print(f"  {'MQTT':6s} {'A':>8s} {'B':>8s} {'C':>8s} {'C/B':>6s} {'D':>8s} {'D/B':>6s} {'E':>8s}")
    for protocol, r in rates.items():
        print(f"  {protocol:6s} {r['raw']:8.0f} {r['raw_fast']:8.0f} {r['live']:8.0f} {r['live'] / r['raw_fast']:6.2f} "
              f"{r['backlog']:8.0f} {r['backlog'] / r['raw_fast']:6.2f} {r['replay']:8.0f}")
    print(f"command → ack round trip, {args.round_trips} sequential per responder, interleaved, ms:")
    for protocol, by_kind in rtts.items():
        raw_p99 = np.percentile(by_kind["raw paho echo"], 99)
        for name, rtt in by_kind.items():
            p99 = np.percentile(rtt, 99)
            print(f"  MQTT {protocol:5s} {name:17s} p50 {np.percentile(rtt, 50):.3f}  p99 {p99:.3f}  "
                  f"max {rtt.max():.3f}  p99/raw p99 {p99 / raw_p99:.2f}")


if __name__ == "__main__":
    main()
