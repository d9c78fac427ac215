"""Issue 33, item 4 (last sentence): readings reordered within a configurable window are used in their tick.

An external meter feed on its own connection to a real Mosquitto sends each tick's readings slightly out of order
and late: C1 and C2 at once, C3's reading of the *next* tick before its reading of this one, C4 a little later,
all within the tick's reorder window; C5 after the window closed; C6 never. The twin runs in real time. Every
reading that arrived within its tick's window is used in its tick, C5's are late (counted, recorded, not used)
and C6 is missing in every tick. Without the window the twin solves right after the stage boundary and C3 and
C4 go to late storage too (as the issue found: 124 of 3,611 slightly reordered readings used).
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from support.servers import MosquittoServer
from support.small_feeders import one_bus_feeder

from phasetwin.run.replay import replay
from phasetwin.run.scenario import Scenario
from streams import topics
from streams.messages import GridState, Message, MeterReading
from streams.mqtt.bus import MqttBus, MqttSettings
from twin.clock import TickClock, run_ticks
from twin.grid.role import GridRole
from twin.grid.window import ReorderWindow
from twin.powerflow import Engine, create_powerflow

T0 = datetime(2024, 1, 15, tzinfo=UTC)
TICK_S, SPEED, WINDOW_S = 60, 80.0, 30.0  # a tick lasts 0.75 wall seconds, its window 0.375
N_TICKS = 5
SEND_AT_S = {"C1": 0.0, "C2": 0.0, "C3": 0.04, "C4": 0.12, "C5": 0.6}
"""Wall seconds after the tick's start at which the feed sends each meter's reading (C6: never)."""


def _payload(feeder: str, meter_id: str, tick: int) -> bytes:
    return MeterReading(feeder=feeder, tick=tick, time_utc=T0 + timedelta(seconds=tick * TICK_S), meter_id=meter_id,
                        p_kw=(1.0 + tick,), q_kvar=(0.1,)).model_dump_json().encode()


class _Feed:
    """An external meter feed: at each tick start it sends that tick's readings on the schedule above, C3's
    reading of the next tick first."""

    def __init__(self, broker: MosquittoServer, feeder: str) -> None:
        self.ticks: queue.Queue[tuple[int, float] | None] = queue.Queue()
        self._feeder = feeder
        self._client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"feed-{uuid.uuid4()}",
                                   protocol=mqtt.MQTTv5)
        self._client.connect(broker.host, broker.port)
        self._client.loop_start()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def on_tick(self, tick: int, time_utc: datetime) -> None:
        self.ticks.put((tick, time.monotonic()))

    def _send(self, meter_id: str, tick: int) -> None:
        self._client.publish(topics.meter(self._feeder, meter_id), _payload(self._feeder, meter_id, tick), qos=1)

    def _run(self) -> None:
        while (item := self.ticks.get()) is not None:
            tick, started = item
            for meter_id, at_s in sorted(SEND_AT_S.items(), key=lambda kv: kv[1]):
                time.sleep(max(0.0, started + at_s - time.monotonic()))
                if meter_id == "C3":
                    self._send(meter_id, tick + 1)  # the next tick's reading overtakes this one's
                self._send(meter_id, tick)

    def close(self) -> None:
        self.ticks.put(None)
        self._thread.join(5)
        self._client.disconnect()  # while the loop runs: it sends the DISCONNECT and closes the socket
        self._client.loop_stop()


def _run(broker: MosquittoServer, *, window: bool) -> tuple[GridRole, list[GridState]]:
    feeder = one_bus_feeder("reorder", tuple((f"C{i}", "ABC"[i % 3], 0.95) for i in range(1, 7)))
    bus = MqttBus(MqttSettings(host=broker.host, port=broker.port), name="reorder")
    bus.realtime(budget_s=0.05)
    reorder = ReorderWindow(window_s=WINDOW_S, speed=SPEED, pump_until=bus.pump_until) if window else None
    grid = GridRole(bus=bus, feeder=feeder, name=feeder.name, powerflow=create_powerflow(feeder, engine=Engine.ZBUS),
                    window=reorder)
    states: list[GridState] = []

    def keep(topic: str, message: Message) -> None:
        assert isinstance(message, GridState)
        states.append(message)

    bus.subscribe(topics.grid_state(feeder.name), keep)
    feed = _Feed(broker, feeder.name)
    stages = [s for s in (reorder, feed, grid) if s is not None]
    try:
        run_ticks(clock=TickClock(start_utc=T0, tick_s=TICK_S, n_ticks=N_TICKS), stages=stages, speed=SPEED,
                  settle=bus.settle)
    finally:
        feed.close()
        bus.close()
    return grid, states


@pytest.mark.parametrize("window", [True, False], ids=["window", "no-window"])
def test_readings_reordered_within_the_window_are_used_in_their_tick(mosquitto: MosquittoServer,
                                                                     window: bool) -> None:
    grid, states = _run(mosquitto, window=window)
    c = grid.counters
    assert [s.tick for s in states] == list(range(N_TICKS))
    if not window:  # the failure the window fixes: straggling readings miss their tick
        assert c.readings_late > N_TICKS - 1 and c.readings_used < 4 * N_TICKS
        return
    assert [s.estimated_meters for s in states] == [("C5", "C6")] * N_TICKS, "C1-C4 used in every tick"
    assert c.readings_used == 4 * N_TICKS
    assert c.readings_in_window >= 2 * N_TICKS, "C3 and C4 arrived while the tick waited"
    assert c.readings_late == N_TICKS - 1, "C5 after the window: late (the last tick's is never received)"
    assert {(r.meter_id, r.tick) for r in grid.late} == {("C5", k) for k in range(N_TICKS - 1)}
    assert c.readings_missing == 2 * N_TICKS and c.readings_held == N_TICKS
    assert grid.window is not None and grid.window.closed_incomplete == N_TICKS  # C6 never came


def test_a_real_time_replay_over_mqtt_has_the_window(mosquitto: MosquittoServer, tmp_path: Path) -> None:
    """Wired end to end: the scenario's window reaches the grid, and the summary says what it did."""
    bus = MqttBus(MqttSettings(host=mosquitto.host, port=mosquitto.port), name="window-replay")
    scenario = Scenario(start_utc=datetime(2024, 1, 15, 6, tzinfo=UTC), end_utc=datetime(2024, 1, 15, 6, 6, tzinfo=UTC),
                        speed=240.0, reorder_window_s=20.0, out=tmp_path / "run")
    s = replay(scenario, bus=bus).summary
    assert s.ingest["reorder_window_s"] == 20.0
    assert s.ingest["used_in_tick"] == s.readings_published and s.readings_late == 0


@pytest.mark.parametrize("window_s", [31.0, -1.0])
def test_a_window_outside_the_tick_is_refused(window_s: float) -> None:
    with pytest.raises(ValueError, match=rf"reorder_window_s {window_s:g}: expected 0 up to half the tick \(30 s of "
                                         r"the 60 s tick\)"):
        Scenario(reorder_window_s=window_s)
