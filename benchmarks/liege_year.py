"""The whole Liège year at 15-minute ticks, network only, with the default engine: it runs to its end and the
hard ticks are solved by a power-flow fallback. With ``--controlled``: the same year through ``phasetwin replay``
with its default controlled fleet (10 PSD + 2 PESS, rolling MILP, LTUPF check), as a user runs it. With
``--study``: the same year as the study ``examples/liege_year.toml`` (twelve monthly tasks, each with its
no-control baseline) on the embedded cluster, one worker per core.

    PHASETWIN_SHARED_DATA=../shared/data .venv/bin/python benchmarks/liege_year.py [--out runs/liege-year]
                                                                                   [--controlled | --study]

Prints the wall time, ticks per second, the fallbacks by kind and the ticks they solved, the ticks no engine
solved, and the peak resident memory of the process. Before the fallback ladder the run stopped at tick 33068
(2016-12-10T10:00Z): power-grid-model's 30 iterations do not reach its 0.55 p.u. solution.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from datetime import timedelta
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
    parser.add_argument("--quick", action="store_true", help="a smoke run: the first day of the year, network only")
    args = parser.parse_args()
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
