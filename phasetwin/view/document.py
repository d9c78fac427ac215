"""One browser session of the view: a Bokeh document over a ``Timeline``.

Panels: the one-line diagram (bus colour = |V| of the worst phase, line width = loading, PSD/STS/PESS customers
marked in their phase colour, hover), per-phase transformer P, neutral current, P_unb and the voltage envelope
(the no-control reference dashed), device lanes with the controller's plan for its horizon, the alarms with an
acknowledge button, and a slider that moves the whole page to any recorded tick. A live timeline is polled
every ``POLL_MS``; while "follow" is on the page jumps to each new tick (the history charts follow every
``CHART_REFRESH_S``: redrawing six charts per tick is most of a page update's cost in the browser).

Models the browser tests read are named: ``buses``, ``lines``, ``tick``, ``alarms``, ``slider``.
"""

from __future__ import annotations

import math
import time
from datetime import datetime

import numpy as np
from bokeh.document import Document
from bokeh.layouts import column, row
from bokeh.models import (
    CategoricalScale,
    ColumnDataSource,
    CustomJS,
    FactorRange,
    HoverTool,
    LinearColorMapper,
    Range1d,
)
from bokeh.models.annotations import BoxAnnotation, ColorBar, Span
from bokeh.models.widgets import Button, DataTable, Div, Slider, TableColumn, Toggle
from bokeh.palettes import RdYlBu11
from bokeh.plotting import figure

from phasetwin.view.timeline import PHASES, Decision, GridTick, Timeline
from twin.figures.style import PHASE_COLOURS

POLL_MS = 50
CHART_REFRESH_S = 2.0
"""Live: the history charts are redrawn at most this often; the diagram, values and alarms at every tick."""
SHOWN_JS = """
const tick = src.data.tick[0];
const received = src.data.received_ms[0];
const sent = src.data.sent_ms[0];
const arrived = Date.now();
// Two frames: the first runs before the paint of this change, the second after it.
requestAnimationFrame(() => requestAnimationFrame(() => {
  window.__pt_shown = window.__pt_shown || [];
  window.__pt_shown.push({tick: tick, received_ms: received, sent_ms: sent, arrived_ms: arrived,
                         shown_ms: Date.now()});
}));
"""


def worst_phase_vm_pu(vm_pu: np.ndarray) -> np.ndarray:
    """Per bus, the |V| of the phase farthest from 1 p.u. (NaN phases skipped; all NaN gives NaN)."""
    deviation = np.where(np.isfinite(vm_pu), np.abs(vm_pu - 1.0), -1.0)
    worst = np.take_along_axis(vm_pu, deviation.argmax(axis=1)[:, None], axis=1)[:, 0]
    return np.where(np.isfinite(vm_pu).any(axis=1), worst, np.nan).astype(float)


def loading_pct(i_max_ka: np.ndarray, max_i_ka: np.ndarray) -> np.ndarray:
    return np.asarray(100.0 * i_max_ka / max_i_ka, dtype=float)


def line_width_px(loading: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 + 6.0 * np.clip(np.nan_to_num(loading, nan=0.0), 0.0, 150.0) / 100.0, dtype=float)


def _ms(t: datetime) -> float:
    return t.timestamp() * 1000.0


def values_text(t: GridTick) -> str:
    """The tick's headline values as the page prints them (the tests compare them with the Parquet tables)."""
    p = " / ".join(f"{v:.2f}" for v in t.p_trafo_kw)
    return (f"<b>tick {t.tick}</b> · {t.time_utc:%Y-%m-%d %H:%M:%S} UTC · P<sub>A/B/C</sub> {p} kW · "
            f"P<sub>unb</sub> {t.p_unb_kw:.3f} kW · I<sub>N</sub> {t.i_n_max_a:.2f} A · "
            f"|V| {np.nanmin(t.vm_min_pu):.4f} – {np.nanmax(t.vm_max_pu):.4f} p.u. · VUF {t.vuf_max_pct:.2f} %")


class ViewSession:
    """The models of one document and the callbacks that move them."""

    def __init__(self, timeline: Timeline, doc: Document) -> None:
        self.timeline = timeline
        self.doc = doc
        self.index = -1
        self.seen = 0
        self.alarm_rows = -1
        self.charts_at_s = -math.inf
        self.shown_count = 0
        self.energy_at = -10
        d = timeline.drawing
        self.bus_index = d.bus_index()
        lo, hi = timeline.vm_limits_pu
        self.buses = ColumnDataSource(name="buses", data={
            "x": d.x, "y": d.y, "bus": list(d.bus_ids), "vm_worst_pu": np.full(len(d.bus_ids), np.nan),
            **{f"vm_{p.lower()}_pu": np.full(len(d.bus_ids), np.nan) for p in PHASES}})
        ends = d.line_ends
        self.lines = ColumnDataSource(name="lines", data={
            "xs": [[d.x[a], d.x[b]] for a, b in ends], "ys": [[d.y[a], d.y[b]] for a, b in ends],
            "line": list(d.line_ids), "loading_pct": np.zeros(len(ends)), "width": np.ones(len(ends))})
        self.customers = ColumnDataSource(data=self._customer_data(-1))
        self.tick = ColumnDataSource(name="tick", data={"tick": [-1], "index": [-1], "received_ms": [math.nan],
                                                        "sent_ms": [math.nan]})
        self.tick.js_on_change("data", CustomJS(args={"src": self.tick}, code=SHOWN_JS))
        self.series = ColumnDataSource(data=timeline.series())
        self.reference = ColumnDataSource(data=self._reference_data())
        self.lanes = ColumnDataSource(data={"x": [], "width": [], "device": [], "colour": [], "phase": []})
        self.energy = ColumnDataSource(data={"xs": [], "ys": [], "device": []})
        self.plan_moves = ColumnDataSource(data={"x": [], "device": [], "phase": [], "colour": []})
        self.alarm_table = ColumnDataSource(name="alarms", data=self._alarm_data(-1))
        # Tagged onto the header so that the tick source is part of the document (nothing draws it).
        self.header = Div(text=f"<h2>phasetwin — {timeline.title}</h2>", name="header", tags=[self.tick])
        # Fixed sizes: a Div whose text changes would otherwise lay the whole page out again on every tick.
        self.values = Div(text="waiting for the first tick…", name="values", css_classes=["pt-values"], width=1180,
                          height=24)
        self.plan_text = Div(text="", name="plan", width=520, height=80)
        self.alarm_status = Div(text="", name="alarm_status", width=600, height=24)
        self.slider = Slider(start=0, end=max(1, timeline.count() - 1), value=0, step=1, title="tick",
                             name="slider", sizing_mode="stretch_width")
        self.follow = Toggle(label="follow live", active=timeline.live, name="follow", width=120)
        self.ack = Button(label="Acknowledge selected", name="ack", button_type="warning", width=180)
        self.cursors: list[Span] = []
        self.horizons: list[BoxAnnotation] = []
        mapper = LinearColorMapper(palette=list(RdYlBu11), low=lo - 0.02, high=hi + 0.02, nan_color="#cccccc")
        self.diagram = self._diagram(mapper)
        charts = self._charts()
        self.slider.on_change("value", lambda attr, old, new: self._scrubbed(int(new)))
        self.ack.on_click(self._acknowledge)
        table = DataTable(source=self.alarm_table, name="alarm_table", height=180, reorderable=False,
                          sizing_mode="stretch_width",
                          columns=[TableColumn(field=f, title=t) for f, t in (
                              ("id", "#"), ("kind", "alarm"), ("subject", "where"), ("text", "value"),
                              ("raised", "raised (UTC)"), ("cleared", "cleared (UTC)"), ("state", "state"))])
        doc.title = f"phasetwin view — {timeline.title}"
        doc.add_root(column(
            self.header, row(self.slider, self.follow, sizing_mode="stretch_width"), self.values,
            row(self.diagram, column(*charts[:2])), row(*charts[2:4]),
            row(charts[4], column(charts[5], self.plan_text)),
            column(self.alarm_status, row(self.ack), table, sizing_mode="stretch_width"),
            sizing_mode="stretch_width"))
        if timeline.count():
            self.refresh_series()
            self.show(timeline.count() - 1 if timeline.live else 0)
        if timeline.live:
            doc.add_periodic_callback(self.poll, POLL_MS)

    # -- building ------------------------------------------------------------------------------------------
    def _diagram(self, mapper: LinearColorMapper) -> figure:
        d = self.timeline.drawing
        pad = 0.03 * max(float(np.ptp(d.x)), float(np.ptp(d.y)), 1e-6)
        fig = figure(title="one-line: bus colour = |V| of the worst phase, line width = loading", name="diagram",
                     width=620, height=560, match_aspect=True, tools="pan,wheel_zoom,box_zoom,reset,save",
                     x_range=Range1d(start=float(d.x.min()) - pad, end=float(d.x.max()) + pad),
                     y_range=Range1d(start=float(d.y.min()) - pad, end=float(d.y.max()) + pad))
        fig.axis.visible = False
        fig.grid.visible = False
        lines = fig.multi_line("xs", "ys", source=self.lines, line_width="width", line_color="#777777")
        buses = fig.scatter("x", "y", source=self.buses, size=5, line_color=None, name="bus_glyph",
                            fill_color={"field": "vm_worst_pu", "transform": mapper})
        fig.scatter("x", "y", source=self.customers, marker="triangle", size=13, fill_color="colour",
                    line_color="black", name="customer_glyph")
        fig.add_tools(HoverTool(renderers=[buses], tooltips=[
            ("bus", "@bus"), ("|V| A/B/C", "@vm_a_pu{0.0000} / @vm_b_pu{0.0000} / @vm_c_pu{0.0000} p.u."),
            ("worst", "@vm_worst_pu{0.0000} p.u.")]))
        fig.add_tools(HoverTool(renderers=[lines], tooltips=[("line", "@line"), ("loading", "@loading_pct{0.0} %")]))
        fig.add_layout(ColorBar(color_mapper=mapper, title="|V| p.u."), "right")
        return fig

    def _time_figure(self, title: str, unit: str, height: int = 250, factors: list[str] | None = None) -> figure:
        fig = figure(title=title, x_axis_type="datetime", width=560, height=height, tools="pan,xwheel_zoom,reset",
                     y_axis_label=unit)
        if factors is not None:
            fig.y_range = FactorRange(factors=factors)
            fig.y_scale = CategoricalScale()
        cursor = Span(location=0, dimension="height", line_color="black", line_dash="dotted")
        fig.add_layout(cursor)
        self.cursors.append(cursor)
        return fig

    def _charts(self) -> list[figure]:
        trafo = self._time_figure("transformer P per phase (dashed: no control)", "kW")
        for p in PHASES:
            trafo.line("time_utc", f"p_{p.lower()}_kw", source=self.series, color=PHASE_COLOURS[p], legend_label=p)
            trafo.line("time_utc", f"p_{p.lower()}_kw", source=self.reference, color=PHASE_COLOURS[p],
                       line_dash="dashed")
        unb = self._time_figure("P_unb (dashed: no control)", "kW", height=200)
        unb.line("time_utc", "p_unb_kw", source=self.series, color="black")
        unb.line("time_utc", "p_unb_kw", source=self.reference, color="black", line_dash="dashed")
        neutral = self._time_figure("largest neutral current (dashed: no control)", "A")
        neutral.line("time_utc", "i_n_max_a", source=self.series, color=PHASE_COLOURS["N"])
        neutral.line("time_utc", "i_n_max_a", source=self.reference, color=PHASE_COLOURS["N"], line_dash="dashed")
        lo, hi = self.timeline.vm_limits_pu
        envelope = self._time_figure("voltage envelope per phase, LV buses", "p.u.")
        for p in PHASES:
            envelope.varea("time_utc", f"vm_min_{p.lower()}_pu", f"vm_max_{p.lower()}_pu", source=self.series,
                           fill_color=PHASE_COLOURS[p], fill_alpha=0.25, legend_label=p)
            envelope.line("time_utc", f"vm_min_{p.lower()}_pu", source=self.reference, color=PHASE_COLOURS[p],
                          line_dash="dashed")
        for limit in (lo, hi):
            envelope.add_layout(Span(location=limit, dimension="width", line_color="red", line_dash="dashed"))
        lanes = self._time_figure("devices: phase in force, the controller's plan ahead shaded", "device",
                                  height=300, factors=self._device_names() or ["(no devices)"])
        lanes.rect("x", "device", width="width", height=0.8, source=self.lanes, fill_color="colour",
                   line_color=None)
        lanes.scatter("x", "device", source=self.plan_moves, marker="diamond", size=11, fill_color="colour",
                      line_color="black")
        horizon = BoxAnnotation(fill_color="#999999", fill_alpha=0.15, visible=False)
        lanes.add_layout(horizon)
        self.horizons.append(horizon)
        self.lanes_figure = lanes
        energy = self._time_figure("PESS stored energy", "kWh", height=200)
        energy.multi_line("xs", "ys", source=self.energy, color="#CC79A7", line_width=2)
        energy.add_tools(HoverTool(tooltips=[("device", "@device")]))
        energy.x_range = trafo.x_range
        for fig in (trafo, unb, neutral, envelope):
            fig.x_range = trafo.x_range
        lanes.x_range = trafo.x_range
        for fig in (trafo, envelope):
            fig.legend.location = "top_left"
            fig.legend.orientation = "horizontal"
        return [trafo, unb, neutral, envelope, lanes, energy]

    def _device_names(self) -> list[str]:
        return list(self.timeline.device_samples())

    def _customer_data(self, tick: int) -> dict[str, list[object]]:
        d = self.timeline.drawing
        samples = self.timeline.device_samples()
        data: dict[str, list[object]] = {"x": [], "y": [], "customer": [], "device": [], "phase": [], "colour": []}
        for c in self.timeline.customers:
            if not c.device_id or c.bus not in self.bus_index:
                continue
            phase = c.phases[0] if len(c.phases) == 1 else c.phases
            before = [s for s in samples.get(c.device_id, []) if s.tick <= tick]
            if before and before[-1].phase:
                phase = before[-1].phase
            i = self.bus_index[c.bus]
            data["x"].append(float(d.x[i]))
            data["y"].append(float(d.y[i]))
            data["customer"].append(c.id)
            data["device"].append(c.device_id)
            data["phase"].append(phase)
            data["colour"].append(PHASE_COLOURS.get(phase, "#ffffff"))
        return data

    def _reference_data(self) -> dict[str, object]:
        ref = self.timeline.reference
        series = self.timeline.series()
        if ref is None or len(ref.p_unb_kw) != len(series["time_utc"]):
            return {k: [] for k in ("time_utc", "p_unb_kw", "i_n_max_a", *(f"p_{p.lower()}_kw" for p in PHASES),
                                    *(f"vm_min_{p.lower()}_pu" for p in PHASES))}
        return {"time_utc": series["time_utc"], "p_unb_kw": ref.p_unb_kw, "i_n_max_a": ref.i_n_max_a,
                **{f"p_{p.lower()}_kw": ref.p_trafo_kw[:, i] for i, p in enumerate(PHASES)},
                **{f"vm_min_{p.lower()}_pu": ref.vm_min_pu[:, i] for i, p in enumerate(PHASES)}}

    def _alarm_data(self, tick: int) -> dict[str, list[object]]:
        rows = [a for a in self.timeline.alarms.snapshot() if a.raised_tick <= tick]
        return {
            "id": [a.id for a in rows], "kind": [a.kind.value for a in rows], "subject": [a.subject for a in rows],
            "text": [a.text for a in rows], "raised": [f"{a.raised_utc:%Y-%m-%d %H:%M}" for a in rows],
            "cleared": [f"{a.cleared_utc:%Y-%m-%d %H:%M}" if a.cleared_utc is not None and a.cleared_tick is not None
                        and a.cleared_tick <= tick else "" for a in rows],
            "state": [("active" if a.active_at(tick) else "cleared") + (", acknowledged" if a.acknowledged else "")
                      for a in rows],
        }

    # -- moving ----------------------------------------------------------------------------------------
    def refresh_series(self) -> None:
        """Bring the charts up to the ticks recorded so far: only the new rows go to the browser."""
        count = self.timeline.count()
        if self.seen == 0 or count < self.seen:
            self.series.data = self.timeline.series()
            self.reference.data = self._reference_data()
        elif count > self.seen:
            self.series.stream(self.timeline.series(self.seen))  # type: ignore[arg-type]
        self._refresh_devices()
        self.slider.end = max(1, count - 1)
        self.seen = count

    def _refresh_devices(self) -> None:
        if not self.timeline.count():
            return
        tick_ms = self.timeline.tick_s * 1000.0
        start_ms = _ms(self.timeline.at(0).time_utc) - self.timeline.at(0).tick * tick_ms
        lanes: dict[str, list[object]] = {"x": [], "width": [], "device": [], "colour": [], "phase": []}
        energy: dict[str, list[object]] = {"xs": [], "ys": [], "device": []}
        samples_by_device = self.timeline.device_samples()
        for device, samples in samples_by_device.items():
            # One bar per stretch of ticks on the same phase (a day of 1-min ticks is a few bars, not 1,440).
            k = 0
            while k < len(samples):
                j = k
                while (j + 1 < len(samples) and samples[j + 1].phase == samples[k].phase
                       and samples[j + 1].tick == samples[j].tick + 1):
                    j += 1
                first, last, phase = samples[k].tick, samples[j].tick, samples[k].phase
                lanes["x"].append(start_ms + (first + last + 1) / 2 * tick_ms)
                lanes["width"].append((last - first + 1) * tick_ms)
                lanes["device"].append(device)
                lanes["phase"].append(phase or "off")
                lanes["colour"].append(PHASE_COLOURS.get(phase or "", "#dddddd"))
                k = j + 1
            stored = [(start_ms + (s.tick + 1) * tick_ms, s.e_kwh) for s in samples if s.e_kwh is not None]
            if stored:
                energy["xs"].append([x for x, _ in stored])
                energy["ys"].append([e for _, e in stored])
                energy["device"].append(device)
        self.lanes.data = lanes
        if energy["xs"] and (self.timeline.count() - self.energy_at >= 10 or self.timeline.finished
                             or not self.timeline.live):
            self.energy.data = energy  # every tenth tick live: a whole redraw of a small chart
            self.energy_at = self.timeline.count()
        names = list(samples_by_device)
        if names and names != list(self.lanes_figure.y_range.factors):  # type: ignore[attr-defined]
            self.lanes_figure.y_range.factors = names  # type: ignore[attr-defined]

    def show(self, index: int, *, move_cursors: bool = True) -> None:
        """Move the page to the ``index``-th recorded tick (``move_cursors=False``: the charts stay as drawn)."""
        count = self.timeline.count()
        if not count:
            return
        index = min(max(index, 0), count - 1)
        t = self.timeline.at(index)
        self.index = index
        d = self.timeline.drawing
        vm = np.asarray(t.vm_pu, dtype=float)
        # Only the changed columns go to the browser (never the coordinates).
        self.buses.data.update({"vm_worst_pu": worst_phase_vm_pu(vm),
                                **{f"vm_{p.lower()}_pu": vm[:, i] for i, p in enumerate(PHASES)}})
        loading = loading_pct(np.asarray(t.i_max_ka, dtype=float), d.line_max_i_ka)
        self.lines.data.update({"loading_pct": loading, "width": line_width_px(loading)})
        customers = self._customer_data(t.tick)
        if customers["phase"] != self.customers.data["phase"]:
            self.customers.data = customers
        for cursor in self.cursors if move_cursors else ():
            cursor.location = _ms(t.time_utc)
        self._show_plan(self.timeline.decision_at(t.tick), t)
        self.values.text = values_text(t)
        self._show_alarms(t.tick)
        if self.slider.value != index:
            self.slider.value = index
        received_ms = t.received_wall_s * 1000.0 if math.isfinite(t.received_wall_s) else math.nan
        self.tick.data = {"tick": [t.tick], "index": [index], "received_ms": [received_ms],
                          "sent_ms": [time.time() * 1000.0]}

    def _show_plan(self, decision: Decision | None, t: GridTick) -> None:
        horizon = self.horizons[0]
        if decision is None:
            horizon.visible = False
            self.plan_moves.data = {"x": [], "device": [], "phase": [], "colour": []}
            self.plan_text.text = "<b>controller plan</b>: no decision yet" if self.timeline.control_period_s \
                else "<b>controller plan</b>: no controller in this run"
            return
        start_ms = _ms(decision.step_start_utc)
        end_ms = start_ms + decision.step_s * max(decision.n_steps, 1) * 1000.0
        horizon.left, horizon.right, horizon.visible = start_ms, end_ms, True
        names = set(self._device_names())
        moves = [m for m in decision.moves if m.device_id in names and m.phase]
        self.plan_moves.data = {"x": [start_ms] * len(moves), "device": [m.device_id for m in moves],
                                "phase": [m.phase for m in moves],
                                "colour": [PHASE_COLOURS.get(m.phase or "", "#ffffff") for m in moves]}
        predicted = ("" if decision.predicted_vm_min_pu is None else
                     f"<br>predicted |V| first step {decision.predicted_vm_min_pu:.4f} – "
                     f"{decision.predicted_vm_max_pu or math.nan:.4f} p.u.")
        self.plan_text.text = (
            f"<b>controller plan</b> from {decision.step_start_utc:%H:%M} UTC for {decision.n_steps} × "
            f"{decision.step_s / 60:.0f} min ({decision.status})<br>forecast P<sub>unb</sub> over the horizon "
            f"{decision.p_unb_kwh:.2f} kWh{predicted}<br>{len(moves)} planned phase move(s)")

    def _show_alarms(self, tick: int) -> None:
        data = self._alarm_data(tick)
        if data != self.alarm_table.data:  # the table redraws whole: only when a row changed
            self.alarm_table.data = data
        alarms = self.timeline.alarms.snapshot()
        active = [a for a in alarms if a.active_at(tick)]
        unacked = [a for a in active if not a.acknowledged]
        text = (f"<b>alarms</b>: {len(active)} active, {len(unacked)} not acknowledged, "
                f"{len(alarms)} in the run so far")
        if text != self.alarm_status.text:
            self.alarm_status.text = text
        self.alarm_rows = len(alarms)

    def _scrubbed(self, index: int) -> None:
        """The operator moved the slider: show that tick; away from the newest, stop following the live run."""
        if index == self.index:
            return
        if index < self.timeline.count() - 1:
            self.follow.active = False
        self.show(index)

    def _acknowledge(self) -> None:
        ids = [int(self.alarm_table.data["id"][i]) for i in self.alarm_table.selected.indices]
        if ids:
            self.timeline.alarms.acknowledge(ids)
        self._show_alarms(self.timeline.at(self.index).tick if self.index >= 0 else -1)

    def poll(self) -> None:
        """Live: take the ticks that arrived since the last poll; follow the newest when asked. The changes go
        to the browser as one message (``hold("combine")``), drawn in one frame."""
        count = self.timeline.count()
        now_s = time.monotonic()
        new_tick = count != self.shown_count
        charts_due = count != self.seen and now_s - self.charts_at_s >= CHART_REFRESH_S
        if not (new_tick or charts_due):
            return
        self.doc.hold("combine")
        try:
            if charts_due:
                self.charts_at_s = now_s
                self.refresh_series()
            self.slider.end = max(1, count - 1)
            if self.follow.active and new_tick:
                self.show(count - 1, move_cursors=charts_due)
            elif self.follow.active:
                for cursor in self.cursors:
                    cursor.location = _ms(self.timeline.at(count - 1).time_utc)
            self.shown_count = count
        finally:
            self.doc.unhold()


def make_document(timeline: Timeline, doc: Document) -> ViewSession:
    return ViewSession(timeline, doc)
