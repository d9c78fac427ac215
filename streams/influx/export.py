"""Push a finished Parquet run folder to InfluxDB as the same points the live recorder writes (``phasetwin export``).

What goes where (measurement: source):

- ``bus_voltage`` (``vm_pu`` only; angles are not in the folder): ``voltages_pu.parquet``. The folder stores
  float32, so an export after a live recording overwrites ``vm_pu`` with the float32-rounded values.
- ``transformer``, ``network.loss_kw``: ``transformer.parquet``.
- ``unbalance``, ``phase_load``, ``voltage_band``, ``network`` (the rest): ``metrics.parquet``.
- ``device``: ``devices.parquet`` (it has no ``commands_executed`` nor ``curtailed_kwh``; those fields are left
  as the live recording wrote them).
- ``controller``: ``controller.parquet``; the plan time is ``step_start_utc − tick_s`` (``tick_s`` from
  ``summary.json``), the tags are ``controller_id`` and the strategy of ``summary.json``; ``fallbacks`` is not
  in the file. Plans held for lack of any previous plan are not in the file either.
- ``ltupf``: the plans' predictions in ``controller.parquet`` against the lowest ``vm_min_<a|b|c>_pu`` and
  highest ``vm_max_<a|b|c>_pu`` of ``metrics.parquet`` over each step, exactly as the live recorder computes it.
- ``loading``: ``loading.parquet`` when the folder has it (``trafo_<p>_pct``, ``line_max_<p>_pct``,
  ``line_max_<p>_id``): the floats the live recorder computes, through the same ``loading_lines``.
- ``line_current`` and ``twin`` are not in a run folder and are not exported.

Same tags and timestamps as live: exporting a run recorded live (same run id) overwrites, never duplicates.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from streams.errors import StreamError
from streams.influx.line_protocol import LineSpec, LineTemplate, line, series
from streams.influx.points import (
    PHASES,
    RunTags,
    controller_fields,
    device_p_kw,
    loading_lines,
)
from streams.influx.settings import Detail, InfluxError, InfluxSettings
from streams.influx.shipper import InfluxCounts, Shipper
from streams.influx.spool import Spool
from streams.influx.transport import create_transport
from streams.runfolder.matrix import read_matrix

log = logging.getLogger(__name__)
_PHASE_INDEX = {"A": 0, "B": 1, "C": 2}
_BATTERY = ("e_kwh", "charge_kw", "discharge_kw", "pv_available_kw", "pv_used_kw")
Chunk = tuple[bytes, int, str]
"""Lines (UTF-8), their count and their measurement."""
_ROWS_PER_RENDER = 64


@dataclass(frozen=True)
class ExportReport:
    points: dict[str, int]
    """Points sent per measurement."""
    counts: InfluxCounts


def export_run(run_dir: Path, settings: InfluxSettings, *, run_id: str, scenario: str,
               buses: Collection[str] | None = None, controller_id: str = "phasetwin-controller",
               control_period_s: float = 900.0) -> ExportReport:
    """Send the run folder ``run_dir`` to the server of ``settings``, tagged ``run=run_id``, ``scenario``.

    ``buses``: the buses whose voltages are written with ``settings.detail`` operator (the customer buses and
    the transformer's LV bus); ignored with ``full``. ``controller_id`` and ``control_period_s``: the
    controller's id and period (``ControllerSettings``), which ``controller.parquet`` does not hold.

    Raises:
        InfluxError: a file is missing or unreadable, ``buses`` is missing with operator detail or names buses
            not in the folder, or the server did not take a batch after the retries (nothing is spooled; the
            export is idempotent: run it again).
    """
    summary = _summary(run_dir)
    feeder = str(summary.get("feeder") or "")
    tick_s = int(summary.get("tick_s") or 0)
    if not feeder or tick_s <= 0:
        raise InfluxError(f"{run_dir / 'summary.json'} has no feeder or tick_s; is {run_dir} a run folder?")
    if settings.detail is Detail.OPERATOR and buses is None:
        raise InfluxError("export with detail=operator needs buses= (customer buses and the transformer's LV "
                          "bus); or use detail=full")
    try:
        tags = RunTags(run=run_id, scenario=scenario, feeder=feeder)
        series("network", tags.with_())
    except ValueError as err:
        raise InfluxError(f"export of {run_dir}: {err}") from err
    strategy = str((summary.get("controller") or {}).get("strategy") or "none")
    chunks = [
        _voltages(run_dir, tags, None if settings.detail is Detail.FULL else set(buses or ())),
        _grid_figures(run_dir, tags),
        _loading(run_dir, tags),
        _devices(run_dir, tags),
        _controller(run_dir, tags, controller_id=controller_id, strategy=strategy, tick_s=tick_s,
                    period_s=control_period_s),
    ]
    shipper = Shipper(settings=settings, transport=create_transport(settings),
                      spool=Spool(None, max_bytes=0))
    points: dict[str, int] = {}
    started = time.perf_counter()
    try:
        pending: list[bytes] = []
        n_pending = 0
        for source in chunks:
            for text, n, measurement in source:
                pending.append(text)
                n_pending += n
                points[measurement] = points.get(measurement, 0) + n
                if n_pending >= settings.batch_points:
                    _send(shipper, pending, n_pending, run_dir)
                    pending, n_pending = [], 0
        if pending:
            _send(shipper, pending, n_pending, run_dir)
        counts = shipper.counts()
    finally:
        shipper.close()
    log.info("influx: exported %s as run %r: %d point(s) written, %d rejected, in %.1f s", run_dir, run_id,
             counts.written, counts.rejected, time.perf_counter() - started)
    return ExportReport(points=points, counts=counts)


def _send(shipper: Shipper, pending: list[bytes], n: int, run_dir: Path) -> None:
    with_counts = shipper.counts()
    if not shipper.send(b"".join(pending), n):
        raise InfluxError(
            f"export of {run_dir}: the server did not take a batch after the retries ({shipper.counts().last_error});"
            f" {with_counts.written} point(s) were written before; the export is idempotent, run it again"
        )


def _summary(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "summary.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise InfluxError(f"cannot read {path}: {err}") from err
    if not isinstance(data, dict):
        raise InfluxError(f"{path} is not a JSON object")
    return data


def _table(path: Path, columns: list[str] | None = None) -> dict[str, np.ndarray]:
    try:
        table = pq.read_table(path, columns=columns)
    except (OSError, ValueError) as err:
        raise InfluxError(f"cannot read {path}: {err}") from err
    return {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}


def _epoch_s(times: np.ndarray) -> np.ndarray:
    """Whole seconds since the epoch of a datetime64 column (floor, as the live recorder)."""
    return times.astype("datetime64[s]").astype(np.int64)


def _rows(template: LineTemplate, values: np.ndarray, times_s: np.ndarray, measurement: str) -> Iterator[Chunk]:
    stamps = times_s.tolist()
    for i in range(0, len(stamps), _ROWS_PER_RENDER):
        text, n = template.render(values[i:i + _ROWS_PER_RENDER], stamps[i:i + _ROWS_PER_RENDER])
        if n:
            yield text, n, measurement


def _voltages(run_dir: Path, tags: RunTags, buses: set[str] | None) -> Iterator[Chunk]:
    path = run_dir / "voltages_pu.parquet"
    try:
        matrix = read_matrix(path)  # a file or a run folder's directory of parts, either layout
    except StreamError as err:
        raise InfluxError(str(err)) from err
    columns = [c for c in matrix.names if buses is None or c.rsplit("_", 1)[0] in buses]
    if buses is not None:
        found = {c.rsplit("_", 1)[0] for c in columns}
        if buses - found:
            raise InfluxError(f"buses {sorted(buses - found)[:10]} are not in {path}")
    lines = []
    for column in columns:
        bus, phase = column.rsplit("_", 1)
        if phase not in PHASES:
            raise InfluxError(f"{path}: column {column!r} is not <bus>_<A|B|C>")
        lines.append(LineSpec(series("bus_voltage", tags.with_(bus=bus, phase=phase)), "bus_voltage", ("vm_pu",)))
    if not columns:
        return
    values = matrix.columns(columns).astype(np.float64)
    yield from _rows(LineTemplate(lines), values, _epoch_s(matrix.time_utc.tz_convert(None).to_numpy()), "bus_voltage")


def _grid_figures(run_dir: Path, tags: RunTags) -> Iterator[Chunk]:
    trafo = _table(run_dir / "transformer.parquet")
    metrics = _table(run_dir / "metrics.parquet")
    if not np.array_equal(trafo["time_utc"], metrics["time_utc"]):
        raise InfluxError(f"{run_dir}: transformer.parquet and metrics.parquet have different times")
    n_f = sum(1 for c in metrics if c.startswith("p_unb_kw_f"))
    ph = [p.lower() for p in PHASES]
    parts: list[tuple[str, list[LineSpec], list[np.ndarray]]] = [
        ("transformer", [LineSpec(series("transformer", tags.with_(phase=p)), "transformer", ("p_kw", "q_kvar"))
                         for p in PHASES],
         [trafo[f"{k}_{p}_{u}"] for p in ph for k, u in (("p", "kw"), ("q", "kvar"))]),
        ("phase_load", [LineSpec(series("phase_load", tags.with_(lv_feeder=str(f), phase=p)), "phase_load",
                                 ("p_kw",)) for f in range(n_f) for p in PHASES],
         [metrics[f"load_{p}_kw_f{f}"] for f in range(n_f) for p in ph]),
        ("unbalance", [LineSpec(series("unbalance", tags.with_(lv_feeder=str(f))), "unbalance", ("p_unb_kw",))
                       for f in range(n_f)],
         [metrics[f"p_unb_kw_f{f}"] for f in range(n_f)]),
        ("voltage_band", [LineSpec(series("voltage_band", tags.with_(phase=p)), "voltage_band",
                                   ("vm_min_pu", "vm_max_pu")) for p in PHASES],
         [metrics[f"vm_{k}_{p}_pu"] for p in ph for k in ("min", "max")]),
    ]
    p_unb_total = np.zeros(len(metrics["time_utc"]))
    for f in range(n_f):  # in feeder order, as the live recorder's sum
        p_unb_total = p_unb_total + metrics[f"p_unb_kw_f{f}"]
    parts.append(("network", [LineSpec(series("network", tags.with_()), "network",
                                       ("p_unb_kw", "loss_kw", "vuf_max_pct", "i_n_max_a", "kappa_trafo"))],
                  [p_unb_total, trafo["loss_kw"], metrics["vuf_max_pct"], metrics["i_n_max_a"],
                   metrics["kappa_trafo"]]))
    times_s = _epoch_s(metrics["time_utc"])
    for measurement, lines, columns in parts:
        if lines:
            values = np.column_stack([np.asarray(c, dtype=np.float64) for c in columns])
            yield from _rows(LineTemplate(lines), values, times_s, measurement)


def _loading(run_dir: Path, tags: RunTags) -> Iterator[Chunk]:
    path = run_dir / "loading.parquet"
    if not path.exists():
        return
    ph = [p.lower() for p in PHASES]
    d = _table(path, ["time_utc", *(f"{k}_{p}_{u}" for k, u in (("trafo", "pct"), ("line_max", "pct"),
                                                                 ("line_max", "id")) for p in ph)])
    prefixes = [series("loading", tags.with_(phase=p)) for p in PHASES]
    trafo = np.column_stack([d[f"trafo_{p}_pct"].astype(np.float64) for p in ph]).tolist()
    line_pct = np.column_stack([d[f"line_max_{p}_pct"].astype(np.float64) for p in ph]).tolist()
    ids = [[x if isinstance(x, str) else "" for x in d[f"line_max_{p}_id"].tolist()] for p in ph]
    for i, ts in enumerate(_epoch_s(d["time_utc"]).tolist()):
        text, n = loading_lines(prefixes, trafo[i], line_pct[i], [ids[k][i] for k in range(3)], ts)
        if n:
            yield text.encode(), n, "loading"


def _devices(run_dir: Path, tags: RunTags) -> Iterator[Chunk]:
    path = run_dir / "devices.parquet"
    if not path.exists():
        return
    d = _table(path)
    times_s = _epoch_s(d["time_utc"]).tolist()
    prefixes: dict[tuple[str, str], str] = {}
    for i, ts in enumerate(times_s):
        key = (str(d["device_id"][i]), str(d["kind"][i]))
        prefix = prefixes.get(key)
        if prefix is None:
            prefix = prefixes[key] = series("device", tags.with_(device=key[0], kind=key[1]))
        phase = d["phase"][i]
        phase = phase if isinstance(phase, str) else None
        values: dict[str, object] = {
            "phase": phase, "phase_index": _PHASE_INDEX.get(phase, -1) if phase is not None else -1,
            "mode": str(d["mode"][i]), "in_transition": bool(d["in_transition"][i]),
            "p_kw": device_p_kw(d["p_a_kw"][i], d["p_b_kw"][i], d["p_c_kw"][i]),
            "operations_today": int(d["operations_today"][i]), "operations_total": int(d["operations_total"][i]),
            "rejections": int(d["rejections"][i]), "unsupplied_kwh": float(d["unsupplied_kwh"][i]),
        }
        values |= {name: float(d[name][i]) for name in _BATTERY if name in d}
        text = line(prefix, "device", values, ts)
        if text:
            yield text.encode(), 1, "device"


def _controller(run_dir: Path, tags: RunTags, *, controller_id: str, strategy: str, tick_s: int,
                period_s: float) -> Iterator[Chunk]:
    path = run_dir / "controller.parquet"
    if not path.exists():
        return
    c = _table(path)
    starts_s = _epoch_s(c["step_start_utc"]).tolist()
    prefix = series("controller", tags.with_(controller=controller_id, strategy=strategy))
    for i, start in enumerate(starts_s):
        text = line(prefix, "controller", controller_fields(
            status=str(c["status"][i]), objective=float(c["objective"][i]), solve_s=float(c["solve_s"][i]),
            fallbacks=None, switches=int(c["switches"][i]), p_unb_kwh=float(c["p_unb_kwh"][i]),
            predicted_vm_min_pu=_optional(c["predicted_vm_min_pu"][i]),
            predicted_vm_max_pu=_optional(c["predicted_vm_max_pu"][i]),
            violations=int(c["violations"][i]), repaired=bool(c["repaired"][i]),
        ), start - tick_s)
        if text:
            yield text.encode(), 1, "controller"
    metrics = _table(run_dir / "metrics.parquet", ["time_utc", *(f"vm_{k}_{p}_pu" for k in ("min", "max")
                                                               for p in "abc")])
    t_s = metrics["time_utc"].astype("datetime64[ns]").astype(np.int64) / 1e9
    lo = np.column_stack([metrics[f"vm_min_{p}_pu"] for p in "abc"])
    hi = np.column_stack([metrics[f"vm_max_{p}_pu"] for p in "abc"])
    seen = np.isfinite(lo).any(axis=1) | np.isfinite(hi).any(axis=1)
    prefix = series("ltupf", tags.with_(controller=controller_id))
    for i, start in enumerate(starts_s):
        p_lo, p_hi = _optional(c["predicted_vm_min_pu"][i]), _optional(c["predicted_vm_max_pu"][i])
        if p_lo is None and p_hi is None:
            continue
        rows = (t_s >= start) & (t_s < start + period_s) & seen
        if not rows.any():
            continue
        a_lo, a_hi = _extreme(lo[rows], min), _extreme(hi[rows], max)
        text = line(prefix, "ltupf", {
            "predicted_vm_min_pu": p_lo, "actual_vm_min_pu": a_lo,
            "error_vm_min_pu": p_lo - a_lo if p_lo is not None and a_lo is not None else None,
            "predicted_vm_max_pu": p_hi, "actual_vm_max_pu": a_hi,
            "error_vm_max_pu": p_hi - a_hi if p_hi is not None and a_hi is not None else None,
        }, start)
        if text:
            yield text.encode(), 1, "ltupf"


def _optional(value: object) -> float | None:
    if value is None:
        return None
    number = float(value)  # type: ignore[arg-type]
    return None if math.isnan(number) else number


def _extreme(values: np.ndarray, pick: Callable[[np.ndarray], Any]) -> float | None:
    finite = values[np.isfinite(values)]
    return float(pick(finite)) if finite.size else None
