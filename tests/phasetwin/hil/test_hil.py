"""`phasetwin run` in real time on a real Mosquitto with external parties: the example controller (paho only)
commands the simulated PSDs, a scripted external device answers for a while and then falls silent.
The twin must measure command and ack latency, count the control periods the controller missed after it
stopped, and mark the silent device unavailable. SIGTERM ends a run cleanly with its run folder."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pandas as pd
import pytest
from support.paho_clients import started_client, stop_client
from support.servers import MosquittoServer

from streams import topics
from streams.runfolder.matrix import read_frame

ROOT = Path(__file__).resolve().parents[3]  # tests/phasetwin/<folder>/ → the checkout
PHASETWIN = str(Path(sys.executable).with_name("phasetwin"))
FEEDER = "ieee-european-lv"


class FakeDevice:
    """An external PSD that publishes its state on every clock tick until ``silent_after`` and acks commands."""

    def __init__(self, broker: MosquittoServer, device_id: str, customer_id: str, silent_after: int) -> None:
        self.device_id, self.customer_id, self.silent_after = device_id, customer_id, silent_after
        self.phase = "A"
        self.ticks_seen = 0
        self.client = started_client(broker.host, broker.port, name=device_id, on_message=self._on_message,
                                     topics=(topics.twin_clock(FEEDER), topics.device_cmd(FEEDER, device_id)))

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        payload = json.loads(msg.payload)
        if msg.topic.endswith("/cmd"):
            self.phase = payload["phase"]
            self._publish("ack", {"feeder": FEEDER, "tick": 0, "time_utc": payload["issued_utc"],
                                  "device_id": self.device_id, "seq": payload["seq"], "status": "applied"})
        elif msg.topic.endswith("/clock"):
            self.ticks_seen += 1
            if payload["tick"] < self.silent_after:
                self._publish("state", {
                    "feeder": FEEDER, "tick": payload["tick"], "time_utc": payload["time_utc"],
                    "device_id": self.device_id, "kind": "psd", "customer_id": self.customer_id, "mode": "normal",
                    "phase": self.phase, "p_kw": [0, 0, 0], "in_transition": False, "operations_today": 0,
                    "operations_total": 0, "dwell_remaining_s": 0, "last_seq": -1, "commands_executed": 0,
                    "rejections": 0, "unsupplied_kwh": 0, "operation_cost": 0, "battery": None})

    def _publish(self, kind: str, payload: dict[str, Any]) -> None:
        self.client.publish(f"{topics.ROOT}/{FEEDER}/device/{self.device_id}/{kind}", json.dumps(payload), qos=1)

    def stop(self) -> None:
        stop_client(self.client)


class _StatusWatch:
    """Counts the twin's status messages, to wait until a run is under way whatever the machine's load."""

    def __init__(self, broker: MosquittoServer) -> None:
        self.ticks: list[int] = []
        self.client = started_client(broker.host, broker.port, name="watch", topics=(topics.twin_status(FEEDER),),
                                     on_message=lambda c, u, msg: self.ticks.append(json.loads(msg.payload)["tick"]))

    def wait_for(self, n: int, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.ticks) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.ticks) >= n, "the twin published no status"

    def __enter__(self) -> _StatusWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        stop_client(self.client)


def _run(broker: MosquittoServer, out: Path, *extra: str, end: str = "2024-01-15T08:00") -> subprocess.Popen[str]:
    return subprocess.Popen(
        [PHASETWIN, "run", "--bus", broker.url, "--speed", "600", "--start", "2024-01-15T06:00", "--end", end,
         "--psd", "10", "--pess", "0", "--out", str(out), *extra],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_hil_run_with_external_controller_and_a_device_that_falls_silent(
    mosquitto: MosquittoServer, tmp_path: Path
) -> None:
    silent = "psd-LOAD53"
    device = FakeDevice(mosquitto, silent, "LOAD53", silent_after=20)
    with _StatusWatch(mosquitto) as statuses:
        twin = _run(mosquitto, tmp_path, "--external", "controller", "--external", f"device:{silent}")
        statuses.wait_for(1)
    controller = subprocess.run(
        [sys.executable, str(ROOT / "examples/external_controller.py"),
         "--broker", f"{mosquitto.host}:{mosquitto.port}",
         "--period-ticks", "15", "--threshold-kw", "0.5", "--duration-s", "6"],
        cwd=ROOT, capture_output=True, text=True, timeout=60)
    output, _ = twin.communicate(timeout=120)
    device.stop()
    assert twin.returncode == 0, output
    assert controller.returncode == 0, controller.stdout + controller.stderr
    sent = int(controller.stdout.split("commands sent ")[1].split(",")[0])
    assert sent > 0, controller.stdout

    summary = json.loads((tmp_path / "summary.json").read_text())
    hil = summary["hil"]
    assert hil["commands"] == sent, "every command of the external controller was seen by the twin"
    assert hil["acks"] >= sent
    assert 0 < hil["command_latency_s_p50"] < 1.0
    assert hil["ack_latency_s_p50"] is not None
    # the controller stopped after 6 s (about 60 of 120 ticks): the periods after that were missed
    assert hil["missed_deadlines"] >= 2
    assert hil["unavailable_now"] == [silent] and hil["unavailable_events"] == 1
    assert summary["controller"] == {"strategy": "external"}, "the built-in controller must not run"
    events = pd.read_parquet(tmp_path / "hil.parquet")
    assert {"command", "ack", "missed_deadline", "unavailable"} <= set(events["kind"])
    gone = events[events["kind"] == "unavailable"].iloc[0]
    assert gone["device_id"] == silent and gone["time_utc"] >= pd.Timestamp("2024-01-15T06:23", tz="UTC")
    applied = pd.read_parquet(tmp_path / "acks.parquet")
    assert (applied["status"] == "applied").sum() >= 1, "a simulated PSD executed an external command"


def test_sigterm_ends_a_run_cleanly_with_its_run_folder(mosquitto: MosquittoServer, tmp_path: Path) -> None:
    with _StatusWatch(mosquitto) as statuses:
        twin = _run(mosquitto, tmp_path, "--external", "controller", end="2024-01-16T00:00")
        statuses.wait_for(5)
    twin.send_signal(signal.SIGTERM)
    output, _ = twin.communicate(timeout=60)
    assert twin.returncode == 0, output
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["stopped_early"] is True
    assert 0 < summary["ticks"] < 1080
    voltages = read_frame(tmp_path / "voltages_pu.parquet")
    assert voltages.notna().all(axis=1).sum() == summary["ticks"]
    assert "stopped early" in output
    assert (tmp_path / "transformer.parquet").exists()
