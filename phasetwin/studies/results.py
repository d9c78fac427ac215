"""The results dataset of a study: one Parquet part file per task, named by the task's key.

``STUDY/results/<key>.parquet`` holds one row. A part is written to a temporary name and renamed into place,
so a part is either whole or absent, and a task's row exists at most once whatever is retried or re-run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from controllers.ltupf import OperatingLimits
from phasetwin.run.compare import figures
from phasetwin.run.result import RunResult

RESULTS = "results"

SCHEMA = pa.schema([
    ("key", pa.string()), ("feeder", pa.string()), ("period", pa.string()), ("fleet", pa.string()),
    ("strategy", pa.string()), ("status", pa.string()), ("error", pa.string()),
    ("p_unb_kwh", pa.float64()), ("mean_p_unb_kw", pa.float64()), ("switch_operations", pa.int64()),
    ("battery_throughput_kwh", pa.float64()), ("losses_kwh", pa.float64()), ("vm_min_pu", pa.float64()),
    ("vm_max_pu", pa.float64()), ("voltage_violation_ticks", pa.int64()), ("peak_neutral_a", pa.float64()),
    ("rejected", pa.int64()), ("rejected_by_reason", pa.string()), ("fallbacks", pa.int64()),
    ("solve_s_p50", pa.float64()), ("solve_s_p95", pa.float64()), ("ticks", pa.int64()),
    ("replay_s", pa.float64()), ("task_s", pa.float64()), ("task_cpu_s", pa.float64()),
    ("inputs_cached", pa.bool_()), ("worker", pa.string()), ("run_folder", pa.string()),
    ("mean_neutral_a", pa.float64()), ("peak_trafo_loading_pct", pa.float64()), ("max_vuf_pct", pa.float64()),
    ("period_days", pa.float64()), ("plan_operations_per_year", pa.int64()),
])
"""One row per task. ``replay_s``: the replay's wall time (as ``phasetwin replay``'s, with writing the run
folder); ``task_s``: the task's, on its worker (inputs,
replay, run folder, scenario.toml); ``task_cpu_s``: CPU time of the worker process over the task;
``inputs_cached``: the worker had the feeder and its data loaded already (by an earlier task);
``rejected_by_reason``: JSON object reason -> count; ``period_days``: the replayed span in days;
``plan_operations_per_year``: customer moves a year of the task's static re-phasing (null without one)."""


def figures_row(result: RunResult, *, limits: OperatingLimits) -> dict[str, Any]:
    """The physics and control figures of a finished replay, as result columns; a voltage violation is a tick
    with a bus-phase outside ``limits``."""
    f = figures(result)
    s = result.summary
    rec = result.recorder
    with np.errstate(invalid="ignore"):
        violating = (np.nanmin(rec.vm_min_pu, axis=1) < limits.vm_min_pu) | \
            (np.nanmax(rec.vm_max_pu, axis=1) > limits.vm_max_pu)
    by_reason = {key.removeprefix("rejected:"): int(n) for key, n in sorted(s.acks.items())
                 if key.startswith("rejected:")}
    return {
        "p_unb_kwh": f.p_unb_kwh, "mean_p_unb_kw": f.mean_p_unb_kw, "switch_operations": f.switch_operations,
        "battery_throughput_kwh": f.battery_throughput_kwh, "losses_kwh": f.losses_kwh,
        "vm_min_pu": min(f.vm_min_pu), "vm_max_pu": max(f.vm_max_pu),
        "voltage_violation_ticks": int(violating.sum()), "peak_neutral_a": f.peak_neutral_a,
        "rejected": sum(by_reason.values()), "rejected_by_reason": json.dumps(by_reason), "fallbacks": f.fallbacks,
        "solve_s_p50": f.solve_s_p50, "solve_s_p95": f.solve_s_p95, "ticks": s.ticks, "replay_s": s.wall_s,
        **({"mean_neutral_a": f.kpis.mean_neutral_a, "peak_trafo_loading_pct": f.kpis.peak_trafo_loading_pct,
            "max_vuf_pct": f.kpis.max_vuf_pct} if f.kpis is not None else {}),
    }


def results_dir(study_dir: Path) -> Path:
    return study_dir / RESULTS


def write_row(study_dir: Path, row: dict[str, Any]) -> Path:
    """Write one task's row as its part file (atomically, replacing an earlier row of the same key)."""
    folder = results_dir(study_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{row['key']}.parquet"
    tmp = folder / f".{row['key']}.{os.getpid()}.tmp"
    table = pa.Table.from_pylist([{name: row.get(name) for name in SCHEMA.names}], schema=SCHEMA)
    pq.write_table(table, tmp)
    tmp.replace(path)
    return path


def done_keys(study_dir: Path) -> set[str]:
    """Keys of the tasks that have a row (finished or failed)."""
    folder = results_dir(study_dir)
    if not folder.is_dir():
        return set()
    return {p.stem for p in folder.glob("*.parquet")}


def read_results(study_dir: Path) -> pd.DataFrame:
    """Every row of the study's results dataset (empty, with the columns, when there is none)."""
    parts = sorted(results_dir(study_dir).glob("*.parquet")) if results_dir(study_dir).is_dir() else []
    if not parts:
        return SCHEMA.empty_table().to_pandas()
    return pa.concat_tables([pq.read_table(p, schema=SCHEMA) for p in parts]).to_pandas()
