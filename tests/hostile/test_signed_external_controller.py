"""Issue 29 item 5 end to end: ``examples/external_controller.py --signing-key`` (paho and the contract's
reference signer only) drives a twin whose devices require signatures (``phasetwin run --keyring``) through a
real Mosquitto. Its first heartbeat goes out on the first clock tick it sees, so no control period is missed;
every heartbeat and command it signs is accepted (none refused for its signature, its run or its time)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.servers import MosquittoServer

from phasetwin.cli.keys import new_key

ROOT = Path(__file__).resolve().parents[2]
PHASETWIN = str(Path(sys.executable).with_name("phasetwin"))


@pytest.mark.slow
def test_the_example_controller_signs_and_beats_in_time(mosquitto: MosquittoServer, tmp_path: Path) -> None:
    key, ring = new_key(key_id="example", folder=tmp_path / "keys")
    controller = subprocess.Popen(
        [sys.executable, str(ROOT / "examples/external_controller.py"),
         "--broker", f"{mosquitto.host}:{mosquitto.port}", "--period-ticks", "5", "--threshold-kw", "0.5",
         "--signing-key", str(key)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(1.5)  # connected and subscribed before the first tick
    twin = subprocess.run(
        [PHASETWIN, "run", "--bus", mosquitto.url, "--speed", "300", "--start", "2024-01-15T06:00",
         "--end", "2024-01-15T06:30", "--psd", "10", "--pess", "0", "--external", "controller",
         "--keyring", str(ring), "--out", str(tmp_path / "run")],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    controller.send_signal(signal.SIGINT)
    said, _ = controller.communicate(timeout=30)
    assert twin.returncode == 0, twin.stdout + twin.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["hil"]["missed_deadlines"] == 0, "the first heartbeat came in time"
    auth = summary["auth"]
    assert auth["signed"] and auth["heartbeats_refused"] == {} and auth["commands_refused"] == {}, said
    assert auth["heartbeats_accepted"] >= 5, said  # of 6: the one of tick 0 may reach the devices before they start
    sent = int(said.split("commands sent ")[1].split(",")[0])
    assert sent >= 1 and summary["acks"].get("accepted", 0) == sent, said
