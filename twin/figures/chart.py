"""One figure: panels stacked over a shared x axis (time of day, or any numeric axis), written as PNG or SVG.

Only matplotlib's object API is used (``Figure`` + the Agg canvas, no ``pyplot``): nothing global is touched and
no display is needed. ``write_figure`` returns what it drew (``Drawn.plotted``: the y values of every line, band
and lane as matplotlib holds them), so tests can compare a figure with the table it came from.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.dates as mdates
import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator, ScalarFormatter

from twin.figures import style


@dataclass(frozen=True)
class Series:
    """A line. ``phase`` (A/B/C/N) picks the phase's colour; ``dashed`` marks a reference (no control, before)."""

    label: str
    values: np.ndarray
    phase: str | None = None
    dashed: bool = False
    colour: str | None = None
    step: bool = False


@dataclass(frozen=True)
class Band:
    """A filled band between ``low`` and ``high`` (e.g. the lowest and highest voltage over the buses)."""

    label: str
    low: np.ndarray
    high: np.ndarray
    phase: str | None = None
    colour: str | None = None


@dataclass(frozen=True)
class Lanes:
    """A state timeline: one row per item, each stretch coloured by its state (None: not drawn)."""

    rows: Mapping[str, Sequence[str | None]]
    colours: dict[str, str]


@dataclass(frozen=True)
class Panel:
    y_label: str
    series: tuple[Series, ...] = ()
    bands: tuple[Band, ...] = ()
    lanes: Lanes | None = None
    limits: tuple[tuple[float, str], ...] = ()  # (value, label): a horizontal reference line
    y_min: float | None = None
    x_marks: tuple[float, ...] = ()  # vertical separators (e.g. day breaks) on a numeric x axis


@dataclass(frozen=True)
class Drawn:
    """A written figure and what it shows: label → y values drawn (envelopes: `label`, `label [min]`,
    `label [max]`; bands: `label [low]`, `label [high]`; lanes: `label [state]` → states; a label drawn
    again in a lower panel is keyed `<its y label>: label`)."""

    path: Path
    title: str
    plotted: dict[str, np.ndarray] = field(default_factory=dict)
    bin_ticks: int = 1  # consecutive x points folded into one drawn point (1: every point drawn)


def envelope_bin(n: int, max_points: int = style.MAX_POINTS) -> int:
    """How many consecutive points one drawn point stands for, so that at most ``max_points`` are drawn."""
    return max(1, math.ceil(n / max_points))


def _fold(values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(min, mean, max) over consecutive groups of ``k`` values (the last group may be shorter)."""
    v = np.asarray(values, dtype=float)
    if k == 1:
        return v, v, v
    pad = (-len(v)) % k
    grouped = np.concatenate([v, np.full(pad, np.nan)]).reshape(-1, k)
    with np.errstate(all="ignore"):
        empty = np.all(np.isnan(grouped), axis=1)
        safe = np.where(empty[:, None], 0.0, grouped)
        lo, hi = np.nanmin(safe, axis=1), np.nanmax(safe, axis=1)
        mean = np.nanmean(safe, axis=1)
    nan = np.where(empty, np.nan, 0.0)
    return lo + nan, mean + nan, hi + nan


def write_figure(path: Path, panels: Sequence[Panel], *, title: str, subtitle: str = "",
                 x: pd.DatetimeIndex | np.ndarray, x_label: str | None = None, tz: str = "UTC",
                 max_points: int = style.MAX_POINTS) -> Drawn:
    """Draw ``panels`` one below the other over ``x`` and write ``path`` (.png or .svg, overwritten).

    A ``DatetimeIndex`` (aware) is shown as time of day in ``tz`` with the date where it changes; longer series
    than ``max_points`` are folded into min/mean/max envelopes over consecutive points."""
    is_time = isinstance(x, pd.DatetimeIndex)
    n = len(x)
    k = envelope_bin(n, max_points)
    if isinstance(x, pd.DatetimeIndex):
        local = x.tz_convert(tz).tz_localize(None)
        step = (local[1] - local[0]) if n > 1 else pd.Timedelta(seconds=1)
        xs: np.ndarray = np.asarray(local.to_pydatetime())
        x_end = local[-1] + step if n else None
    else:
        xs = np.asarray(x, dtype=float)
        x_end = xs[-1] + (xs[1] - xs[0] if n > 1 else 1.0) if n else None
    x_drawn = xs[::k]
    top_in, bottom_in, gap_in = (0.62 if subtitle else 0.42), 0.55, 0.18
    if panels and panels[0].lanes is not None:
        top_in += 0.22  # the lanes' legend sits above them
    gap_in += 0.22 * any(p.lanes is not None for p in panels[1:])
    height_in = top_in + bottom_in + style.PANEL_HEIGHT_IN * len(panels) + gap_in * (len(panels) - 1)
    fig = Figure(figsize=(style.FIGURE_WIDTH_IN, height_in), dpi=style.DPI)
    FigureCanvasAgg(fig)
    # Fixed margins instead of a layout engine: the engine draws every figure twice (a third of its cost).
    lane_chars = max((len(name) for p in panels if p.lanes is not None for name in p.lanes.rows), default=0)
    left_in = max(0.82, 0.3 + 0.075 * lane_chars)
    fig.subplots_adjust(left=left_in / style.FIGURE_WIDTH_IN, right=0.965, top=1 - top_in / height_in,
                        bottom=bottom_in / height_in, hspace=gap_in / style.PANEL_HEIGHT_IN)
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    plotted: dict[str, np.ndarray] = {}
    for ax, panel in zip(axes, panels, strict=True):
        _draw_panel(ax, panel, x_drawn=x_drawn, xs=xs, x_end=x_end, k=k, plotted=plotted, is_time=is_time)
    last = axes[-1]
    if is_time:
        locator = mdates.AutoDateLocator(minticks=4, maxticks=10)
        last.xaxis.set_major_locator(locator)
        last.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, show_offset=True))
        last.set_xlabel(x_label or f"time ({tz})")
    else:
        last.set_xlabel(x_label or "")
    if n:
        last.set_xlim(xs[0], x_end)
    fig.suptitle(f"{title}\n{subtitle}" if subtitle else title, fontsize=11, y=1 - 0.06 / height_in, va="top")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".svg":
        # Text as text (not glyph outlines): smaller files, searchable labels.
        with rc_context({"svg.fonttype": "none", "svg.hashsalt": "phasetwin"}):
            fig.savefig(path, metadata={"Date": None})
    else:
        fig.savefig(path)
    return Drawn(path=path, title=title, plotted=plotted, bin_ticks=k)


def _colour(phase: str | None, colour: str | None, index: int) -> str:
    if colour is not None:
        return colour
    if phase is not None:
        return style.PHASE_COLOURS[phase]
    return style.OTHER_COLOURS[index % len(style.OTHER_COLOURS)]


def _draw_panel(ax: Axes, panel: Panel, *, x_drawn: np.ndarray, xs: np.ndarray, x_end: object, k: int,
                plotted: dict[str, np.ndarray], is_time: bool) -> None:
    handles: list[object] = []

    def key(label: str) -> str:
        """The label, or for a label an upper panel already drew, "<y label>: <label>"."""
        return label if label not in plotted else f"{panel.y_label}: {label}"

    for j, b in enumerate(panel.bands):
        colour = _colour(b.phase, b.colour, j)
        lo, _, _ = _fold(b.low, k)
        _, _, hi = _fold(b.high, k)
        ax.fill_between(x_drawn, lo, hi, color=colour, alpha=0.25, linewidth=0, step="post" if k > 1 else None)
        ax.plot(x_drawn, lo, color=colour, linewidth=0.9, drawstyle="steps-post" if k > 1 else "default")
        ax.plot(x_drawn, hi, color=colour, linewidth=0.9, drawstyle="steps-post" if k > 1 else "default")
        handles.append(Patch(facecolor=colour, edgecolor=colour, alpha=0.6, label=b.label))
        plotted[key(f"{b.label} [low]")], plotted[key(f"{b.label} [high]")] = lo, hi
    for j, s in enumerate(panel.series):
        colour = _colour(s.phase, s.colour, j)
        lo, mean, hi = _fold(s.values, k)
        style_kw = {"color": colour, "linewidth": 1.4 if not s.dashed else 1.2,
                    "linestyle": (0, (5, 2)) if s.dashed else "-"}
        if k > 1:
            ax.fill_between(x_drawn, lo, hi, color=colour, alpha=0.18 if not s.dashed else 0.10, linewidth=0,
                            step="post")
            plotted[key(f"{s.label} [min]")], plotted[key(f"{s.label} [max]")] = lo, hi
        (line,) = ax.plot(x_drawn, mean, drawstyle="steps-post" if (s.step or k > 1) else "default",
                          label=s.label + (" (min/mean/max)" if k > 1 else ""), **style_kw)  # type: ignore[arg-type]
        handles.append(line)
        plotted[key(s.label)] = np.asarray(line.get_ydata(), dtype=float)
    if panel.lanes is not None:
        _draw_lanes(ax, panel.lanes, xs=xs, x_end=x_end, plotted=plotted, is_time=is_time)
        handles += [Patch(facecolor=c, label=state) for state, c in panel.lanes.colours.items()]
    for value, label in panel.limits:
        line = ax.axhline(value, color=style.LIMIT_COLOUR, linewidth=1.0, linestyle=":", label=label or None)
        if label:
            handles.append(line)
    for mark in panel.x_marks:
        ax.axvline(mark, color="#999999", linewidth=0.8, linestyle=(0, (2, 3)))
    ax.set_ylabel(panel.y_label)
    if panel.lanes is None:
        ax.yaxis.set_major_locator(MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]))
        formatter = ScalarFormatter(useOffset=False)
        formatter.set_scientific(False)
        ax.yaxis.set_major_formatter(formatter)
        if panel.y_min is not None:
            ax.set_ylim(bottom=panel.y_min)
    ax.grid(True, axis="both" if panel.lanes is None else "x", color="#e6e6e6", linewidth=0.8)
    ax.set_axisbelow(True)
    if handles and panel.lanes is not None:  # above the lanes, which fill the axes
        ax.legend(handles=handles, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=len(handles),
                  fontsize="small", frameon=False, borderaxespad=0.1)
    elif handles:
        ax.legend(handles=handles, loc="best", fontsize="small", framealpha=0.9,
                  ncols=1 if len(handles) <= 6 else (2 if len(handles) <= 12 else 3))


def _draw_lanes(ax: Axes, lanes: Lanes, *, xs: np.ndarray, x_end: object, plotted: dict[str, np.ndarray],
                is_time: bool) -> None:
    """One row per item; consecutive equal states become one bar."""
    edges = np.append(mdates.date2num(xs) if is_time else xs.astype(float),
                      mdates.date2num(x_end) if is_time else float(x_end))  # type: ignore[arg-type]
    names = list(lanes.rows)
    for row, name in enumerate(names):
        states = list(lanes.rows[name])
        plotted[f"{name} [state]"] = np.array(states, dtype=object)
        start = 0
        for i in range(1, len(states) + 1):
            if i == len(states) or states[i] != states[start]:
                state = states[start]
                if state is not None:
                    ax.broken_barh([(edges[start], edges[i] - edges[start])], (row - 0.38, 0.76),
                                   facecolors=lanes.colours.get(state, "#999999"), linewidth=0)
                start = i
    ax.set_yticks(range(len(names)), names, fontsize="small" if len(names) <= 16 else "x-small")
    ax.set_ylim(len(names) - 0.5, -0.5)
