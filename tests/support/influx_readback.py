"""What a recorder should have written, computed here from the bus messages in plain Python (independently of
``streams.influx.points``), and what a server holds, read back — both as ``{PointKey: {field: value}}``.

A ``PointKey`` is (measurement, sorted tag items, timestamp in s): the point's identity in InfluxDB.
"""

from __future__ import annotations

import math
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from streams.bus import LocalBus
from streams.influx.schema import BY_NAME
from streams.influx.settings import InfluxSettings
from streams.messages import ControllerPlan, DeviceState, GridState, Message, TwinStatus
from streams.runfolder.loading_recorder import LoadingRatings
from streams.runfolder.recorder import Layout
from twin.loaders import ieee_european_lv

if TYPE_CHECKING:
    from support.servers import InfluxDBServer, VictoriaMetricsServer

PointKey = tuple[str, tuple[tuple[str, str], ...], int]
Points = dict[PointKey, dict[str, Any]]
_PHASES = "ABC"


def key(measurement: str, ts: int, **tags: str) -> PointKey:
    return measurement, tuple(sorted(tags.items())), ts


@dataclass(frozen=True)
class Expected:
    run: str
    scenario: str
    feeder: str
    bus_ids: Sequence[str]
    bus_index: Sequence[int]
    line_ids: Sequence[str]
    line_index: Sequence[int]

    def points(self, messages: Iterable[Message]) -> Points:
        out: Points = {}
        common = {"run": self.run, "scenario": self.scenario, "feeder": self.feeder}
        states: list[GridState] = []
        plans: list[ControllerPlan] = []
        for m in messages:
            ts = int(m.time_utc.timestamp()) if hasattr(m, "time_utc") else 0
            if isinstance(m, GridState):
                states.append(m)
                for b in self.bus_index:
                    for k, ph in enumerate(_PHASES):
                        out[key("bus_voltage", ts, bus=self.bus_ids[b], phase=ph, **common)] = {
                            "vm_pu": float(m.vm_pu[b, k]), "va_deg": float(m.va_deg[b, k])}
                for i in self.line_index:
                    for k, ph in enumerate(_PHASES):
                        out[key("line_current", ts, line=self.line_ids[i], phase=ph, **common)] = {
                            "i_ka": float(m.i_ka[i, k])}
                    out[key("line_current", ts, line=self.line_ids[i], phase="N", **common)] = {
                        "i_ka": float(m.i_n_ka[i])}
                for k, ph in enumerate(_PHASES):
                    out[key("transformer", ts, phase=ph, **common)] = {
                        "p_kw": float(m.p_trafo_kw[k]), "q_kvar": float(m.q_trafo_kvar[k])}
                    out[key("voltage_band", ts, phase=ph, **common)] = {
                        "vm_min_pu": float(m.vm_min_pu[k]), "vm_max_pu": float(m.vm_max_pu[k])}
                for f in range(len(m.p_unb_kw)):
                    out[key("unbalance", ts, lv_feeder=str(f), **common)] = {"p_unb_kw": float(m.p_unb_kw[f])}
                    for k, ph in enumerate(_PHASES):
                        out[key("phase_load", ts, lv_feeder=str(f), phase=ph, **common)] = {
                            "p_kw": float(m.phase_load_kw[f, k])}
                out[key("network", ts, **common)] = {
                    "p_unb_kw": float(sum(float(x) for x in m.p_unb_kw)), "loss_kw": float(m.loss_kw),
                    "vuf_max_pct": float(m.vuf_max_pct), "i_n_max_a": float(m.i_n_max_a),
                    "kappa_trafo": float(m.kappa_trafo)}
            elif isinstance(m, DeviceState):
                fields: dict[str, Any] = {
                    "phase_index": "ABC".index(m.phase) if m.phase else -1, "mode": m.mode.value,
                    "in_transition": m.in_transition, "p_kw": float(sum(m.p_kw)),
                    "operations_today": m.operations_today, "operations_total": m.operations_total,
                    "commands_executed": m.commands_executed, "rejections": m.rejections,
                    "unsupplied_kwh": m.unsupplied_kwh}
                if m.phase is not None:
                    fields["phase"] = m.phase
                if m.battery is not None:
                    b = m.battery
                    fields |= {"e_kwh": b.e_kwh, "charge_kw": b.charge_kw, "discharge_kw": b.discharge_kw,
                               "pv_available_kw": b.pv_available_kw, "pv_used_kw": b.pv_used_kw,
                               "curtailed_kwh": b.curtailed_kwh}
                out[key("device", ts, device=m.device_id, kind=m.kind.value, **common)] = fields
            elif isinstance(m, ControllerPlan):
                plans.append(m)
                fields = {"objective": m.objective, "solve_s": m.solve_s, "status": m.status,
                          "fallbacks": m.fallbacks, "switches": m.switches, "p_unb_kwh": m.p_unb_kwh,
                          "violations": len(m.violations), "repaired": m.repaired}
                if m.predicted_vm_min_pu is not None:
                    fields["predicted_vm_min_pu"] = m.predicted_vm_min_pu
                if m.predicted_vm_max_pu is not None:
                    fields["predicted_vm_max_pu"] = m.predicted_vm_max_pu
                out[key("controller", ts, controller=m.controller_id, strategy=m.strategy, **common)] = fields
            elif isinstance(m, TwinStatus):
                out[key("twin", ts, **common)] = {
                    "tick": m.tick, "lateness_s": m.lateness_s, "overruns": m.overruns,
                    "max_lateness_s": m.max_lateness_s, "powerflow_failures": m.powerflow_failures,
                    "readings_missing": m.readings_missing, "readings_rejected": m.readings_rejected,
                    "deadletters": m.deadletters, "points_written": m.points_written,
                    "points_spooled": m.points_spooled, "points_dropped": m.points_dropped}
        for plan in plans:
            if plan.predicted_vm_min_pu is None and plan.predicted_vm_max_pu is None:
                continue
            start = plan.step_start_utc.timestamp()
            inside = [s for s in states if start <= s.time_utc.timestamp() < start + plan.step_s]
            if not inside:
                continue
            lo = min(min(s.vm_min_pu) for s in inside)
            hi = max(max(s.vm_max_pu) for s in inside)
            fields = {"actual_vm_min_pu": lo, "actual_vm_max_pu": hi}
            if plan.predicted_vm_min_pu is not None:
                fields |= {"predicted_vm_min_pu": plan.predicted_vm_min_pu,
                           "error_vm_min_pu": plan.predicted_vm_min_pu - lo}
            if plan.predicted_vm_max_pu is not None:
                fields |= {"predicted_vm_max_pu": plan.predicted_vm_max_pu,
                           "error_vm_max_pu": plan.predicted_vm_max_pu - hi}
            out[key("ltupf", int(start), controller=plan.controller_id, **common)] = fields
        return out


def loading_points(folder: Path, **common: str) -> Points:
    """The ``loading`` points a run folder's ``loading.parquet`` says (read with pandas; NaN left out)."""
    out: Points = {}
    table = pd.read_parquet(folder / "loading.parquet")
    for row in table.to_dict("records"):
        ts = int(row["time_utc"].timestamp())
        for p in "abc":
            fields: dict[str, Any] = {}
            if math.isfinite(row[f"trafo_{p}_pct"]):
                fields["trafo_pct"] = float(row[f"trafo_{p}_pct"])
            if math.isfinite(row[f"line_max_{p}_pct"]) and row[f"line_max_{p}_id"]:
                fields |= {"line_max_pct": float(row[f"line_max_{p}_pct"]), "line_max_id": row[f"line_max_{p}_id"]}
            if fields:
                out[key("loading", ts, phase=p.upper(), **common)] = fields
    return out


def by_measurement(points: Points) -> Counter[str]:
    return Counter(k[0] for k in points)


def influxdb_points(server: InfluxDBServer, db: str, run: str) -> Points:
    """Every point of run ``run`` in database ``db`` (``SELECT *`` per measurement of the schema)."""
    out: Points = {}
    for measurement, spec in BY_NAME.items():
        answer = server.query(f"SELECT * FROM \"{measurement}\" WHERE \"run\" = '{_influxql(run)}'", db=db,
                              epoch="s")
        for result in answer["results"]:
            assert not result.get("partial"), f"{measurement}: the server truncated the answer"
            for serie in result.get("series", []):
                columns = serie["columns"]
                for row in serie["values"]:
                    values = dict(zip(columns, row, strict=True))
                    tags = {t: values[t] for t in ("run", "scenario", "feeder", *spec.tags)}
                    fields = {f: values[f] for f in spec.fields if values.get(f) is not None}
                    k = key(measurement, int(values["time"]), **tags)
                    assert k not in out, f"two rows for {k}"
                    out[k] = fields
    return out


def victoriametrics_points(server: VictoriaMetricsServer, run: str) -> tuple[Points, Counter[PointKey]]:
    """Every sample of run ``run``, as points; and how many samples each (series, timestamp) has beyond one."""
    names = {f"{m}_{f}": (m, f) for m, spec in BY_NAME.items() for f in spec.fields}
    out: Points = {}
    repeats: Counter[PointKey] = Counter()
    seen: Counter[tuple[PointKey, str]] = Counter()
    for labels, t_ms, value in server.samples(f'{{run="{_promql(run)}"}}'):
        labels = dict(labels)
        measurement, field = names[labels.pop("__name__")]
        labels.pop("db", None)
        assert t_ms % 1000 == 0, f"timestamp {t_ms} ms is not whole seconds"
        k = key(measurement, t_ms // 1000, **labels)
        seen[(k, field)] += 1
        if seen[(k, field)] > 1:
            repeats[k] += 1
        out.setdefault(k, {})[field] = value
    return out, repeats


def compare(got: Points, expected: Points, *, rel: float, numbers_only: bool = False) -> list[str]:
    """Every difference, as readable lines (empty when equal). ``numbers_only`` (VictoriaMetrics): strings are
    not compared, booleans are compared as 1/0, and floats also within 1e-12 absolute (it stores a block of
    samples as decimals with one exponent, so values near zero beside large ones keep fewer digits)."""
    problems = []
    missing = by_measurement({k: v for k, v in expected.items() if k not in got})
    extra = by_measurement({k: v for k, v in got.items() if k not in expected})
    if missing:
        problems.append(f"missing points per measurement: {dict(missing)}")
    if extra:
        problems.append(f"unexpected points per measurement: {dict(extra)}")
    for k, want in expected.items():
        have = got.get(k)
        if have is None:
            continue
        types = BY_NAME[k[0]].fields
        for name, value in want.items():
            kind = types[name]
            if numbers_only and kind == "string":
                continue
            if name not in have:
                problems.append(f"{k} lacks field {name}")
            elif kind == "float" or (kind == "bool" and numbers_only):
                if not math.isclose(float(have[name]), float(value), rel_tol=rel,
                                    abs_tol=1e-12 if numbers_only else 0.0):
                    problems.append(f"{k} {name}: {have[name]!r} != {value!r}")
            elif have[name] != value:
                problems.append(f"{k} {name}: {have[name]!r} != {value!r}")
        unexpected = set(have) - set(want) - ({f for f, t in types.items() if t == "string"} if numbers_only else set())
        if unexpected:
            problems.append(f"{k} has unexpected fields {sorted(unexpected)}")
    return problems[:40]


def _influxql(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


def _promql(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


# --- the feeder, the collected messages, settings -------------------------------------------------------

DAY = datetime(2024, 1, 15, tzinfo=UTC)


@dataclass(frozen=True)
class FeederLayout:
    """The IEEE European LV feeder as the recorder sees it."""

    name: str
    layout: Layout
    customer_bus_index: tuple[int, ...]
    """Customer buses and the transformer's LV bus."""
    head_line_index: tuple[int, ...]
    """Lines leaving the LV busbar."""
    ratings: LoadingRatings
    """Line ampacities and transformer kVA (for the ``loading`` measurement)."""

    def expected(self, *, run: str, scenario: str, full: bool = False) -> Expected:
        n_bus, n_line = len(self.layout.bus_ids), len(self.layout.line_ids)
        return Expected(run=run, scenario=scenario, feeder=self.name, bus_ids=self.layout.bus_ids,
                        bus_index=range(n_bus) if full else self.customer_bus_index, line_ids=self.layout.line_ids,
                        line_index=range(n_line) if full else self.head_line_index)

    @property
    def operator_buses(self) -> set[str]:
        return {self.layout.bus_ids[i] for i in self.customer_bus_index}


def ieee_feeder_layout() -> FeederLayout:
    feeder = ieee_european_lv.load_feeder()
    bus_ids = tuple(feeder.bus_ids())
    position = {b: i for i, b in enumerate(bus_ids)}
    lv_bus = feeder.transformer.lv_bus
    return FeederLayout(
        name=feeder.name,
        layout=Layout(bus_ids=bus_ids, line_ids=tuple(ln.id for ln in feeder.lines), n_lv_feeders=1),
        customer_bus_index=tuple(sorted({position[c.bus] for c in feeder.customers} | {position[lv_bus]})),
        head_line_index=tuple(i for i, ln in enumerate(feeder.lines) if ln.from_bus == lv_bus),
        ratings=LoadingRatings(line_max_i_ka=np.array([ln.max_i_ka for ln in feeder.lines]),
                               trafo_sn_kva=feeder.transformer.sn_kva),
    )


@dataclass
class Collected:
    """A LocalBus with a subscriber that keeps every message of the feeder, in publish order."""

    bus: LocalBus
    messages: list[Message] = field(default_factory=list)

    @classmethod
    def on(cls, feeder: str) -> Collected:
        collected = cls(bus=LocalBus())
        collected.bus.subscribe(f"phasetwin/v1/{feeder}/#", lambda _topic, m: collected.messages.append(m))
        return collected


def run_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def fast_settings(settings: InfluxSettings) -> InfluxSettings:
    """The same target with short retries, so that tests with a server down do not wait long."""
    return InfluxSettings.model_validate(
        {**settings.model_dump(), "backoff_s": 0.05, "backoff_max_s": 0.5, "max_retries": 1, "timeout_s": 5.0})
