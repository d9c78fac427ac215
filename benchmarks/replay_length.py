"""Run length costs time, not memory: peak RSS of a network-only replay of 1, 7 and 28 days (issue 16).

    .venv/bin/python benchmarks/replay_length.py [--days 1,7,28] [--flush-ticks N] [--anchor-code DIR]

Tiles the bundled IEEE European LV day (1-minute data) into 1, 7 and 28 days in a temporary Parquet file each,
replays each with `phasetwin replay --controller none --psd 0 --pess 0 --no-baseline` in a fresh subprocess, and
reads that child's peak RSS and CPU time from the kernel (``os.wait4``). Prints ticks, peak RSS, CPU and wall
time and the ratios to the first length. Acceptance: peak RSS of 28 days ≤ 1.25 × that of 1 day (issue 16),
≤ 1.10 × (issue 31).

``--anchor-code DIR``: the same replays, alternating, with another checkout's code (e.g. ``git archive`` of an
earlier commit unpacked in DIR), and the CPU ratio of this code to it per length (issue 31: the 28 days in ≤ 1/5
of the earlier code's time, measured in the same run).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from twin.loaders import ieee_european_lv

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 1.25
LIMIT_31 = 1.10


def tiled_day(days: int, path: Path) -> pd.Timestamp:
    """Write the bundled day repeated ``days`` times as wide meter data (p and q per customer); returns its end."""
    feeder = ieee_european_lv.load_feeder()
    day = ieee_european_lv.load_day(feeder)
    p, q = np.tile(day.p_kw[:, :, 0], (days, 1)), np.tile(day.q_kvar[:, :, 0], (days, 1))
    time_utc = pd.date_range(day.time_utc[0], periods=p.shape[0], freq=f"{day.step_s}s", tz="UTC")
    columns: dict[str, object] = {"time_utc": time_utc}
    for i, customer in enumerate(day.customer_ids):
        columns[f"{customer}_1"], columns[f"{customer}_1_q"] = p[:, i], q[:, i]
    pd.DataFrame(columns).to_parquet(path, index=False)
    return time_utc[-1] + pd.Timedelta(seconds=day.step_s)


PEAK_RSS_WRAPPER = """
import atexit, os, runpy, sys
def _peak():
    with open("/proc/self/status") as f, open(os.environ["PHASETWIN_PEAK_RSS_FILE"], "w") as out:
        out.write(next(ln for ln in f if ln.startswith("VmHWM:")).split()[1])
atexit.register(_peak)
sys.argv[0] = "phasetwin"
runpy.run_module("phasetwin.cli.main", run_name="__main__", alter_sys=True)
"""
"""Runs the command in the child and writes its peak RSS (VmHWM, KiB) at exit: the kernel's ``ru_maxrss`` of a
child counts the RSS of the parent it was forked from (kept across exec), so a benchmark process that replayed
in process itself first (``replay_day.py``) gave every child its own peak, 603 MB for both codes."""


def replay_peak_rss(data: Path, end: pd.Timestamp, out: Path, *, flush_ticks: int | None,
                    code: Path = ROOT) -> tuple[float, float, float]:
    """(peak RSS in MB, wall s, CPU s) of one `phasetwin replay` child process running the code in ``code``."""
    command = [sys.executable, "-c", PEAK_RSS_WRAPPER, "replay", "--data", str(data), "--end", end.isoformat(),
               "--controller", "none", "--psd", "0", "--pess", "0", "--no-baseline", "--out", str(out)]
    if flush_ticks is not None:
        command += ["--flush-ticks", str(flush_ticks)]
    log = out.with_name(out.name + ".log")
    peak = out.with_name(out.name + ".peak_kib")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(code), os.environ.get("PYTHONPATH", "")]),
           "PHASETWIN_PEAK_RSS_FILE": str(peak)}
    t = time.perf_counter()
    with log.open("w") as sink:  # a file, not a pipe: nobody reads a pipe until the child ends
        # cwd: the code's own directory, which ``-c`` puts first on sys.path (else the caller's checkout wins)
        child = subprocess.Popen(command, env=env, cwd=code, stdout=sink, stderr=sink)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)  # reaped here; Popen must not wait for it again
    wall_s = time.perf_counter() - t
    if child.returncode != 0:
        raise SystemExit(f"replay of {data.name} failed (status {child.returncode}):\n"
                         f"{log.read_text()}")
    return int(peak.read_text()) / 1024.0, wall_s, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", default="1,7,28", help="comma-separated run lengths in days; the first is the base")
    parser.add_argument("--flush-ticks", type=int, default=None, help="passed to phasetwin replay")
    parser.add_argument("--anchor-code", type=Path, default=None, help="another checkout to time the same replays")
    parser.add_argument("--quick", action="store_true", help="a smoke run: one day only")
    args = parser.parse_args()
    if args.quick:
        args.days = "1"
    lengths = [int(d) for d in args.days.split(",")]
    rows, anchors = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for days in lengths:
            data = Path(tmp) / f"ieee_{days}d.parquet"
            end = tiled_day(days, data)
            peak_mb, wall_s, cpu_s = replay_peak_rss(data, end, Path(tmp) / f"run_{days}d",
                                                     flush_ticks=args.flush_ticks)
            rows.append((days, days * 1440, peak_mb, wall_s, cpu_s))
            print(f"  {days:3d} day(s): {days * 1440:6d} ticks, peak RSS {peak_mb:7.1f} MB, wall {wall_s:7.1f} s, "
                  f"CPU {cpu_s:7.1f} s  (load {os.getloadavg()[0]:.1f})", flush=True)
            if args.anchor_code is not None:
                anchors.append(replay_peak_rss(data, end, Path(tmp) / f"anchor_{days}d", flush_ticks=args.flush_ticks,
                                               code=args.anchor_code.resolve()))
                print(f"  {days:3d} day(s), anchor code: peak RSS {anchors[-1][0]:7.1f} MB, wall {anchors[-1][1]:7.1f} "
                      f"s, CPU {anchors[-1][2]:7.1f} s  (load {os.getloadavg()[0]:.1f})", flush=True)
    base = rows[0]
    print("\nIEEE European LV, network-only replay, bundled day tiled, one subprocess per length")
    print(f"{'days':>5s} {'ticks':>7s} {'peak RSS MB':>12s} {'× base':>7s} {'wall s':>8s} {'CPU s':>8s} {'× base':>7s}"
          + (f" {'anchor CPU s':>13s} {'÷ anchor':>9s}" if anchors else ""))
    for i, (days, ticks, peak_mb, wall_s, cpu_s) in enumerate(rows):
        anchor = f" {anchors[i][2]:13.1f} {cpu_s / anchors[i][2]:9.3f}" if anchors else ""
        print(f"{days:5d} {ticks:7d} {peak_mb:12.1f} {peak_mb / base[2]:7.3f} {wall_s:8.1f} {cpu_s:8.1f} "
              f"{cpu_s / base[4]:7.2f}{anchor}")
    if 28 in lengths and base[0] == 1:
        ratio = rows[lengths.index(28)][2] / base[2]
        verdict = "PASS" if ratio <= LIMIT else "FAIL"
        print(f"acceptance: peak RSS 28 days / 1 day = {ratio:.3f} (limit {LIMIT}: {verdict}; issue 31 limit "
              f"{LIMIT_31}: {'PASS' if ratio <= LIMIT_31 else 'FAIL'})")
        if anchors:
            cpu_ratio = rows[lengths.index(28)][4] / anchors[lengths.index(28)][2]
            print(f"acceptance: 28 days CPU / anchor code's = {cpu_ratio:.3f} (issue 31 limit 0.2: "
                  f"{'PASS' if cpu_ratio <= 0.2 else 'FAIL'})")


if __name__ == "__main__":
    main()
