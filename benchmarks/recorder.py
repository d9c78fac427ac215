"""The InfluxDB recorder's throughput and its cost to a replay, against a VictoriaMetrics started on loopback.

    .venv/bin/python benchmarks/recorder.py [--rounds R] [--points N] [--controlled] [--detail operator|full]

Starts its own VictoriaMetrics (tests/support/servers.py, a free port, a temporary folder) and measures:
(a) raw line-protocol POSTs to /api/v2/write: N preformatted points in batches (5,000 and 20,000) through the
    recorder's v2 transport (influxdb-client), one at a time — the server's and the client's ceiling;
(b) points/s through InfluxRecorder end to end: points confirmed / (replay + close) wall time during a replay
    (paced by the replay), and saturated: a recorded day's messages published as fast as possible, then close;
(c) the default IEEE day (Scenario(): no devices, no controller) with and without the recorder, alternating for
    R rounds in the same process (the machine is noisy; alternating exposes both to the same noise), medians,
    wall and process CPU time, and the CPU time VictoriaMetrics used meanwhile on the same cores; also with a
    null sink (the recorder formats and batches, nothing is sent: its own cost without the server's);
    with --controlled also the default controlled replay (PSDs on the 10 farthest customers, 2 PESS, rolling
    MILP), one round each.
Targets (issue): (a) >= 200,000 points/s; (c) the recorder adds <= 20 % to a replay's wall time.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from controllers.online.settings import ControllerSettings, Strategy
from devices.fleet import FleetSpec
from phasetwin.run.replay import replay
from phasetwin.run.scenario import Scenario
from streams.bus import LocalBus
from streams.influx.recorder import Detail, InfluxCounts, InfluxRecorder, InfluxSettings
from streams.influx.transport import Outcome, PostResult, create_transport
from streams.messages import Message
from streams.runfolder.recorder import Layout
from twin.loaders import ieee_european_lv


def _test_servers() -> object:
    """tests/support/servers.py, loaded by path: putting tests/ on sys.path would let tests/twin shadow the package."""
    path = Path(__file__).resolve().parents[1] / "tests" / "support" / "servers.py"
    spec = importlib.util.spec_from_file_location("servers", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["servers"] = module
    spec.loader.exec_module(module)
    return module


VictoriaMetricsServer = _test_servers().VictoriaMetricsServer  # type: ignore[attr-defined]


def raw_posts(url: str, *, n_points: int, batch: int) -> float:
    """Points/s of preformatted bus_voltage lines POSTed to /api/v2/write in batches of ``batch``."""
    run = uuid.uuid4().hex[:8]
    t0 = 1705276800
    lines = [f"bus_voltage,bus={i % 907},feeder=ieee-european-lv,phase={'ABC'[i % 3]},run=raw{run},scenario=bench "
             f"vm_pu={1 + (i % 997) * 1e-5:.10g},va_deg={-30 - (i % 991) * 1e-3:.10g} {t0 + 60 * (i // 2721)}\n"
             for i in range(n_points)]
    bodies = ["".join(lines[i:i + batch]).encode() for i in range(0, n_points, batch)]
    transport = create_transport(InfluxSettings(url=url, bucket="bench"))
    try:
        start = time.perf_counter()
        for body in bodies:
            result = transport.post(body)
            if result.outcome is not Outcome.WRITTEN:
                raise SystemExit(f"raw POST failed: {result.detail}")
        return n_points / (time.perf_counter() - start)
    finally:
        transport.close()


class NullTransport:
    """Takes every batch at once and sends nothing: the recorder's own cost, without the server's."""

    def post(self, body: bytes) -> PostResult:
        return PostResult(Outcome.WRITTEN)

    def close(self) -> None:
        pass


class Feeder:
    def __init__(self) -> None:
        feeder = ieee_european_lv.load_feeder()
        bus_ids = tuple(feeder.bus_ids())
        position = {b: i for i, b in enumerate(bus_ids)}
        lv = feeder.transformer.lv_bus
        self.name = feeder.name
        self.layout = Layout(bus_ids=bus_ids, line_ids=tuple(ln.id for ln in feeder.lines), n_lv_feeders=1)
        self.buses = sorted({position[c.bus] for c in feeder.customers} | {position[lv]})
        self.heads = [i for i, ln in enumerate(feeder.lines) if ln.from_bus == lv]


def cpu_s_of(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed_replay(scenario: Scenario, *, recorder_for: Callable[[LocalBus], InfluxRecorder] | None, server_pid: int
                 ) -> tuple[float, float, float, InfluxCounts | None]:
    """Wall and process CPU seconds of replay (+ close when recording), the server's CPU seconds meanwhile,
    and the recorder's counters."""
    bus = LocalBus()
    recorder = recorder_for(bus) if recorder_for is not None else None
    wall, cpu, server = time.perf_counter(), time.process_time(), cpu_s_of(server_pid)
    replay(scenario, bus=bus)
    counts = recorder.close(timeout_s=120) if recorder is not None else None
    return time.perf_counter() - wall, time.process_time() - cpu, cpu_s_of(server_pid) - server, counts


QUICK_DAY = datetime(2024, 1, 15, tzinfo=UTC)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="alternating plain / recorded replays")
    parser.add_argument("--points", type=int, default=1_000_000, help="points for the raw POST measurement")
    parser.add_argument("--controlled", action="store_true", help="also the default controlled replay (slow)")
    parser.add_argument("--detail", choices=[d.value for d in Detail], default=Detail.OPERATOR.value)
    parser.add_argument("--quick", action="store_true", help="a smoke run: one round, 2,000 points")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.points = 1, 2000
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory() as tmp:
        server = VictoriaMetricsServer(workdir=Path(tmp))
        server.start()
        try:
            run(server, Path(tmp), args)
        finally:
            server.stop()


def run(server: Any, tmp: Path, args: argparse.Namespace) -> None:
    print(f"VictoriaMetrics on {server.url}; {args.points:,} points per raw measurement")
    for batch in (5000, 20000):
        rate = raw_posts(server.url, n_points=args.points, batch=batch)
        print(f"(a) raw POST /api/v2/write, batches of {batch:>6,}: {rate:12,.0f} points/s  (target >= 200,000)")

    feeder = Feeder()
    settings = InfluxSettings(url=server.url, bucket="bench", detail=Detail(args.detail), spool_dir=tmp / "spool")

    def recorder_for(bus: LocalBus, *, null: bool = False) -> InfluxRecorder:
        return InfluxRecorder(bus=bus, feeder=feeder.name, layout=feeder.layout, customer_bus_index=feeder.buses,
                              head_line_index=feeder.heads, run_id=f"bench-{uuid.uuid4().hex[:8]}",
                              scenario="bench", settings=settings, transport=NullTransport() if null else None)

    saturated(server.url, feeder, tmp, recorder_for)
    # --quick: two hours of the day instead of the whole day
    period = {"start_utc": QUICK_DAY, "end_utc": QUICK_DAY + timedelta(hours=2)} if args.quick else {}
    cases = [("default IEEE day, no devices", Scenario(out=tmp / "run", **period), args.rounds)]
    if args.controlled:
        cases.append(("default controlled day (10 PSD, 2 PESS, MILP)",
                      Scenario(out=tmp / "run", fleet=FleetSpec(psd=10, pess=2),
                               controller=ControllerSettings(strategy=Strategy.ROLLING_MILP)), 1))
    replay(Scenario(out=tmp / "warm", **period))  # imports and first-use costs out of the way
    for label, scenario, rounds in cases:
        rows: dict[str, list[tuple[float, float, float]]] = {"plain": [], "recorder": [], "null sink": []}
        rates = []
        counts: InfluxCounts | None = None
        for _ in range(rounds):
            for kind, make in (("plain", None), ("recorder", recorder_for),
                               ("null sink", lambda bus: recorder_for(bus, null=True))):
                wall, cpu, server_cpu, counts = timed_replay(scenario, recorder_for=make, server_pid=server.pid)
                rows[kind].append((wall, cpu, server_cpu))
                if kind == "recorder":
                    assert counts is not None
                    if counts.written == 0 or counts.lost or counts.spooled:
                        raise SystemExit(f"the recorder did not write everything: {counts}")
                    rates.append(counts.written / wall)
        assert counts is not None
        med = {k: np.median(np.array(v), axis=0) for k, v in rows.items()}
        pw, pc = med["plain"][:2]
        print(f"\n{label}, {args.detail} detail, {rounds} alternating round(s), medians; "
              f"{counts.written:,} points per recorded replay")
        for kind, (wall, cpu, server_cpu) in med.items():
            print(f"    {kind:10s} wall {wall:6.2f} s ({100 * (wall / pw - 1):+4.0f} %)   process cpu {cpu:6.2f} s "
                  f"({100 * (cpu / pc - 1):+4.0f} %)   VictoriaMetrics cpu {server_cpu:5.2f} s")
        for kind in ("recorder", "null sink"):
            ratios = " ".join(f"{r[0] / p[0]:.2f}" for r, p in zip(rows[kind], rows["plain"], strict=True))
            print(f"    wall ratio {kind} / plain per round: {ratios}")
        print(f"(c) the recorder adds {100 * (med['recorder'][0] / pw - 1):+.0f} % to the replay's wall time with "
              f"VictoriaMetrics on the same {os.cpu_count()} cores, {100 * (med['null sink'][0] / pw - 1):+.0f} % "
              "without the server's work (target <= +20 %)")
        print(f"(b) end to end through InfluxRecorder during the replay: {float(np.median(rates)):,.0f} points/s")


def saturated(url: str, feeder: Feeder, tmp: Path, recorder_for: Callable[[LocalBus], InfluxRecorder]) -> None:
    """A day's messages, recorded once, published into a recorder as fast as the bus takes them, then close."""
    collector = LocalBus()
    messages: list[tuple[str, Message]] = []
    collector.subscribe("phasetwin/v1/#", lambda topic, m: messages.append((topic, m)))
    replay(Scenario(out=tmp / "collect"), bus=collector)
    bus = LocalBus()
    recorder = recorder_for(bus)
    start = time.perf_counter()
    for topic, message in messages:
        bus.publish(topic, message)
    counts = recorder.close(timeout_s=120)
    seconds = time.perf_counter() - start
    print(f"(b) saturated: a day's {len(messages):,} messages published at once: {counts.written:,} points in "
          f"{seconds:.2f} s = {counts.written / seconds:,.0f} points/s to {url}")


if __name__ == "__main__":
    main()
