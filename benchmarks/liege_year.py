"""The whole Liège year at 15-minute ticks, network only, with the default engine: it runs to its end and the
hard ticks are solved by a power-flow fallback. With ``--controlled``: the same year through ``phasetwin replay``
with its default controlled fleet (10 PSD + 2 PESS, rolling MILP, LTUPF check), as a user runs it. With
``--study``: the same year as the study ``examples/liege_year.toml`` (twelve monthly tasks, each with its
no-control baseline) on the embedded cluster, one worker per core. With ``--floor``: the per-tick CPU of the
device replay without a controller (the default fleet, ``--controller none``), the floor under any controlled
year (issue 28), for this code and, with ``--anchor-code DIR``, another checkout's, in the same run (see
``floor``).

    PHASETWIN_SHARED_DATA=../shared/data .venv/bin/python benchmarks/liege_year.py [--out runs/liege-year]
                                                                                   [--controlled | --study]
    PHASETWIN_SHARED_DATA=../shared/data .venv/bin/python benchmarks/liege_year.py --floor [--anchor-code DIR]
                                                                  [--months 1,6] [--controller rolling-milp]

Prints the wall time, ticks per second, the fallbacks by kind and the ticks they solved, the ticks no engine
solved, and the peak resident memory of the process. Before the fallback ladder the run stopped at tick 33068
(2016-12-10T10:00Z): power-grid-model's 30 iterations do not reach its 0.55 p.u. solution.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from phasetwin.run.inputs import load_inputs
from phasetwin.run.replay import replay
from phasetwin.run.scenario import Scenario


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/liege-year"))
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--controlled", action="store_true", help="phasetwin replay's default controlled fleet")
    mode.add_argument("--study", action="store_true", help="the controlled year as twelve monthly study tasks")
    mode.add_argument("--floor", action="store_true", help="per-tick CPU of the device replay without control")
    parser.add_argument("--anchor-code", type=Path, default=None,
                        help="--floor: another checkout whose replays are timed in the same run (e.g. /work/anchor)")
    parser.add_argument("--months", default="1,6", help="--floor: the months whose 12th-14th are the windows")
    parser.add_argument("--controller", default="none", help="--floor: the replay's --controller (default none)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: the first day of the year, network only, and --floor on 3 hours")
    args = parser.parse_args()
    if args.floor or args.quick:
        months = [1] if args.quick else [int(m) for m in args.months.split(",")]
        floor(args.out / "floor", months=months, hours=3 if args.quick else 48, anchor=args.anchor_code,
              controller=args.controller)
        if args.floor:
            return
    if args.study:
        study(args.out)
        return
    probe = Scenario(feeder="liege-lv", tick_s=900)
    _, table = load_inputs(probe)
    if args.controlled:
        controlled(table.start_utc.isoformat(), table.end_utc.isoformat(), args.out)
        return
    end = table.start_utc + timedelta(days=1) if args.quick else table.end_utc
    scenario = probe.model_copy(update={"start_utc": table.start_utc.to_pydatetime(),
                                        "end_utc": end.to_pydatetime(), "out": args.out})
    started = time.perf_counter()
    result = replay(scenario)
    wall_s = time.perf_counter() - started
    s = result.summary
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{s.feeder} {s.start_utc} .. {s.end_utc}: {s.ticks} ticks of {s.tick_s} s in {wall_s:.1f} s "
          f"({s.ticks / wall_s:.0f} ticks/s), peak RSS {peak_mb:.0f} MB")
    print(f"power-flow fallbacks by kind: {s.powerflow['fallbacks'] or 'none'}; ticks no engine solved: "
          f"{s.powerflow['ticks_skipped']}")
    for entry in s.powerflow["fallback_ticks"]:
        print(f"  tick {entry['tick']} {entry['time_utc']}: {entry['kind']}")
    print(f"lowest voltage: {min(s.vm_min_pu.a, s.vm_min_pu.b, s.vm_min_pu.c):.4f} p.u.")


TICK_CPU_WRAPPER = """
import json, os, runpy, sys, time
import twin.clock
spent = []
def timed(inner):
    def run(*args, **kwargs):
        started = time.process_time()
        try:
            return inner(*args, **kwargs)
        finally:
            spent.append(time.process_time() - started)
    return run
twin.clock.run_ticks = timed(twin.clock.run_ticks)
try:
    import phasetwin.run.blocks as blocks
    blocks.run_blocks = timed(blocks.run_blocks)
except ImportError:
    pass
def _write():
    with open(os.environ["PHASETWIN_TICK_CPU_FILE"], "w") as out:
        json.dump(spent, out)
import atexit
atexit.register(_write)
sys.argv[0] = "phasetwin"
runpy.run_module("phasetwin.cli.main", run_name="__main__", alter_sys=True)
"""
"""Runs ``phasetwin`` in the child with its tick loop timed: the process CPU (every thread's, BLAS workers
included) spent in ``twin.clock.run_ticks`` (or ``run_blocks``), patched before the commands import it (both
codes import it by name from those modules), written as JSON at exit."""

YEAR_TICKS = 366 * 96
"""Ticks of 900 s in 2016 (the projections below scale two-day windows by 366 / 2, as ``controller.py``)."""


def floor(out: Path, *, months: list[int], hours: int, anchor: Path | None, controller: str) -> None:
    """Per-tick CPU of ``phasetwin replay --feeder liege-lv --tick 900 --no-baseline --controller none`` (the
    default fleet: its devices, their interlocks, the bus, the grid role, the metrics, the recorder) on
    2016-MM-12 00:00 + ``hours`` for each month, by this code and by the code at ``anchor`` one after the other
    in this run (a subprocess each, the same arguments). The tick loop's CPU is measured inside the child
    (``TICK_CPU_WRAPPER``): start-up, data loading and the report are left out; the child's whole CPU is shown
    beside it. Prints per window and code the ticks, the loop's CPU per tick, the whole CPU and the load average,
    then the ratio anchor / this and the year's loop CPU projected as the windows' × 366 · 24 / (hours · windows).
    With a ``controller``, the loop CPU less the decisions' (``decide_cpu_s_total``) is the non-decision part."""
    out = out.resolve()  # the children run in their code's folder
    out.mkdir(parents=True, exist_ok=True)
    here = Path(__file__).resolve().parents[1]
    codes = [("this", here)] + ([("anchor", anchor.resolve())] if anchor is not None else [])
    env = dict(os.environ, PHASETWIN_SHARED_DATA=os.environ.get("PHASETWIN_SHARED_DATA", "/work/shared/data"))
    loop_s: dict[str, float] = {code: 0.0 for code, _ in codes}
    decide_s: dict[str, float] = {code: 0.0 for code, _ in codes}
    ticks = 0
    print(f"{'window':16s} {'code':7s} {'ticks':>6s} {'loop CPU s':>10s} {'ms/tick':>8s} {'decide s':>9s} "
          f"{'process CPU s':>13s}  load before/after", flush=True)
    for month in months:
        start = datetime(2016, month, 12, tzinfo=UTC)
        window = [start.strftime("%Y-%m-%dT%H:%MZ"), (start + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%MZ")]
        for code, root in codes:
            folder = out / f"{start:%b}-{code}"
            load_before = os.getloadavg()[0]
            cpu_s, child_s = _timed_replay(root, env, folder, ["--feeder", "liege-lv", "--start", window[0],
                                                               "--end", window[1], "--tick", "900", "--no-baseline",
                                                               "--controller", controller, "--out", str(folder)])
            summary = json.loads((folder / "summary.json").read_text())
            n = int(summary["ticks"])
            decide = float(summary.get("controller", {}).get("decide_cpu_s_total") or 0.0)
            loop_s[code] += cpu_s
            decide_s[code] += decide
            ticks += n if code == "this" else 0
            print(f"{window[0]}+{hours}h {code:7s} {n:6d} {cpu_s:10.2f} {1e3 * cpu_s / n:8.2f} {decide:9.2f} "
                  f"{child_s:13.1f}  {load_before:.1f}/{os.getloadavg()[0]:.1f}", flush=True)
    scale = 366 * 24 / (hours * len(months))
    for code, _ in codes:
        outside = loop_s[code] - decide_s[code]
        print(f"{code}: {1e3 * loop_s[code] / ticks:.2f} ms loop CPU per tick ({1e3 * outside / ticks:.2f} ms outside "
              f"the decisions); the year's loop projected {loop_s[code] * scale / 60:.1f} min "
              f"({outside * scale / 60:.1f} min outside the decisions)")
    if anchor is not None:
        outside = {code: loop_s[code] - decide_s[code] for code in loop_s}
        print(f"anchor / this, loop CPU per tick: {loop_s['anchor'] / max(loop_s['this'], 1e-9):.2f}x "
              f"(outside the decisions: {outside['anchor'] / max(outside['this'], 1e-9):.2f}x); "
              f"load average now {os.getloadavg()[0]:.1f}")


def _timed_replay(root: Path, env: dict[str, str], folder: Path, args: list[str]) -> tuple[float, float]:
    """(tick loop CPU s, whole process CPU s) of ``phasetwin replay args`` run by the code at ``root``."""
    with tempfile.NamedTemporaryFile(suffix=".json") as spent:
        command = [sys.executable, "-c", TICK_CPU_WRAPPER, "replay", *args]
        child_env = env | {"PYTHONPATH": str(root), "PHASETWIN_TICK_CPU_FILE": spent.name}
        log = folder.with_name(folder.name + ".log")
        with log.open("w") as sink:  # cwd: the code's own folder, which ``-c`` puts first on sys.path
            child = subprocess.Popen(command, env=child_env, cwd=root, stdout=sink, stderr=sink)
            _, status, usage = os.wait4(child.pid, 0)
            child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            raise SystemExit(f"replay by {root} failed (status {child.returncode}):\n{log.read_text()[-3000:]}")
        loops = json.loads(Path(spent.name).read_text())
    if len(loops) != 1:
        raise SystemExit(f"replay by {root}: expected one tick loop, timed {len(loops)}")
    return float(loops[0]), usage.ru_utime + usage.ru_stime


def controlled(start: str, end: str, out: Path) -> None:
    """The year through the CLI (a fresh process, as a user runs it), timed from outside."""
    command = [sys.executable, "-m", "phasetwin.cli.main", "replay", "--feeder", "liege-lv", "--start", start,
               "--end", end,
               "--tick", "900", "--no-baseline", "--out", str(out)]
    started, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wall_s = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"phasetwin replay exited {done.returncode}:\n{done.stderr[-2000:]}")
    s = json.loads((out / "summary.json").read_text())
    c, commands = s["controller"], s["commands"]
    print(f"controlled Liège year {start} .. {end}: {s['ticks']} ticks in {wall_s:.0f} s wall ({wall_s / 60:.1f} min), "
          f"CPU {after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime:.0f} s, peak RSS "
          f"{after.ru_maxrss / 1024:.0f} MB; exit {done.returncode}")
    print(f"decisions {c['decisions']}: decide CPU {c['decide_cpu_s_total']:.0f} s (solve {c['solve_s_total']:.0f} s, "
          f"p50 {1e3 * c['solve_s_p50']:.0f} ms, p95 {1e3 * c['solve_s_p95']:.0f} ms, max {c['solve_s_max']:.2f} s); "
          f"LTUPF: {c['ltupf_violating_plans']} violating plans, {c['ltupf_repairs']} repaired, "
          f"{c['ltupf_infeasible']} with no PSD positions that fix them")
    p_unb_kwh = sum(s["mean_p_unb_kw"]) * s["ticks"] * s["tick_s"] / 3600
    operations = sum(d["operations"] for d in s["devices"].values() if d["kind"] != "pess")
    print(f"commands: {commands['sent']} sent, {commands['applied']} applied, {commands['rejected']} rejected "
          f"{commands['rejected_by_reason'] or ''}; P_unb {p_unb_kwh:.0f} kWh; {operations} switch operations")


def study(out: Path) -> None:
    """``phasetwin study run examples/liege_year.toml`` from scratch (``--force``), timed from outside."""
    import pandas as pd

    from phasetwin.studies.results import read_results

    spec = Path(__file__).resolve().parents[1] / "examples" / "liege_year.toml"
    command = [sys.executable, "-m", "phasetwin.cli.main", "study", "run", str(spec), "--out", str(out), "--force"]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wall_s = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"phasetwin study run exited {done.returncode}:\n{done.stderr[-2000:]}")
    rows = read_results(out)
    rows = rows[rows["status"] == "ok"]
    control = rows[rows["strategy"] == "rolling-milp"].sort_values("period")
    none = rows[rows["strategy"] == "none"].set_index("period")["p_unb_kwh"]
    print(f"controlled Liège year as a study: {len(control)} monthly tasks (+ {len(none)} without control) in "
          f"{wall_s:.0f} s wall ({wall_s / 60:.1f} min), {control['ticks'].sum()} controlled ticks; exit "
          f"{done.returncode}")
    for _, row in control.iterrows():
        print(f"  {row['period']}: P_unb {row['p_unb_kwh']:.0f} kWh (none {none[row['period']]:.0f}), "
              f"{row['switch_operations']} switch operations, {row['rejected']} rejected, task {row['task_s']:.0f} s "
              f"on {row['worker']}")
    total, baseline = control["p_unb_kwh"].sum(), none[control["period"]].sum()
    uncontrolled_s = rows[rows["strategy"] == "none"]["task_s"].sum()
    print(f"year: P_unb {total:.0f} kWh against {baseline:.0f} without control ({100 * (1 - total / baseline):.1f} % "
          f"less); {control['switch_operations'].sum()} switch operations; {control['rejected'].sum()} rejected; "
          f"task time {control['task_s'].sum():.0f} s controlled + {uncontrolled_s:.0f} s without; longest task "
          f"{pd.to_numeric(control['task_s']).max():.0f} s")


if __name__ == "__main__":
    main()
