"""The same study tasks serially in one process and on the embedded Dask cluster, in one run.

    PYTHONPATH=. .venv/bin/python benchmarks/study.py [--workers 2] [--hours 6] [--strategy greedy|none]

Eight tasks on the IEEE European LV feeder (four periods of --hours at 60 s ticks, 10 PSDs, none and the given
strategy — network-only and greedy by default), each an ordinary replay writing its run folder:
- serial: one after the other in this process (``run_in_process``, the same task function, no Dask), each task
  single-threaded as on a worker (``threads=1``);
- serial, threaded: the same with power-grid-model's batch threads on every core (``threads=None``, what one
  ``phasetwin replay`` at a time gets);
- study: an embedded LocalCluster of --workers single-threaded worker processes (``phasetwin study run``'s path).
Prints wall times, the speed-up (serial / study, with and without the cluster's start-up), the per-task
overhead of the study machinery against a task's replay time, peak memory per worker, and checks that the
runs recorded the same P_unb for every task. Acceptance (issue 18): speed-up ≥ 1.6× with 2 workers on 2 cores
against the same tasks serially, overhead ≤ 10 % of a task's replay time. Against the threaded serial run the
bound is lower: its power flow already keeps both cores partly busy (its CPU time / wall time is printed).
"""

from __future__ import annotations

import argparse
import importlib
import os
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from phasetwin.studies.execute import StudyProgress, dask_client, peak_rss_mb, run_in_process, run_on_cluster
from phasetwin.studies.grid import task_grid
from phasetwin.studies.spec import FeederChoice, FleetChoice, PeriodChoice, StrategyChoice, StudySpec


def _spec(*, hours: int, strategy: str) -> StudySpec:
    start = datetime(2024, 1, 15, tzinfo=UTC)
    periods = [PeriodChoice(start_utc=start + timedelta(hours=h), end_utc=start + timedelta(hours=h + hours))
               for h in range(0, 24, 24 // 4)][:4]
    return StudySpec(tick_s=60, feeders=(FeederChoice(feeder="ieee-european-lv"),), periods=tuple(periods),
                     fleets=(FleetChoice(psd=10),),
                     strategies=(StrategyChoice(strategy="none"), StrategyChoice(strategy=strategy)))  # type: ignore[arg-type]


def _warm_up() -> None:
    importlib.import_module("phasetwin.studies.task")
    importlib.import_module("twin.powerflow.pgm")


@dataclass
class Trial:
    seconds: float
    cpu_s: float
    """CPU time of this process (the serial runs do all their work in it)."""
    progress: StudyProgress


def _trial(kind: str, spec: StudySpec, folder: Path, client: Any) -> Trial:
    """One run of the tasks: serially single-threaded, serially with the threaded power flow, or on the cluster."""
    tasks = task_grid(spec, study_dir=folder)
    progress = StudyProgress(total=len(tasks))
    t0, cpu0 = time.perf_counter(), time.process_time()
    if kind == "study":
        run_on_cluster(tasks, study_dir=folder, client=client, progress=progress)
    else:
        run_in_process(tasks, study_dir=folder, progress=progress, threads=1 if kind == "serial" else None)
    return Trial(time.perf_counter() - t0, time.process_time() - cpu0, progress)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--hours", type=int, default=6, help="length of each of the four periods")
    parser.add_argument("--strategy", default="greedy", help="the second strategy (none gives 4 tasks only)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each kind, interleaved; the fastest counts")
    parser.add_argument("--quick", action="store_true", help="a smoke run: one worker, 1-h periods")
    args = parser.parse_args()
    if args.quick:
        args.workers, args.hours, args.repeat = 1, 1, 1
    spec = _spec(hours=args.hours, strategy=args.strategy)
    trials: dict[str, list[Trial]] = {"serial": [], "threaded": [], "study": []}
    with tempfile.TemporaryDirectory() as tmp:
        n = len(task_grid(spec, study_dir=Path(tmp)))
        _warm_up()
        t0 = time.perf_counter()
        with dask_client(scheduler=None, workers=args.workers) as client:
            client.run(_warm_up)
            start_s = time.perf_counter() - t0
            for i in range(args.repeat):
                for kind, runs in trials.items():
                    runs.append(_trial(kind, spec, Path(tmp) / f"{kind}{i}", client))
            worker_rss_mb = client.run(peak_rss_mb)
        serial_rss_mb = peak_rss_mb()
    best = {kind: min(runs, key=lambda t: t.seconds) for kind, runs in trials.items()}
    serial, threaded, study = (best[k].progress for k in ("serial", "threaded", "study"))
    serial_s, threaded_s, run_s = (best[k].seconds for k in ("serial", "threaded", "study"))
    threaded_cpu_s = best["threaded"].cpu_s
    total_s = run_s + start_s

    failed = [r for r in serial.rows + threaded.rows + study.rows if r["status"] != "ok"]
    if failed:
        raise SystemExit(f"{len(failed)} task(s) failed: {failed[0]['error']}")
    p_serial = {r["key"]: r["p_unb_kwh"] for r in serial.rows}
    p_study = {r["key"]: r["p_unb_kwh"] for r in study.rows}
    same = p_serial == p_study == {r["key"]: r["p_unb_kwh"] for r in threaded.rows}
    replay_serial = np.array([r["replay_s"] for r in serial.rows])
    replay_study = np.array([r["replay_s"] for r in study.rows])
    task_study = np.array([r["task_s"] for r in study.rows])
    in_task = (task_study - replay_study).mean()
    # what a task slot costs beyond the task itself: run_s × workers spread over the tasks, minus the task's own
    # time (scheduling, transfer of the task and its row, writing the row, waiting at the tail)
    per_slot = run_s * args.workers / n - task_study.mean()

    print(f"{n} tasks ({spec.strategies[0].strategy.value}, {spec.strategies[1].strategy.value}; 4 × {args.hours} h "
          f"at 60 s, IEEE European LV, 10 PSD), {args.workers} workers; fastest of {args.repeat} interleaved runs "
          "of each kind (all: " + "; ".join(f"{k} " + " ".join(f"{t.seconds:.2f}" for t in runs)
                                            for k, runs in trials.items()) + " s)")
    print(f"serial, one process:       {serial_s:7.2f} s  (replay per task: mean {replay_serial.mean():.2f} s, "
          f"min {replay_serial.min():.2f}, max {replay_serial.max():.2f}); peak RSS {serial_rss_mb:.0f} MB")
    print(f"serial, threaded power flow: {threaded_s:5.2f} s  (CPU {threaded_cpu_s:.2f} s: "
          f"{threaded_cpu_s / threaded_s:.2f} cores busy on average)")
    print(f"study, embedded cluster:   {run_s:7.2f} s  running the tasks + {start_s:.2f} s cluster start-up "
          f"= {total_s:.2f} s  (replay per task: mean {replay_study.mean():.2f} s)")
    print(f"speed-up:                  {serial_s / run_s:7.2f}×  tasks only;  {serial_s / total_s:.2f}× with "
          f"start-up  (against the threaded serial run: {threaded_s / run_s:.2f}× and {threaded_s / total_s:.2f}×)")
    print(f"overhead per task:         in the task (inputs lookup, scenario.toml, figures) {in_task * 1e3:.0f} ms "
          f"= {100 * in_task / replay_study.mean():.1f} % of its replay; outside it (scheduling, transfers, the row, "
          f"the tail) {per_slot * 1e3:.0f} ms = {100 * per_slot / replay_study.mean():.1f} %; together "
          f"{100 * (in_task + per_slot) / replay_study.mean():.1f} %")
    print("peak RSS per worker:       " + ", ".join(f"{mb:.0f} MB" for mb in worker_rss_mb.values()))
    cpu_serial = np.array([r["task_cpu_s"] for r in serial.rows])
    cpu_study = np.array([r["task_cpu_s"] for r in study.rows])
    print(f"CPU time per task:         serial {cpu_serial.mean():.2f} s, study {cpu_study.mean():.2f} s "
          f"({cpu_study.mean() / cpu_serial.mean():.2f}×: the worker process's own threads — event loop, "
          "heartbeats, profiler — count in it too)")
    flag = Path("/proc/sys/kernel/sched_autogroup_enabled")
    autogroup = flag.exists() and flag.read_text().strip() == "1"
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end; CFS autogroup "
          + ("on (the kernel shares CPU per session: our worker processes together get one session's share "
             "when other sessions keep the cores busy)" if autogroup else "off"))
    print(f"same P_unb for every task, serial, threaded and study: {same}")


if __name__ == "__main__":
    main()
