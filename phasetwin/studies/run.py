"""A study from its file: the task grid, the tasks not yet in the results, run in this process or on Dask."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phasetwin.studies.execute import StudyProgress, dask_client, pending, run_in_process, run_on_cluster
from phasetwin.studies.grid import Task, task_grid
from phasetwin.studies.spec import read_study


@dataclass(frozen=True)
class StudyRun:
    tasks: list[Task]
    study_dir: Path
    progress: StudyProgress


def study_tasks(study_file: Path, out: Path | None) -> tuple[list[Task], Path]:
    """Every task of the study file and the study folder (``out``, else the file's own)."""
    spec, study_dir = read_study(study_file)
    study_dir = (out or study_dir).resolve()
    return task_grid(spec, study_dir=study_dir), study_dir


def run_study(study_file: Path, *, out: Path | None = None, workers: int | None = None, scheduler: str | None = None,
              force: bool = False, retry_failed: bool = False, log_level: int = logging.WARNING,
              on_start: Callable[[StudyRun, list[Task]], None] | None = None,
              on_client: Callable[[Any], None] | None = None,
              on_update: Callable[[StudyProgress], None] | None = None) -> StudyRun:
    """Run the tasks of ``study_file`` not yet in its results (all with ``force``; also the failed ones with
    ``retry_failed``): in this process with ``workers=0`` and no scheduler, else on Dask (an embedded
    LocalCluster, or the cluster at ``scheduler``). Rows are recorded as tasks finish, so an interrupted study
    resumes where it stopped."""
    tasks, study_dir = study_tasks(study_file, out)
    todo = pending(tasks, study_dir, force=force, retry_failed=retry_failed)
    run = StudyRun(tasks=tasks, study_dir=study_dir,
                   progress=StudyProgress(total=len(tasks), skipped=len(tasks) - len(todo)))
    if on_start is not None:
        on_start(run, todo)
    if not todo:
        return run
    if workers == 0 and scheduler is None:
        run_in_process(todo, study_dir=study_dir, progress=run.progress, on_update=on_update)
        return run
    with dask_client(scheduler=scheduler, workers=workers, log_level=log_level,
                     log_folder=study_dir / "logs") as client:
        if on_client is not None:
            on_client(client)
        run_on_cluster(todo, study_dir=study_dir, client=client, progress=run.progress, on_update=on_update)
    return run
