"""One study task, as it runs on a worker: an ordinary replay of its scenario into its run folder.

The worker gets the scenario (a small pydantic model), never a network object: it rebuilds the feeder from its
name or file and reads the meter data itself, as ``phasetwin replay`` does.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections import OrderedDict
from typing import Any

from phasetwin.run.inputs import load_run_inputs
from phasetwin.run.replay import replay
from phasetwin.run.scenario import Scenario
from phasetwin.run.scenario_file import ReplayOptions, input_files, record_scenario
from phasetwin.studies.grid import Task
from phasetwin.studies.results import figures_row
from streams.meters.record import DataRecord
from streams.meters.table import MeterTable
from twin.network import Feeder

log = logging.getLogger(__name__)


def task_meta(task: Task) -> dict[str, Any]:
    return {"key": task.key, "feeder": task.feeder, "period": task.period, "fleet": task.fleet,
            "strategy": task.strategy, "run_folder": str(task.scenario.out),
            "period_days": task.ticks * task.scenario.tick_s / 86_400,
            "plan_operations_per_year": task.plan_operations_per_year}


class InputCache:
    """The feeders and meter data a worker process loaded, by what they are loaded from (scenario fields and
    the files' size and modification time), so that the tasks of one feeder read its data once per worker.
    Tasks use them read-only (a replay copies what it scales)."""

    def __init__(self, *, size: int = 4) -> None:
        self.size = size
        self.hits = 0
        self._items: OrderedDict[tuple[object, ...], tuple[Feeder, MeterTable, DataRecord]] = OrderedDict()

    @staticmethod
    def key(scenario: Scenario) -> tuple[object, ...]:
        stamps = tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) if f.is_file() else (str(f),)
                       for f in input_files(scenario))
        return (scenario.feeder_spec, scenario.data, scenario.data_unit, scenario.data_naive_utc,
                scenario.data_timezone, scenario.data_time_format, scenario.rephase,
                scenario.scale_phase, scenario.scale_factor, scenario.data_fill_steps, scenario.data_unit_check,
                str(scenario.unmetered), scenario.unknown_meters, stamps)

    def inputs(self, scenario: Scenario) -> tuple[Feeder, MeterTable, DataRecord]:
        key = self.key(scenario)
        if key in self._items:
            self.hits += 1
            self._items.move_to_end(key)
            return self._items[key]
        loaded = load_run_inputs(scenario)
        self._items[key] = loaded
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return loaded


def run_task(task: Task, *, threads: int | None = 1, cache: InputCache | None = None) -> dict[str, Any]:
    """Replay the task and return its result row. An error of the task (bad input, a solver failure, anything
    the replay raises) is returned as a failed row with its message, so that it does not stop the study; a
    worker that dies mid-task is the cluster's to handle (Dask reschedules the task on another worker)."""
    start, cpu_start = time.perf_counter(), time.process_time()
    row = task_meta(task) | {"worker": f"{socket.gethostname()}:{os.getpid()}"}
    try:
        if cache is None:
            cache = _worker_cache()
        hits = cache.hits if cache is not None else 0
        inputs = cache.inputs(task.scenario) if cache is not None else None
        row["inputs_cached"] = cache is not None and cache.hits > hits
        replay_start = time.perf_counter()
        result = replay(task.scenario, threads=threads, inputs=inputs)
        replay_s = time.perf_counter() - replay_start
        record_scenario(task.scenario, start_utc=result.summary.start_utc, end_utc=result.summary.end_utc,
                        replay=ReplayOptions(baseline=False))
        row |= figures_row(result, limits=task.scenario.controller.limits) | {"status": "ok", "error": None,
                                                                              "replay_s": replay_s}
    except Exception as err:  # a task's failure of any kind is its result: recorded, never raised to the study
        log.warning("study task %s failed: %s: %s", task.key[:16], type(err).__name__, err)
        row |= {"status": "failed", "error": f"{type(err).__name__}: {err}"}
    row["task_s"] = time.perf_counter() - start
    row["task_cpu_s"] = time.process_time() - cpu_start
    return row


WORKER_CACHE = "phasetwin-inputs"
"""Name of the Dask worker plugin holding a worker's InputCache (``phasetwin.studies.execute.WorkerInputs``)."""


def _worker_cache() -> InputCache | None:
    """The InputCache of the Dask worker running this task; None outside a worker or without the plugin."""
    try:
        from distributed import get_worker

        plugin = get_worker().plugins.get(WORKER_CACHE)
    except ValueError:  # not on a Dask worker
        return None
    return getattr(plugin, "cache", None)
