"""A finished (or killed) run folder read into a ``Timeline``: the grid tables, the devices, the controller's
decisions, the no-control reference beside it, and the feeder from the run's ``scenario.json``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from phasetwin.report.html import find_baseline
from phasetwin.view.alarms import AlarmBook, grid_rules
from phasetwin.view.errors import RunFolderError
from phasetwin.view.geometry import OneLine, one_line
from phasetwin.view.timeline import Customer, Decision, DeviceSample, GridTick, Reference, Timeline
from streams.errors import StreamError
from streams.runfolder.matrix import Matrix, read_matrix
from twin.feeders import open_feeder
from twin.network import Feeder

PHASES = ("a", "b", "c")


def _scenario(folder: Path) -> dict[str, Any]:
    path = folder / "scenario.json"
    if not path.is_file():
        raise RunFolderError(f"{folder}: no scenario.json; expected a run folder written by phasetwin replay/run")
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _table(folder: Path, name: str, *, required: bool = True) -> pd.DataFrame | None:
    path = folder / f"{name}.parquet"
    if not path.exists():
        if required:
            raise RunFolderError(f"{folder}: no {name}.parquet; expected a run folder written by phasetwin replay/run")
        return None
    return pd.read_parquet(path)


def _matrix(folder: Path, name: str) -> Matrix:
    """A per-bus or per-line table (``streams.runfolder.matrix``, either layout)."""
    path = folder / f"{name}.parquet"
    if not path.exists():
        raise RunFolderError(f"{folder}: no {name}.parquet; expected a run folder written by phasetwin replay/run")
    try:
        return read_matrix(path)
    except StreamError as err:
        raise RunFolderError(f"{folder}: {err}") from err


def empty_timeline(*, feeder: Feeder, title: str, tick_s: float, vm_limits_pu: tuple[float, float],
                   control_period_s: float | None, live: bool, customers: tuple[Customer, ...] | None = None,
                   drawing: OneLine | None = None) -> Timeline:
    """A timeline of ``feeder`` with no tick yet (a live run fills it)."""
    if customers is None:
        customers = tuple(Customer(id=c.id, bus=c.bus, phases="".join(p.name for p in c.phases), device_id="")
                      for c in feeder.customers)
    return Timeline(title=title, drawing=drawing or one_line(feeder), customers=customers, tick_s=tick_s,
                    vm_limits_pu=vm_limits_pu,
                    alarms=AlarmBook(rules=grid_rules(vm_min_pu=vm_limits_pu[0], vm_max_pu=vm_limits_pu[1])),
                    control_period_s=control_period_s, live=live, feeder_name=feeder.name)


def _limits(scenario: dict[str, Any]) -> tuple[float, float]:
    lim = scenario.get("controller", {}).get("limits", {})
    return float(lim.get("vm_min_pu", 0.90)), float(lim.get("vm_max_pu", 1.10))


def _control_period_s(scenario: dict[str, Any]) -> float | None:
    control = scenario.get("controller", {})
    if control.get("strategy", "none") == "none" or scenario.get("external_controller"):
        return None
    return float(control.get("period_s", 900))


def _customers(folder: Path, feeder: Feeder) -> tuple[Customer, ...]:
    path = folder / "customers.csv"
    if not path.is_file():
        return tuple(Customer(id=c.id, bus=c.bus, phases="".join(p.name for p in c.phases), device_id="")
                     for c in feeder.customers)
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    return tuple(Customer(id=r.customer_id, bus=r.bus, phases=r.phases, device_id=r.device_id)
                 for r in table.itertuples())


def read_feeder(scenario: dict[str, Any]) -> Feeder:
    return open_feeder(str(scenario["feeder"])).load_feeder()


def read_run_folder(folder: Path, *, feeder: Feeder | None = None) -> Timeline:
    """The whole run in ``folder`` as a timeline; RunFolderError names what is missing or does not match."""
    scenario = _scenario(folder)
    feeder = feeder or read_feeder(scenario)
    tick_s = float(scenario.get("tick_s", 60))
    timeline = empty_timeline(
        feeder=feeder, title=f"{scenario.get('feeder')} · {scenario.get('controller', {}).get('strategy', 'none')}",
        tick_s=tick_s, vm_limits_pu=_limits(scenario), control_period_s=_control_period_s(scenario), live=False,
        customers=_customers(folder, feeder))
    metrics = _table(folder, "metrics")
    transformer = _table(folder, "transformer")
    voltages = _matrix(folder, "voltages_pu")
    currents = _matrix(folder, "line_currents_ka")
    assert metrics is not None and transformer is not None
    drawing = timeline.drawing
    vm_names = [f"{b}_{p.upper()}" for b in drawing.bus_ids for p in PHASES]
    known = set(voltages.names)
    missing = [c for c in vm_names if c not in known]
    if missing:
        raise RunFolderError(f"{folder}: voltages_pu.parquet lacks {len(missing)} column(s) of feeder "
                             f"{feeder.name!r} (first {missing[0]!r}); the folder is of another feeder")
    vm = voltages.columns(vm_names).astype(np.float32).reshape(len(voltages.time_utc), len(drawing.bus_ids), 3)
    i_max = currents.columns(list(drawing.line_ids)).astype(np.float32)
    times = pd.DatetimeIndex(metrics["time_utc"])
    start = times[0] if len(times) else pd.Timestamp(scenario["start_utc"])
    p_unb = metrics[[c for c in metrics.columns if c.startswith("p_unb_kw_f")]].sum(axis=1, min_count=1).to_numpy()
    p_trafo = transformer[[f"p_{p}_kw" for p in PHASES]].to_numpy()
    lo = metrics[[f"vm_min_{p}_pu" for p in PHASES]].to_numpy()
    hi = metrics[[f"vm_max_{p}_pu" for p in PHASES]].to_numpy()
    vuf = metrics["vuf_max_pct"].to_numpy()
    i_n = metrics["i_n_max_a"].to_numpy()

    def tick_of(t: pd.Timestamp) -> int:
        return round((t - start).total_seconds() / tick_s)

    _add_devices(folder, timeline, tick_of)
    _add_decisions(folder, scenario, timeline, tick_of)
    for k, t in enumerate(times):
        timeline.add_tick(GridTick(tick=tick_of(t), time_utc=t.to_pydatetime(), vm_pu=vm[k], i_max_ka=i_max[k],
                                   p_trafo_kw=p_trafo[k], vm_min_pu=lo[k], vm_max_pu=hi[k], p_unb_kw=float(p_unb[k]),
                                   i_n_max_a=float(i_n[k]), vuf_max_pct=float(vuf[k])))
    baseline = find_baseline(folder)
    if baseline is not None:
        timeline.reference = _reference(baseline, times)
    timeline.finished = (folder / "summary.json").is_file()
    return timeline


def _add_devices(folder: Path, timeline: Timeline, tick_of: Any) -> None:
    devices = _table(folder, "devices", required=False)
    if devices is None:
        return
    for row in devices.itertuples(index=False):
        e = getattr(row, "e_kwh", math.nan)
        timeline.add_device(str(row.device_id), DeviceSample(
            tick=tick_of(pd.Timestamp(row.time_utc)), kind=str(row.kind), customer_id=str(row.customer_id),
            phase=row.phase if isinstance(row.phase, str) and row.phase else None,
            e_kwh=None if e is None or not math.isfinite(e) else float(e)))


def _add_decisions(folder: Path, scenario: dict[str, Any], timeline: Timeline, tick_of: Any) -> None:
    table = _table(folder, "controller", required=False)
    if table is None:
        return
    control = scenario.get("controller", {})
    step_s = float(control.get("period_s", 900))
    n_steps = int(control.get("horizon_steps", 1))
    for row in table.itertuples(index=False):
        t = pd.Timestamp(row.step_start_utc)
        timeline.add_decision(Decision(
            tick=tick_of(t), step_start_utc=t.to_pydatetime(), step_s=step_s, n_steps=n_steps, status=str(row.status),
            p_unb_kwh=float(row.p_unb_kwh), predicted_vm_min_pu=_finite(row.predicted_vm_min_pu),
            predicted_vm_max_pu=_finite(row.predicted_vm_max_pu)))


def _finite(value: Any) -> float | None:
    return float(value) if value is not None and math.isfinite(float(value)) else None


def _reference(folder: Path, times: pd.DatetimeIndex) -> Reference | None:
    metrics = _table(folder, "metrics", required=False)
    transformer = _table(folder, "transformer", required=False)
    if metrics is None or transformer is None:
        return None
    metrics = metrics.set_index("time_utc").reindex(times)
    transformer = transformer.set_index("time_utc").reindex(times)
    return Reference(
        p_trafo_kw=transformer[[f"p_{p}_kw" for p in PHASES]].to_numpy(),
        p_unb_kw=metrics[[c for c in metrics.columns if c.startswith("p_unb_kw_f")]].sum(axis=1, min_count=1)
        .to_numpy(),
        i_n_max_a=metrics["i_n_max_a"].to_numpy(),
        vm_min_pu=metrics[[f"vm_min_{p}_pu" for p in PHASES]].to_numpy(),
        vm_max_pu=metrics[[f"vm_max_{p}_pu" for p in PHASES]].to_numpy(),
    )
