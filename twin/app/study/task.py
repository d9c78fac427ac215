"""One study task, as it runs on a worker: an ordinary replay of its scenario into its run folder.

The worker gets the scenario (a small pydantic model), never a network object: it rebuilds the feeder from its
name or file and reads the meter data itself, as ``phasetwin replay`` does.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any

from twin.app.runner import replay
from twin.app.scenario_file import ReplayOptions, record_scenario
from twin.app.study.grid import Task
from twin.app.study.results import figures_row

log = logging.getLogger(__name__)


def task_meta(task: Task) -> dict[str, Any]:
    return {"key": task.key, "feeder": task.feeder, "period": task.period, "fleet": task.fleet,
            "strategy": task.strategy, "run_folder": str(task.scenario.out)}


def run_task(task: Task, *, threads: int | None = 1) -> dict[str, Any]:
    """Replay the task and return its result row. An error of the task (bad input, a solver failure, anything
    the replay raises) is returned as a failed row with its message, so that it does not stop the study; a
    worker that dies mid-task is the cluster's to handle (Dask reschedules the task on another worker)."""
    start, cpu_start = time.perf_counter(), time.process_time()
    row = task_meta(task) | {"worker": f"{socket.gethostname()}:{os.getpid()}"}
    try:
        result = replay(task.scenario, threads=threads)
        record_scenario(task.scenario, start_utc=result.summary.start_utc, end_utc=result.summary.end_utc,
                        replay=ReplayOptions(baseline=False))
        row |= figures_row(result, limits=task.scenario.controller.limits) | {"status": "ok", "error": None}
    except Exception as err:  # a task's failure of any kind is its result: recorded, never raised to the study
        log.warning("study task %s failed: %s: %s", task.key[:16], type(err).__name__, err)
        row |= {"status": "failed", "error": f"{type(err).__name__}: {err}"}
    row["task_s"] = time.perf_counter() - start
    row["task_cpu_s"] = time.process_time() - cpu_start
    return row
