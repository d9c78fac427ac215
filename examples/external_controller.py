"""A small external controller for hardware-in-the-loop runs: paho-mqtt and the documented topics, nothing else.

Start the twin with its controller left out, then this script:

    phasetwin run --bus mqtt://127.0.0.1:1883 --external controller --speed 60
    python examples/external_controller.py --broker 127.0.0.1:1883

Every control period (``--period-ticks`` clock ticks) it sends a heartbeat on ``.../controller/heartbeat`` and,
when the transformer's phase loads differ by more than ``--threshold-kw``, moves one phase-switching device
from the most to the least loaded phase with a ``set_phase`` command on ``.../device/{id}/cmd``. It reads
``.../twin/clock``, ``.../grid/state``, ``.../device/+/state`` and ``.../device/+/ack``. The payloads are
described by ``docs/contract/asyncapi.json`` and ``docs/contract/schemas/``. Its first heartbeat goes out on
the first clock tick it sees, so that the control period it joins in is not counted as missed.

Against devices that require signatures (the twin started with ``--keyring``), give ``--signing-key`` (a key
file of that keyring, ``phasetwin keys new``): every heartbeat and command then carries the run nonce of the
twin's clock and is signed by ``docs/contract/reference_signer.py`` as ``docs/contract/signing.md`` specifies.
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import json
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

ROOT = "phasetwin/v1"
REFERENCE_SIGNER = Path(__file__).resolve().parents[1] / "docs" / "contract" / "reference_signer.py"
Sign = Callable[[dict[str, Any]], dict[str, Any]]


def signer(key_file: str) -> Sign:
    """A function adding ``auth`` to a message, by the reference signer of the contract."""
    spec = importlib.util.spec_from_file_location("reference_signer", REFERENCE_SIGNER)
    assert spec is not None and spec.loader is not None, f"{REFERENCE_SIGNER} is missing"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    key = json.loads(Path(key_file).read_text())
    seed = base64.b64decode(key["private_key"])
    return lambda message: module.sign(message, key_id=key["key_id"], seed=seed)


class Controller:
    def __init__(self, client: mqtt.Client, feeder: str, controller_id: str, period_ticks: int,
                 threshold_kw: float, sign: Sign | None = None) -> None:
        self.client, self.feeder, self.id, self.sign = client, feeder, controller_id, sign
        self.run = ""  # the run nonce of the twin's clock, bound into every signed message
        self.heartbeat_seq = time.time_ns() // 1_000_000  # strictly increasing, also across restarts
        self.beats = 0
        self.period_ticks, self.threshold_kw = period_ticks, threshold_kw
        self.p_trafo_kw: list[float] = [0.0, 0.0, 0.0]
        self.devices: dict[str, dict[str, Any]] = {}
        self.seq: dict[str, int] = {}
        self.sent = self.acks = self.rejected = 0
        self.lock = threading.Lock()

    def topic(self, *parts: str) -> str:
        return "/".join((ROOT, self.feeder, *parts))

    def on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:  # an exception here would end paho's network thread silently
            payload = json.loads(msg.payload)
            kind = msg.topic.rsplit("/", 1)[-1]
            with self.lock:
                if msg.topic.endswith("/grid/state"):
                    self.p_trafo_kw = payload["p_trafo_kw"]
                elif kind == "state" and "/device/" in msg.topic:
                    self.devices[payload["device_id"]] = payload
                elif kind == "ack":
                    self.acks += 1
                    self.rejected += payload["status"] == "rejected"
                elif msg.topic.endswith("/twin/clock"):
                    self.run = payload.get("run", "")
                    if self.beats == 0 or payload["tick"] % self.period_ticks == 0:
                        self.decide(payload["tick"], payload["time_utc"], payload["tick_s"])
        except Exception as err:
            print(f"ignored a message on {msg.topic}: {err!r}")

    def decide(self, tick: int, time_utc: str, tick_s: int) -> None:
        now = datetime.fromisoformat(time_utc)
        self.heartbeat_seq += 1
        self.beats += 1
        self.publish(self.topic("controller", "heartbeat"), {
            "feeder": self.feeder, "tick": tick, "time_utc": time_utc, "controller_id": self.id,
            "seq": self.heartbeat_seq, "run": self.run})
        loads = self.p_trafo_kw
        high, low = max(range(3), key=loads.__getitem__), min(range(3), key=loads.__getitem__)
        if loads[high] - loads[low] < self.threshold_kw:
            return
        phase_high, phase_low = "ABC"[high], "ABC"[low]
        movable = [d for d in self.devices.values() if d["kind"] == "psd" and d["phase"] == phase_high
                   and d["mode"] == "normal" and not d["in_transition"] and d["dwell_remaining_s"] == 0]
        if not movable:
            return
        device = movable[0]["device_id"]
        self.seq[device] = self.seq.get(device, int(time.time())) + 1
        self.publish(self.topic("device", device, "cmd"), {
            "device_id": device, "seq": self.seq[device], "issued_utc": time_utc,
            "expires_utc": (now + timedelta(seconds=self.period_ticks * tick_s)).isoformat(),
            "action": "set_phase", "phase": phase_low, "source": self.id, "run": self.run})
        self.sent += 1

    def publish(self, topic: str, payload: dict[str, Any]) -> None:
        self.client.publish(topic, json.dumps(self.sign(payload) if self.sign else payload), qos=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", default="127.0.0.1:1883", help="host:port of the MQTT broker")
    parser.add_argument("--username"), parser.add_argument("--password")
    parser.add_argument("--feeder", default="ieee-european-lv")
    parser.add_argument("--controller-id", default="external-example")
    parser.add_argument("--period-ticks", type=int, default=15, help="clock ticks per control period")
    parser.add_argument("--threshold-kw", type=float, default=2.0)
    parser.add_argument("--duration-s", type=float, default=0, help="stop after this many seconds (0: never)")
    parser.add_argument("--signing-key", help="Ed25519 key file (JSON key_id, private_key) to sign with")
    args = parser.parse_args()
    host, _, port = args.broker.rpartition(":")
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=args.controller_id,
                         protocol=mqtt.MQTTv5)
    if args.username:
        client.username_pw_set(args.username, args.password)
    controller = Controller(client, args.feeder, args.controller_id, args.period_ticks, args.threshold_kw,
                            sign=signer(args.signing_key) if args.signing_key else None)
    client.on_message = controller.on_message

    def on_connect(client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        for parts in (("twin", "clock"), ("grid", "state"), ("device", "+", "state"), ("device", "+", "ack")):
            client.subscribe(controller.topic(*parts), qos=1)  # again after every reconnect

    client.on_connect = on_connect
    client.connect(host or "127.0.0.1", int(port or 1883))
    client.loop_start()
    started = time.monotonic()
    try:
        while not args.duration_s or time.monotonic() - started < args.duration_s:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    client.loop_stop()
    client.disconnect()
    print(f"commands sent {controller.sent}, acks {controller.acks} ({controller.rejected} rejected), "
          f"heartbeats {controller.beats}")


if __name__ == "__main__":
    main()
