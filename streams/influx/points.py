"""The points of ``streams.influx.schema`` for one run of one feeder, as line protocol: the one place where bus
messages (live) and run-folder rows (``phasetwin export``) become measurements, tags and fields.

Live recording and export go through the same series prefixes and field formatting, so the same run id and tick
give the same point keys (measurement + tags + timestamp) and an export overwrites what was recorded live.

Tag values: ``phase`` A/B/C (N for the neutral conductor of ``line_current``), ``lv_feeder`` the LV feeder's
index (0, 1, …, as in the ``_f<f>`` columns of ``metrics.parquet``), ``device``/``kind``, ``controller``
(the controller id) and ``strategy`` as in the messages.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from streams.influx.line_protocol import LineSpec, LineTemplate, epoch_s, line, series
from streams.messages import AuditRecord, ControllerPlan, DeviceState, GridState, TwinStatus
from streams.runfolder.loading_recorder import LoadingRatings, tick_loading

PHASES = ("A", "B", "C")
CONDUCTORS = ("A", "B", "C", "N")
_PHASE_INDEX = {"A": 0, "B": 1, "C": 2}
_BATTERY = ("e_kwh", "charge_kw", "discharge_kw", "pv_available_kw", "pv_used_kw", "curtailed_kwh")


@dataclass(frozen=True)
class RunTags:
    """The tags every point carries."""

    run: str
    scenario: str
    feeder: str
    time_offset_s: int = 0  # added to every point's time (``--time-base wall``: wall start − simulated start)
    time_scale: float = 1.0
    """Simulated seconds per stamped second (``--time-base wall``: the run's speed), counted from ``time_anchor_s``:
    a live run's points land at the wall time their tick ran, never ahead of it."""
    time_anchor_s: int = 0
    """Simulated epoch second of the run's start (the point that keeps its place under ``time_scale``)."""

    def stamp_s(self, sim_s: int) -> int:
        """The database time of a point at simulated epoch second ``sim_s`` (floor: second precision)."""
        if self.time_scale == 1.0:
            return sim_s + self.time_offset_s
        return self.time_anchor_s + self.time_offset_s + math.floor((sim_s - self.time_anchor_s) / self.time_scale)

    def with_(self, **tags: str) -> dict[str, str]:
        return {"run": self.run, "scenario": self.scenario, "feeder": self.feeder, **tags}


@dataclass(frozen=True)
class GridSelection:
    """Which buses and lines of the feeder's arrays are written (indices into ``bus_ids``/``line_ids``)."""

    bus_ids: tuple[str, ...]
    bus_index: tuple[int, ...]
    line_ids: tuple[str, ...]
    line_index: tuple[int, ...]
    n_lv_feeders: int

    def __post_init__(self) -> None:
        for what, index, n in (("bus_index", self.bus_index, len(self.bus_ids)),
                               ("line_index", self.line_index, len(self.line_ids))):
            bad = [i for i in index if not 0 <= i < n]
            if bad:
                raise ValueError(f"{what} holds {bad[:5]}; expected indices in 0..{n - 1}")
            if len(set(index)) != len(index):
                raise ValueError(f"{what} holds an index twice")


class GridPoints:
    """All points of grid states (or run-folder rows) through one template: bus_voltage, line_current,
    transformer, phase_load, unbalance, voltage_band and network, in that order.

    ``add`` copies a state's numbers into the next row of a buffer (a few numpy assignments: the only work on
    the writer thread that holds the GIL); ``take`` renders every buffered row at once and empties the buffer.
    """

    def __init__(self, *, tags: RunTags, selection: GridSelection) -> None:
        self._stamp_s = tags.stamp_s
        sel = selection
        lines = [LineSpec(series("bus_voltage", tags.with_(bus=sel.bus_ids[b], phase=ph)), "bus_voltage",
                          ("vm_pu", "va_deg")) for b in sel.bus_index for ph in PHASES]
        lines += [LineSpec(series("line_current", tags.with_(line=sel.line_ids[i], phase=c)), "line_current",
                           ("i_ka",)) for i in sel.line_index for c in CONDUCTORS]
        lines += [LineSpec(series("transformer", tags.with_(phase=ph)), "transformer", ("p_kw", "q_kvar"))
                  for ph in PHASES]
        lines += [LineSpec(series("phase_load", tags.with_(lv_feeder=str(f), phase=ph)), "phase_load", ("p_kw",))
                  for f in range(sel.n_lv_feeders) for ph in PHASES]
        lines += [LineSpec(series("unbalance", tags.with_(lv_feeder=str(f))), "unbalance", ("p_unb_kw",))
                  for f in range(sel.n_lv_feeders)]
        lines += [LineSpec(series("voltage_band", tags.with_(phase=ph)), "voltage_band", ("vm_min_pu", "vm_max_pu"))
                  for ph in PHASES]
        lines.append(LineSpec(series("network", tags.with_()), "network",
                              ("p_unb_kw", "loss_kw", "vuf_max_pct", "i_n_max_a", "kappa_trafo")))
        self.template = LineTemplate(lines)
        n_bus, n_line = len(sel.bus_ids), len(sel.line_ids)
        self._bus = None if sel.bus_index == tuple(range(n_bus)) else np.asarray(sel.bus_index, dtype=np.intp)
        self._line = None if sel.line_index == tuple(range(n_line)) else np.asarray(sel.line_index, dtype=np.intp)
        self._nb, self._nl = len(sel.bus_index), len(sel.line_index)
        self._rows = np.empty((16, self.template.n_values))
        self._ts: list[int] = []

    def __len__(self) -> int:
        """Rows buffered."""
        return len(self._ts)

    def add(self, m: GridState) -> int:
        """Buffer the numbers of one grid state; returns the lines it will give (at most)."""
        n = len(self._ts)
        if n == len(self._rows):
            self._rows = np.concatenate((self._rows, np.empty_like(self._rows)))
        row = self._rows[n]
        nb6, nl4 = self._nb * 6, self._nl * 4
        vm, va, i_ka, i_n = m.vm_pu, m.va_deg, m.i_ka, m.i_n_ka
        if self._bus is not None:
            vm, va = vm[self._bus], va[self._bus]
        if self._line is not None:
            i_ka, i_n = i_ka[self._line], i_n[self._line]
        vm_va = row[:nb6].reshape(self._nb, 3, 2)
        vm_va[:, :, 0] = vm
        vm_va[:, :, 1] = va
        current = row[nb6:nb6 + nl4].reshape(self._nl, 4)
        current[:, :3] = i_ka
        current[:, 3] = i_n
        p, q, lo, hi, p_unb = m.p_trafo_kw, m.q_trafo_kvar, m.vm_min_pu, m.vm_max_pu, m.p_unb_kw.tolist()
        row[nb6 + nl4:] = [p[0], q[0], p[1], q[1], p[2], q[2], *m.phase_load_kw.ravel().tolist(), *p_unb,
                           lo[0], hi[0], lo[1], hi[1], lo[2], hi[2],
                           sum(p_unb), m.loss_kw, m.vuf_max_pct, m.i_n_max_a, m.kappa_trafo]
        self._ts.append(self._stamp_s(epoch_s(m.time_utc)))
        return self.template.n_lines

    def take(self) -> tuple[bytes, int]:
        """The lines of every buffered row, and how many; the buffer is emptied."""
        n = len(self._ts)
        rendered = self.template.render(self._rows[:n], self._ts)
        self._ts = []
        return rendered


class MessagePoints:
    """Line protocol of the messages that are not grid states, and the grid states through ``GridPoints``
    (and, with ``ratings``, their ``loading`` points through ``loading``)."""

    def __init__(self, *, tags: RunTags, selection: GridSelection, ratings: LoadingRatings | None = None) -> None:
        if ratings is not None and len(ratings.line_max_i_ka) != len(selection.line_ids):
            raise ValueError(f"ratings: {len(ratings.line_max_i_ka)} line ratings for {len(selection.line_ids)} lines")
        self.tags = tags
        self.grid = GridPoints(tags=tags, selection=selection)
        self.ratings = ratings
        self._line_ids = selection.line_ids
        self._loading = tuple(series("loading", tags.with_(phase=ph)) for ph in PHASES)
        self._twin = series("twin", tags.with_())
        self._prefixes: dict[tuple[str, ...], str] = {}

    def prefix(self, measurement: str, **tags: str) -> str:
        key = (measurement, *tags.values())
        found = self._prefixes.get(key)
        if found is None:
            found = self._prefixes[key] = series(measurement, self.tags.with_(**tags))
        return found

    def loading(self, m: GridState) -> tuple[str, int]:
        """The ``loading`` points of a grid state (none without ratings)."""
        if self.ratings is None:
            return "", 0
        t = tick_loading(m.p_trafo_kw, m.q_trafo_kvar, m.i_ka, self.ratings)
        ts = self.tags.stamp_s(epoch_s(m.time_utc))
        ids = [self._line_ids[i] if i >= 0 else "" for i in t.line_max_index.tolist()]
        return loading_lines(self._loading, t.trafo_pct.tolist(), t.line_max_pct.tolist(), ids, ts)

    def device(self, m: DeviceState) -> tuple[str, int]:
        b = m.battery
        values: dict[str, object] = {
            "phase": m.phase, "phase_index": _PHASE_INDEX.get(m.phase, -1) if m.phase is not None else -1,
            "mode": m.mode.value, "in_transition": m.in_transition, "p_kw": device_p_kw(*m.p_kw),
            "operations_today": m.operations_today, "operations_total": m.operations_total,
            "commands_executed": m.commands_executed, "rejections": m.rejections,
            "unsupplied_kwh": m.unsupplied_kwh,
        }
        if b is not None:
            values |= {name: getattr(b, name) for name in _BATTERY}
        text = line(self.prefix("device", device=m.device_id, kind=m.kind.value), "device", values,
                    self.tags.stamp_s(epoch_s(m.time_utc)))
        return text, 1 if text else 0

    def plan(self, m: ControllerPlan) -> tuple[str, int]:
        text = line(
            self.prefix("controller", controller=m.controller_id, strategy=m.strategy), "controller",
            controller_fields(status=m.status, objective=m.objective, solve_s=m.solve_s, fallbacks=m.fallbacks,
                              switches=m.switches, p_unb_kwh=m.p_unb_kwh,
                              predicted_vm_min_pu=m.predicted_vm_min_pu, predicted_vm_max_pu=m.predicted_vm_max_pu,
                              violations=len(m.violations), repaired=m.repaired),
            self.tags.stamp_s(epoch_s(m.time_utc)))
        return text, 1 if text else 0

    def status(self, m: TwinStatus) -> tuple[str, int]:
        text = line(self._twin, "twin", {
            "tick": m.tick, "lateness_s": m.lateness_s, "overruns": m.overruns, "max_lateness_s": m.max_lateness_s,
            "powerflow_failures": m.powerflow_failures, "readings_missing": m.readings_missing,
            "readings_rejected": m.readings_rejected, "deadletters": m.deadletters,
            "points_written": m.points_written, "points_spooled": m.points_spooled,
            "points_dropped": m.points_dropped,
        }, self.tags.stamp_s(epoch_s(m.time_utc)))
        return text, 1 if text else 0

    def audit(self, m: AuditRecord) -> tuple[str, int]:
        text = line(self.prefix("audit", device=m.device_id, entry=str(m.entry)), "audit", {
            "origin": m.origin, "key_id": m.key_id, "seq": m.seq, "action": m.action, "outcome": m.outcome.value,
            "reason": m.reason.value if m.reason is not None else "", "detail": m.detail, "topic": m.topic,
            "issued_utc": m.issued_utc.isoformat() if m.issued_utc else "", "received_utc": m.received_utc.isoformat(),
            "decided_utc": m.decided_utc.isoformat(),
        }, epoch_s(m.decided_utc))
        return text, 1 if text else 0

    def ltupf(self, step: LtupfStep) -> tuple[str, int]:
        text = line(self.prefix("ltupf", controller=step.controller_id), "ltupf", step.fields(),
                    self.tags.stamp_s(step.start_s))
        return text, 1 if text else 0


def loading_lines(prefixes: Sequence[str], trafo_pct: Sequence[float], line_max_pct: Sequence[float],
                  line_max_id: Sequence[str], ts: int) -> tuple[str, int]:
    """The ``loading`` lines of one tick (phases A, B, C; ``prefixes`` their series): live and export alike.
    ``line_max_id`` is written only where ``line_max_pct`` has a value."""
    out = []
    for prefix, trafo, pct, line_id in zip(prefixes, trafo_pct, line_max_pct, line_max_id, strict=True):
        has_line = math.isfinite(pct) and bool(line_id)
        text = line(prefix, "loading", {"trafo_pct": trafo, "line_max_pct": pct if has_line else None,
                                        "line_max_id": line_id if has_line else None}, ts)
        if text:
            out.append(text)
    return "".join(out), len(out)


def device_p_kw(p_a_kw: float, p_b_kw: float, p_c_kw: float) -> float:
    """The device's total injection, summed in phase order (live and export add the same floats alike)."""
    return float(p_a_kw) + float(p_b_kw) + float(p_c_kw)


def controller_fields(*, status: str, objective: float, solve_s: float, fallbacks: int | None, switches: int,
                      p_unb_kwh: float, predicted_vm_min_pu: float | None, predicted_vm_max_pu: float | None,
                      violations: int, repaired: bool) -> dict[str, object]:
    """Fields of a ``controller`` point; None (or NaN) values are left out."""
    return {
        "objective": objective, "solve_s": solve_s, "status": status, "fallbacks": fallbacks, "switches": switches,
        "p_unb_kwh": p_unb_kwh, "predicted_vm_min_pu": predicted_vm_min_pu,
        "predicted_vm_max_pu": predicted_vm_max_pu, "violations": violations, "repaired": repaired,
    }


@dataclass
class LtupfStep:
    """A plan's first step: what LTUPF predicted and, over the ticks in [start, end), what the power flow gave."""

    controller_id: str
    start_s: int
    end_s: float
    predicted_vm_min_pu: float | None
    predicted_vm_max_pu: float | None
    actual_vm_min_pu: float = math.inf
    actual_vm_max_pu: float = -math.inf
    ticks: int = 0

    def observe(self, vm_min_pu: Sequence[float], vm_max_pu: Sequence[float]) -> None:
        # Comparisons with NaN (a phase without a result) are false, so NaN never wins.
        for v in vm_min_pu:
            if v < self.actual_vm_min_pu:
                self.actual_vm_min_pu = float(v)
        for v in vm_max_pu:
            if v > self.actual_vm_max_pu:
                self.actual_vm_max_pu = float(v)
        self.ticks += 1

    def fields(self) -> dict[str, object]:
        lo = self.actual_vm_min_pu if math.isfinite(self.actual_vm_min_pu) else None
        hi = self.actual_vm_max_pu if math.isfinite(self.actual_vm_max_pu) else None
        p_lo, p_hi = self.predicted_vm_min_pu, self.predicted_vm_max_pu
        return {
            "predicted_vm_min_pu": p_lo, "actual_vm_min_pu": lo,
            "error_vm_min_pu": p_lo - lo if p_lo is not None and lo is not None else None,
            "predicted_vm_max_pu": p_hi, "actual_vm_max_pu": hi,
            "error_vm_max_pu": p_hi - hi if p_hi is not None and hi is not None else None,
        }


class LtupfTracker:
    """Pairs each plan's LTUPF prediction of its first step with the power flow over that step.

    A plan without a prediction (no LTUPF check, or a held plan) gives no point. A step is complete when a grid
    state at or after its end arrives; ``finish()`` returns the steps still open (the run ended inside them) that
    saw at least one tick.
    """

    def __init__(self) -> None:
        self._open: list[LtupfStep] = []

    def plan(self, m: ControllerPlan) -> None:
        if m.predicted_vm_min_pu is None and m.predicted_vm_max_pu is None:
            return
        start = m.step_start_utc
        self._open.append(LtupfStep(
            controller_id=m.controller_id, start_s=epoch_s(start),
            end_s=(start + timedelta(seconds=m.step_s)).timestamp(),
            predicted_vm_min_pu=m.predicted_vm_min_pu, predicted_vm_max_pu=m.predicted_vm_max_pu,
        ))

    def state(self, time_utc: datetime, vm_min_pu: Sequence[float], vm_max_pu: Sequence[float]) -> list[LtupfStep]:
        """Add one tick; returns the steps this tick completed."""
        if not self._open:
            return []
        t = time_utc.timestamp()
        done = [s for s in self._open if t >= s.end_s]
        if done:
            self._open = [s for s in self._open if t < s.end_s]
        for s in self._open:
            if t >= s.start_s:
                s.observe(vm_min_pu, vm_max_pu)
        return [s for s in done if s.ticks]

    def finish(self) -> list[LtupfStep]:
        done, self._open = [s for s in self._open if s.ticks], []
        return done
