"""The live view in a real headless Chromium, following runs over a real Mosquitto.

- ``replay --speed 60`` over MQTT (the IEEE feeder, 2024-01-15 17:00–17:10 at 1 min, one tick per wall second):
  each tick's page update is stamped in the browser (``Date.now()`` two animation frames after the tick's data
  changed) and compared with the wall time this test's own MQTT subscriber received the tick's grid state —
  tick-to-pixel, median ≤ 1 s over the 10 ticks (the p95 over 600 is benchmarks/view_live.py's), no console
  error.
- a scripted low-voltage reading: grid states published by the test with one bus at 0.85 p.u. raise the
  voltage alarm live; it is acknowledged with the page's button and clears when the voltage is back.
- ``replay --speed 60 --view``: the flag starts the live view, whose page shows the run's ticks.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from conftest import DEEP, MODEL, console_errors, wait_for  # type: ignore[import-not-found]
from paho.mqtt.enums import CallbackAPIVersion
from selenium import webdriver

from phasetwin.view.command import open_view
from phasetwin.view.live import LiveFollower
from phasetwin.view.server import free_port
from phasetwin.view.timeline import Timeline
from streams import topics
from streams.messages import GridState
from streams.mqtt.bus import MqttBus, MqttSettings

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parents[3]
LIMIT_MS = 1000.0


class Arrivals:
    """Wall time (ms) each grid state of ``feeder`` reached a plain paho subscriber: when the tick was out."""

    def __init__(self, url: str, feeder: str) -> None:
        host, port = url.removeprefix("mqtt://").split(":")
        self.ms: dict[int, float] = {}
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self._client.on_message = self._on_message
        subscribed = threading.Event()
        self._client.on_subscribe = lambda *args: subscribed.set()
        self._client.connect(host, int(port))
        self._client.subscribe(topics.grid_state(feeder), qos=1)
        self._client.loop_start()
        assert subscribed.wait(10), "the test's subscriber was not subscribed within 10 s"

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        received = time.time() * 1000.0
        self.ms[int(json.loads(message.payload)["tick"])] = received

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


@pytest.fixture
def live_timeline(mosquitto: object) -> Iterator[tuple[Timeline, str]]:
    url = str(mosquitto.url)  # type: ignore[attr-defined]
    timeline = open_view(live=url, feeder="ieee-european-lv", tick_s=60, control_period_s=900)
    follower = LiveFollower(timeline, url=url, feeder=timeline.feeder_name)
    yield timeline, url
    follower.close()


def _shown(chrome: webdriver.Chrome) -> list[dict[str, float]]:
    return list(chrome.execute_script("return window.__pt_shown || [];"))  # type: ignore[arg-type]


def _replay(url: str, out: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "phasetwin.cli.main", "replay", "--speed", "60", "--bus", url,
         "--start", "2024-01-15T17:00", "--end", "2024-01-15T17:10", "--control-period", "300", "--out", str(out),
         "--no-baseline", *extra],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_live_replay_reaches_the_page_within_a_second(live_timeline: tuple[Timeline, str],
                                                      chrome: webdriver.Chrome,
                                                      serve_timeline: Callable[[Timeline], str], artefacts: Path,
                                                      tmp_path: Path) -> None:
    timeline, broker = live_timeline
    arrivals = Arrivals(broker, timeline.feeder_name)
    chrome.get(serve_timeline(timeline))
    wait_for(lambda: chrome.execute_script("return Bokeh.documents.length > 0"), what="the live page")
    run = _replay(broker, tmp_path / "run")
    try:
        output, _ = run.communicate(timeout=180)
    finally:
        arrivals.close()
    assert run.returncode == 0, output[-2000:]
    assert len(arrivals.ms) == 10
    wait_for(lambda: any(s["tick"] == 9 for s in _shown(chrome)), timeout_s=10, what="the last tick on the page")
    shown: dict[int, float] = {}
    for s in _shown(chrome):
        shown.setdefault(int(s["tick"]), s["shown_ms"])  # the first time the tick was on the page
    latencies = np.array([shown[t] - arrivals.ms[t] for t in shown if t in arrivals.ms])
    # A tick superseded by the next before the page could draw it is skipped (the page shows the newest); at one
    # tick per second that happens only when the machine stalls the server for a second.
    assert len(latencies) >= 7 and 9 in shown, f"ticks shown {sorted(shown)}"
    p95 = float(np.percentile(latencies, 95))
    print(f"tick-to-pixel over {len(latencies)} ticks: p50 {np.median(latencies):.0f} ms, p95 {p95:.0f} ms, "
          f"max {latencies.max():.0f} ms")
    # The median, not the p95: ten ticks on a shared 2-core machine are too few for a stable p95 (one slow frame
    # is the p95); benchmarks/view_live.py measures the p95 over a 10-minute run against the same 1 s.
    assert float(np.median(latencies)) <= LIMIT_MS
    assert (latencies > 0).all()  # shown after it was published: the stamps are of this run, not stale
    chrome.save_screenshot(str(artefacts / "view_live.png"))
    assert console_errors(chrome) == []


def _grid_state(timeline: Timeline, tick: int, *, low_bus: int | None) -> GridState:
    n_bus, n_line = len(timeline.drawing.bus_ids), len(timeline.drawing.line_ids)
    vm = np.full((n_bus, 3), 1.02)
    if low_bus is not None:
        vm[low_bus, 1] = 0.85
    lv = vm[1:]
    return GridState(
        feeder=timeline.feeder_name, tick=tick,
        time_utc=datetime(2024, 1, 15, 17, tzinfo=UTC) + timedelta(minutes=tick),
        engine="scripted", vm_pu=vm, va_deg=np.zeros((n_bus, 3)), i_ka=np.full((n_line, 3), 0.01),
        i_n_ka=np.zeros(n_line), p_trafo_kw=(10.0, 11.0, 12.0), q_trafo_kvar=(1.0, 1.0, 1.0), loss_kw=0.1,
        phase_load_kw=np.full((1, 3), 10.0), p_unb_kw=np.array([1.0]), vm_min_pu=tuple(lv.min(axis=0)),
        vm_max_pu=tuple(lv.max(axis=0)), vuf_max_pct=0.3, i_n_max_a=5.0, kappa_trafo=0.1)


def test_scripted_low_voltage_reading_raises_an_alarm_that_is_acknowledged(
        live_timeline: tuple[Timeline, str], chrome: webdriver.Chrome, serve_timeline: Callable[[Timeline], str],
        artefacts: Path) -> None:
    timeline, broker = live_timeline
    chrome.get(serve_timeline(timeline))
    wait_for(lambda: chrome.execute_script("return Bokeh.documents.length > 0"), what="the live page")
    bus = MqttBus(MqttSettings.from_url(broker), name="scripted")
    low_bus = timeline.drawing.bus_ids.index("34")
    try:
        for tick, low in ((0, None), (1, low_bus), (2, low_bus)):
            bus.publish(topics.grid_state(timeline.feeder_name), _grid_state(timeline, tick, low_bus=low))
            bus.settle()
            wait_for(lambda t=tick: any(s["tick"] == t for s in _shown(chrome)), what=f"tick {tick} on the page")
        alarms = MODEL.format("alarms")
        assert list(chrome.execute_script(f"return {alarms}.data.kind;")) == ["voltage-low"]  # type: ignore[arg-type]
        assert chrome.execute_script(f"return {alarms}.data.raised[0];") == "2024-01-15 17:01"
        worst = chrome.execute_script(f"return {MODEL.format('buses')}.data.vm_worst_pu[{low_bus}];")
        assert worst == pytest.approx(0.85)
        chrome.execute_script(f"{alarms}.selected.indices = [0];")
        chrome.execute_script(DEEP + "deep(document, e => e.tagName === 'BUTTON' && "
                                     "e.textContent.includes('Acknowledge selected')).click();")
        wait_for(lambda: chrome.execute_script(f"return {alarms}.data.state[0];") == "active, acknowledged",
                 what="the acknowledged alarm")
        assert timeline.alarms.snapshot()[0].acknowledged
        bus.publish(topics.grid_state(timeline.feeder_name), _grid_state(timeline, 3, low_bus=None))
        bus.settle()
        wait_for(lambda: chrome.execute_script(f"return {alarms}.data.state[0];") == "cleared, acknowledged",
                 what="the cleared alarm")
        assert chrome.execute_script(f"return {alarms}.data.cleared[0];") == "2024-01-15 17:03"
    finally:
        bus.close()
    chrome.save_screenshot(str(artefacts / "view_live_alarm.png"))
    assert console_errors(chrome) == []


def test_replay_view_flag_opens_the_live_view(mosquitto: object, chrome: webdriver.Chrome, tmp_path: Path) -> None:
    port = free_port()
    run = _replay(str(mosquitto.url), tmp_path / "run", "--view", "--view-port", str(port))  # type: ignore[attr-defined]
    try:
        assert run.stdout is not None
        deadline = time.monotonic() + 120
        line = ""
        while time.monotonic() < deadline and "live view:" not in line:
            line = run.stdout.readline()
            assert line or run.poll() is None, "the replay ended before its view started"
        assert f"http://127.0.0.1:{port}/" in line
        chrome.get(f"http://127.0.0.1:{port}/")
        wait_for(lambda: chrome.execute_script(f"return {MODEL.format('tick')}.data.tick[0] >= 2"), timeout_s=20,
                 what="a live tick on the --view page")
        assert console_errors(chrome) == []
        output, _ = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, output[-2000:]
