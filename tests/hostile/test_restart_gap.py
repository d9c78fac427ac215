"""Issue 33, item 7: a broker restart without persistence loses ticks at a persistent subscriber — and it must
say so. A subscriber with a persistent session goes away for a while; the twin (a real-time replay on a real
Mosquitto) keeps publishing its per-tick meter frames, which the broker queues for that session; the broker then
restarts. Without persistence the queue is gone: the subscriber, back with the same client id, is told that its
session was lost (counted, logged) and its tick watch names the ticks that never came; the twin, itself a
persistent subscriber that reconnected, counts the lost session in its summary. With persistence (the control
case) the session is kept and every tick arrives: no gap, no signal."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support.servers import MosquittoServer

from phasetwin.report.run_notes import degraded_notes
from phasetwin.run.replay import replay
from phasetwin.run.scenario import Scenario
from streams import topics
from streams.mqtt.bus import MqttBus, MqttSettings
from streams.ticks import TickGaps

FEEDER = "ieee-european-lv"
N_TICKS, AWAY_AT, RESTART_AT, BACK_AT = 14, 3, 5, 8


class _Volatile(MosquittoServer):
    """The test broker without persistence: a restart forgets every session and its queue."""

    def _config(self) -> str:
        return super()._config().replace("persistence true", "persistence false")


def _pumping(bus: MqttBus, stop: threading.Event) -> threading.Thread:
    def run() -> None:
        while not stop.is_set():
            bus.pump(0.02)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("persistent", [False, True], ids=["no-persistence", "persistence"])
def test_ticks_lost_over_a_restart_are_a_counted_logged_gap(tmp_path: Path, persistent: bool,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    broker = (MosquittoServer if persistent else _Volatile)(workdir=tmp_path)
    broker.start()
    settings = MqttSettings(host=broker.host, port=broker.port, keepalive_s=2)
    frames = topics.meter_frame(FEEDER)
    subscriber = MqttBus(settings, client_id="recorder-1")
    gaps: TickGaps = subscriber.watch_ticks(frames)
    stop = threading.Event()
    pump = _pumping(subscriber, stop)
    back: list[MqttBus] = []

    def progress(done: int, total: int) -> None:
        nonlocal pump
        if done == AWAY_AT:  # the subscriber goes away; its session stays at the broker and queues what comes
            stop.set()
            pump.join()
            subscriber.close(end_session=False)
        elif done == RESTART_AT:
            broker.restart()
        elif done == BACK_AT:  # back with the same client id, expecting its session
            again = MqttBus(settings, client_id="recorder-1", resume_session=True)
            again.watch_ticks(frames, gaps)
            stop.clear()
            pump = _pumping(again, stop)
            back.append(again)

    scenario = Scenario(start_utc=datetime(2024, 1, 15, 6, tzinfo=UTC), end_utc=datetime(2024, 1, 15, 6, N_TICKS,
                        tzinfo=UTC), speed=120.0, out=tmp_path / "run")
    try:
        with caplog.at_level(logging.ERROR):
            summary = replay(scenario, bus=MqttBus(settings, name="twin"), progress=progress).summary
            time.sleep(0.3)  # the last frame reaches the subscriber
    finally:
        stop.set()
        pump.join()
        for bus in back:
            bus.close()
        broker.stop()
    (again,) = back
    assert gaps.last == N_TICKS - 1, "the subscriber was back for the end of the run"
    if persistent:
        assert (again.counters.sessions_lost, gaps.gaps, gaps.ticks_missed) == (0, 0, 0)
        assert summary.bus["sessions_lost"] == 0
        assert not [r for r in caplog.records if "gap" in r.getMessage()]
        notes = degraded_notes(ingest=summary.ingest, bus=summary.bus, controller=summary.controller)
        assert not [n for n in notes if "session" in n or "never arrived" in n], notes
        return
    assert again.counters.sessions_lost == 1, "the subscriber is told its session was lost"
    assert gaps.gaps == 1 and again.counters.tick_gaps == 1
    first, last = gaps.ranges[0]
    assert AWAY_AT <= first <= last < BACK_AT + 1 and gaps.ticks_missed == last - first + 1 >= 2
    assert summary.bus["sessions_lost"] == 1, "the twin's own session was lost too: in its summary"
    notes = degraded_notes(ingest=summary.ingest, bus=summary.bus, controller=summary.controller)
    assert any(n.startswith("the broker kept no session 1 time(s)") for n in notes), notes  # on the console too
    logged = [r.getMessage() for r in caplog.records]
    assert any("kept no session for recorder-1" in m for m in logged)
    assert any(f"ticks {first}..{last} never arrived" in m for m in logged)
    print(f"subscriber: session lost, ticks {first}..{last} missed ({gaps.ticks_missed}); twin: "
          f"{summary.bus['sessions_lost']} session lost, {summary.readings_missing} reading(s) missing")
