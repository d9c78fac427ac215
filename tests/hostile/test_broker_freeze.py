"""Issue 20, acceptance: the real Mosquitto process is frozen (SIGSTOP) for 20 s during a real-time run at
speed 60 (a 1 s tick). No tick finishes more than 0.5 s late, the stall is detected within two keep-alives and
reported (status and summary), and after SIGCONT every reading sent meanwhile arrives (QoS 1 backlog): none is
lost, each one that missed its tick is recorded late."""

from __future__ import annotations

import os
import signal
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support.servers import MosquittoServer

from controllers.online.settings import ControllerSettings, Strategy
from devices.fleet import FleetSpec
from phasetwin.run.replay import replay
from phasetwin.run.scenario import Scenario
from streams import topics
from streams.messages import Message, TwinStatus
from streams.mqtt.bus import MqttBus, MqttSettings

KEEPALIVE_S = 4
FREEZE_S = 20.0


@pytest.mark.slow
def test_a_frozen_broker_does_not_delay_the_ticks_and_loses_no_reading(mosquitto: MosquittoServer,
                                                                       tmp_path: Path) -> None:
    scenario = Scenario(start_utc=datetime(2024, 1, 15, 6, tzinfo=UTC),
                        end_utc=datetime(2024, 1, 15, 6, 26, tzinfo=UTC), speed=60, fleet=FleetSpec(psd=4, pess=0),
                        controller=ControllerSettings(strategy=Strategy.GREEDY), out=tmp_path / "run")
    bus = MqttBus(MqttSettings(host=mosquitto.host, port=mosquitto.port, keepalive_s=KEEPALIVE_S))
    statuses: list[TwinStatus] = []

    def on_status(topic: str, message: Message) -> None:
        if isinstance(message, TwinStatus):
            statuses.append(message)

    bus.subscribe(topics.twin_status("ieee-european-lv"), on_status)
    pid = mosquitto.pid
    assert pid is not None
    frozen: dict[str, float] = {}

    def freeze() -> None:
        os.kill(pid, signal.SIGSTOP)
        frozen["at"] = time.monotonic()
        time.sleep(FREEZE_S)
        os.kill(pid, signal.SIGCONT)
        frozen["for"] = time.monotonic() - frozen["at"]

    started = threading.Event()

    def progress(done: int, total: int) -> None:
        if done == 2:
            started.set()
            threading.Thread(target=freeze, daemon=True).start()

    try:
        result = replay(scenario, bus=bus, progress=progress)
    finally:
        os.kill(pid, signal.SIGCONT)
    s = result.summary
    assert frozen["for"] >= FREEZE_S
    assert s.ticks == 26 and s.max_lateness_s < 0.5, f"max lateness {s.max_lateness_s:.3f} s"
    b = s.bus
    assert b["broker_stalls"] == 1 and b["stall_detected_after_s"] <= 2 * KEEPALIVE_S
    assert b["broker_stalled_s"] > FREEZE_S - 2 * KEEPALIVE_S - 2 and b["broker_ok"]
    assert b["outbound_dropped"] == 0 and b["outbound_max_queued"] > 0
    # reported on the status topic: the statuses of the frozen ticks arrive after SIGCONT and say so
    assert any(not m.broker_ok for m in statuses) and statuses[-1].broker_ok
    # nothing lost: every reading that missed its tick arrived afterwards and is recorded as late
    assert s.readings_missing > 0 and s.readings_late == s.readings_missing
    print(f"max lateness {s.max_lateness_s:.3f} s; stall detected after {b['stall_detected_after_s']:.1f} s, "
          f"lasted {b['broker_stalled_s']:.1f} s; {s.readings_late} readings late, none lost; "
          f"outbound peak {b['outbound_max_queued']}")
