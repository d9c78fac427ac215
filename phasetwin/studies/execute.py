"""Running a study's tasks on Dask distributed: an embedded LocalCluster, or a running cluster by address.

Each task is submitted once, under a key derived from its scenario hash; its row is written by this process
(the client) as the task's result arrives, so results need no file system shared with the workers (run folders
do: workers write them under the study folder). A worker that dies mid-task is handled by the scheduler: the
task goes to another worker (up to ``distributed.scheduler.allowed-failures`` times, then it is recorded as
failed). Tasks whose key already has a row are not submitted again, so an interrupted study resumes.
"""

from __future__ import annotations

import logging
import os
import resource
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask
from distributed.diagnostics.plugin import WorkerPlugin

from phasetwin.studies.estimate import estimate_s
from phasetwin.studies.grid import Task
from phasetwin.studies.results import read_results, write_row
from phasetwin.studies.task import WORKER_CACHE, InputCache, run_task, task_meta
from twin.errors import ScenarioError

log = logging.getLogger(__name__)

SINGLE_THREADED = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
"""Environment of embedded workers: one thread each for the numeric libraries (workers × threads ≤ cores)."""

EMBEDDED_CLUSTER_CONFIG: dict[str, Any] = {
    # Dask's default MALLOC_TRIM_THRESHOLD_=65536 hands freed memory back to the kernel at once: a replay's
    # power-flow batches then page-fault it back in (14× the minor faults, +15 % time per task, measured with
    # benchmarks/study.py). glibc's own adaptive threshold keeps it.
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
    # the statistical profiler samples the task thread's stack every 10 ms; a task's own figures are in its row
    "distributed.worker.profile.enabled": False,
    # one task per worker thread at a time, the rest queued at the scheduler in priority order: with the default
    # 1.1 each worker holds a second task, and a worker that finishes early waits for work stealing (0.8 s idle
    # per study of 8 tasks, measured) while the other still has two to do
    "distributed.scheduler.worker-saturation": 1.0,
}
"""Dask settings of the embedded cluster (a running cluster keeps its own)."""


@dataclass
class StudyProgress:
    """Counts of the tasks of one run of a study (``skipped``: they already had a row)."""

    total: int
    skipped: int = 0
    done: int = 0
    failed: int = 0
    running: int = 0
    dashboard: str | None = None
    workers: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def finished(self) -> int:
        return self.skipped + self.done + self.failed


def pending(tasks: list[Task], study_dir: Path, *, force: bool = False, retry_failed: bool = False) -> list[Task]:
    """The tasks to run: those without a row (all with ``force``; also failed ones with ``retry_failed``)."""
    if force:
        return list(tasks)
    results = read_results(study_dir)
    keep = results if not retry_failed else results[results["status"] == "ok"]
    have = set(keep["key"])
    return [t for t in tasks if t.key not in have]


def default_workers() -> int:
    """Worker processes of the embedded cluster: one per core (each task single-threaded)."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


class WorkerLogs(WorkerPlugin):
    """Dask worker plugin: the worker's log records at ``level`` and above go to ``folder/worker-HOST-PID.log``
    (with ``folder`` None: to its stderr). A replay counts what it logs in its summary; on a worker the lines
    would otherwise go to Python's last-resort handler, one per line, over the progress bar."""

    name = "phasetwin-logs"

    def __init__(self, level: int, folder: Path | None = None) -> None:
        self.level, self.folder = level, folder

    def setup(self, worker: Any) -> None:
        fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
        if self.folder is None:
            logging.basicConfig(level=self.level, format=fmt, force=True)
        else:
            self.folder.mkdir(parents=True, exist_ok=True)
            import socket

            logging.basicConfig(level=self.level, format=fmt,
                                filename=self.folder / f"worker-{socket.gethostname()}-{os.getpid()}.log", force=True)
        logging.getLogger().setLevel(self.level)


class WorkerInputs(WorkerPlugin):
    """Dask worker plugin holding the worker's InputCache: a feeder and its meter data are read once per worker,
    not once per task (the Liège year: 0.8 s)."""

    name = WORKER_CACHE

    def setup(self, worker: Any) -> None:
        self.cache = InputCache()


@contextmanager
def dask_client(*, scheduler: str | None, workers: int | None, log_level: int = logging.ERROR,
                log_folder: Path | None = None) -> Iterator[Any]:
    """A Dask client on the cluster at ``scheduler`` (tcp://HOST:PORT), or on an embedded LocalCluster of
    ``workers`` single-threaded worker processes (default: one per core); the workers log at ``log_level`` to
    files in ``log_folder`` (None: their stderr). Raises ScenarioError when the scheduler cannot be reached."""
    from distributed import Client, LocalCluster

    logging.getLogger("distributed").setLevel(max(log_level, logging.WARNING))
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout="10s")
        except OSError as err:
            raise ScenarioError(f"--scheduler {scheduler}: no Dask scheduler answers there ({err})") from err
        with _serving(client, log_level=log_level, log_folder=log_folder):
            yield client
        return
    # read by the scheduler and by each nanny as it starts (and restarts) its worker
    with dask.config.set(EMBEDDED_CLUSTER_CONFIG):
        cluster = LocalCluster(n_workers=workers or default_workers(), threads_per_worker=1, processes=True,
                               dashboard_address="127.0.0.1:0", host="127.0.0.1", env=dict(SINGLE_THREADED),
                               silence_logs=max(log_level, logging.WARNING))
    try:
        client = Client(cluster)
        with _serving(client, log_level=log_level, log_folder=log_folder):
            yield client
    finally:
        cluster.close()


@contextmanager
def _serving(client: Any, *, log_level: int, log_folder: Path | None) -> Iterator[None]:
    """The client with the study's worker plugins registered, closed at the end."""
    try:
        client.register_plugin(WorkerLogs(log_level, log_folder))
        client.register_plugin(WorkerInputs())
        yield
    finally:
        client.close()


def peak_rss_mb() -> float:
    """Peak resident memory of this process, MB: Linux's VmHWM (ru_maxrss would carry the parent's peak over
    into a spawned worker: the kernel keeps the larger of the pre-exec and post-exec peaks)."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux, bytes on macOS


def run_in_process(tasks: list[Task], *, study_dir: Path, progress: StudyProgress,
                   on_update: Callable[[StudyProgress], None] | None = None,
                   threads: int | None = None) -> StudyProgress:
    """The tasks one after the other in this process (no cluster): ``compare`` and the serial benchmark.
    ``threads``: the power flow's own threads (None: one per core; a cluster's tasks run with 1)."""
    cache = InputCache()
    for task in tasks:
        progress.running = 1
        row = run_task(task, threads=threads, cache=cache)
        _record(study_dir, row, progress)
        if on_update is not None:
            on_update(progress)
    progress.running = 0
    return progress


def run_on_cluster(tasks: list[Task], *, study_dir: Path, client: Any, progress: StudyProgress,
                   on_update: Callable[[StudyProgress], None] | None = None) -> StudyProgress:
    """Submit the tasks to the cluster of ``client`` and record each row as it arrives.

    Raises ScenarioError when the cluster is lost (rows already recorded stay: run the study again to resume);
    KeyboardInterrupt leaves the same state."""
    from distributed import as_completed
    from distributed.scheduler import KilledWorker

    progress.dashboard = client.dashboard_link
    progress.workers = len(client.scheduler_info(n_workers=-1)["workers"])
    # the longest first (by the plan's estimate), so that no long task starts last while the other workers idle
    priorities = estimate_s(tasks) if tasks else []
    futures = {client.submit(run_task, task, threads=1, key=f"phasetwin-study-{task.key}", pure=False,
                             priority=round(1000 * cost_s)): task
               for task, cost_s in zip(tasks, priorities, strict=True)}
    try:
        for future in as_completed(futures):
            task = futures.pop(future)
            try:
                row = future.result()
            except KilledWorker as err:
                row = task_meta(task) | {"status": "failed", "error": f"the workers running it died: {err}"}
            except Exception as err:  # anything else from result() is the cluster's, not the task's
                raise ScenarioError(
                    f"the Dask cluster lost task {task.key[:16]} ({type(err).__name__}: {' '.join(str(err).split())}); "
                    f"{progress.finished} of {progress.total} tasks have their row: run the study again to resume"
                ) from err
            _record(study_dir, row, progress)
            progress.running = _running(client)
            if on_update is not None:
                on_update(progress)
    finally:
        for future in futures:
            future.cancel()
    progress.running = 0
    return progress


def _running(client: Any) -> int:
    try:
        return sum(len(keys) for keys in client.processing().values())
    except OSError:
        return 0


def _record(study_dir: Path, row: dict[str, Any], progress: StudyProgress) -> None:
    write_row(study_dir, row)
    progress.rows.append(row)
    if row.get("status") == "ok":
        progress.done += 1
    else:
        progress.failed += 1
        log.warning("task %s (%s %s %s %s) failed: %s", str(row["key"])[:16], row["feeder"], row["period"],
                    row["fleet"], row["strategy"], row.get("error"))
