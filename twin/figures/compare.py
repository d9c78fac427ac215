"""Before/after and side-by-side line figures of planners, studies and plan replays.

The same key in ``before`` and ``after`` keeps its colour (a phase letter A/B/C: the phase's colour); "before"
is dashed. Keys are short (a phase, a scenario): the figure's title says what is compared.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from twin.figures import style
from twin.figures.chart import Drawn, Panel, Series, write_figure


def _colours(keys: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    others = iter(style.OTHER_COLOURS * 4)
    for k in keys:
        phase = k.removeprefix("phase ")
        out[k] = style.PHASE_COLOURS[phase] if phase in style.PHASE_COLOURS else next(others)
    return out


def write_before_after(path: Path, *, before: dict[str, np.ndarray], after: dict[str, np.ndarray], title: str,
                       y_label: str, subtitle: str = "", before_label: str = "before", after_label: str = "after",
                       x: pd.DatetimeIndex | np.ndarray | None = None, x_label: str | None = None,
                       tz: str = "UTC") -> Drawn:
    """``after`` solid, ``before`` dashed, one colour per key."""
    keys = list(dict.fromkeys([*after, *before]))
    colour = _colours(keys)
    series = [Series(f"{k}, {after_label}", np.asarray(v, dtype=float), colour=colour[k]) for k, v in after.items()]
    series += [Series(f"{k}, {before_label}", np.asarray(v, dtype=float), colour=colour[k], dashed=True)
               for k, v in before.items()]
    n = max(len(s.values) for s in series)
    return write_figure(path, [Panel(y_label, series=tuple(series))], title=title, subtitle=subtitle,
                        x=np.arange(n, dtype=float) if x is None else x, x_label=x_label, tz=tz)


def write_lines(path: Path, series: dict[str, np.ndarray], *, title: str, y_label: str, subtitle: str = "",
                dashed: frozenset[str] = frozenset(), x: pd.DatetimeIndex | np.ndarray | None = None,
                x_label: str | None = None, tz: str = "UTC") -> Drawn:
    """One line per key (phase keys in their phase colour); keys in ``dashed`` are drawn dashed."""
    colour = _colours(list(series))
    drawn = [Series(k, np.asarray(v, dtype=float), colour=colour[k], dashed=k in dashed) for k, v in series.items()]
    n = max(len(s.values) for s in drawn)
    return write_figure(path, [Panel(y_label, series=tuple(drawn))], title=title, subtitle=subtitle,
                        x=np.arange(n, dtype=float) if x is None else x, x_label=x_label, tz=tz)
