"""Tick-to-pixel of the live view: a replay at --speed 60 over a real Mosquitto, followed by the view, drawn in
Debian's headless Chromium (chromium-driver + selenium).

    .venv/bin/python benchmarks/view_live.py [--minutes 600] [--quick]

For every tick: the wall time a plain paho subscriber received the tick's grid state (the tick is out), and the
wall time the page had drawn it (``Date.now()`` two animation frames after the tick's data changed in the
browser, ``window.__pt_shown``). Prints p50/p95/max of the difference, the ticks never shown, and the
browser's console errors over the run. Target (issue 32): p95 ≤ 1 s and no page error over a 10-minute run.
``--quick``: 5 simulated minutes (5 ticks at 1 min, one control period), for a smoke run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.append(str(Path(__file__).resolve().parents[1] / "tests"))

from support.servers import MosquittoServer
from support.view_thread import serve_in_thread

from phasetwin.view.command import open_view
from phasetwin.view.live import LiveFollower
from streams import topics

ROOT = Path(__file__).resolve().parents[1]
START = datetime(2024, 1, 15, 7, tzinfo=UTC)
"""A 10-hour run (600 ticks, 10 wall minutes at --speed 60) ends at 17:00, inside the bundled day."""


def _chrome(profile: Path) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--window-size=1400,1900", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(executable_path="/usr/bin/chromedriver"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=int, default=600,
                        help="simulated minutes at 1-min ticks, --speed 60 (600: 10 wall minutes)")
    parser.add_argument("--quick", action="store_true", help="5 minutes (one control period)")
    args = parser.parse_args()
    minutes = 5 if args.quick else args.minutes
    end = (START + timedelta(minutes=minutes)).isoformat()
    with tempfile.TemporaryDirectory(prefix="view-live-") as tmp:
        work = Path(tmp)
        (work / "mosquitto").mkdir()
        broker = MosquittoServer(workdir=work / "mosquitto")
        broker.start()
        timeline = open_view(live=broker.url, feeder="ieee-european-lv", tick_s=60, control_period_s=300)
        follower = LiveFollower(timeline, url=broker.url, feeder=timeline.feeder_name)
        server, _ = serve_in_thread(timeline)
        arrivals: dict[int, float] = {}
        client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.on_message = lambda c, u, m: arrivals.setdefault(int(json.loads(m.payload)["tick"]), time.time() * 1e3)
        client.connect("127.0.0.1", broker.port)
        client.subscribe(topics.grid_state(timeline.feeder_name), qos=1)
        client.loop_start()
        driver = _chrome(work / "profile")
        try:
            driver.get(f"http://127.0.0.1:{server.port}/")
            while not driver.execute_script("return Bokeh.documents.length > 0"):
                time.sleep(0.1)
            time.sleep(1.0)
            started = time.perf_counter()
            run = subprocess.run(
                [sys.executable, "-m", "phasetwin.cli.main", "replay", "--speed", "60", "--bus", broker.url,
                 "--start", START.isoformat(), "--end", end, "--control-period", "300", "--out", str(work / "run"),
                 "--no-baseline"], cwd=ROOT, capture_output=True, text=True, check=False)
            wall_s = time.perf_counter() - started
            if run.returncode != 0:
                raise SystemExit(f"replay failed ({run.returncode}):\n{run.stdout[-1000:]}\n{run.stderr[-2000:]}")
            time.sleep(2.0)
            shown: dict[int, float] = {}
            for s in driver.execute_script("return window.__pt_shown || [];"):
                shown.setdefault(int(s["tick"]), float(s["shown_ms"]))
            errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        finally:
            driver.quit()
            client.loop_stop()
            follower.close()
            server.io_loop.add_callback(server.io_loop.stop)
            broker.stop()
    ticks = sorted(arrivals)
    latency = np.array([shown[t] - arrivals[t] for t in ticks if t in shown])
    missing = [t for t in ticks if t not in shown]
    print(f"live view, IEEE feeder, {minutes} min at --speed 60 ({len(ticks)} ticks published, replay {wall_s:.1f} s "
          f"wall)")
    if len(latency):
        print(f"tick-to-pixel: p50 {np.median(latency):.0f} ms, p95 {np.percentile(latency, 95):.0f} ms, "
              f"max {latency.max():.0f} ms over {len(latency)} ticks; target p95 <= 1000 ms: "
              f"{'met' if np.percentile(latency, 95) <= 1000 else 'NOT met'}")
    print(f"ticks never shown: {len(missing)} {missing[:10]}; page errors: {len(errors)}")
    for e in errors[:5]:
        print("  ", e[:300])
    print(f"load average: {Path('/proc/loadavg').read_text(encoding='ascii').strip()}")


if __name__ == "__main__":
    main()
