"""Figures like the re-phasing paper's Figs. 2-4 (``twin.figures``, one panel per LV feeder).

- ``write_phase_loads``: per LV feeder, the load of each phase and their mean over the chosen steps (Fig. 2a/3a);
- ``write_unbalance``: per LV feeder, P_unb (eq. 7) before and after (Figs. 2b/3b and 4).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from twin.figures import style
from twin.figures.chart import Drawn, Panel, Series, write_figure

__all__ = ["write_phase_loads", "write_unbalance"]


def write_phase_loads(path: Path, loads_kw: np.ndarray, *, feeders: list[int], title: str, subtitle: str,
                      x_label: str, separators: list[int] | None = None) -> Drawn:
    """``loads_kw`` [k, n_feeders, 3]: one panel per feeder with the three phases and their mean (dashed)."""
    marks = tuple(float(s) for s in separators or [])
    panels = [Panel(f"feeder {f} (kW)", x_marks=marks, series=(
        *(Series(f"phase {p}", loads_kw[:, f, i], phase=p) for i, p in enumerate("ABC")),
        Series("mean of the phases", loads_kw[:, f, :].mean(axis=1), colour=style.PHASE_COLOURS["N"], dashed=True)))
        for f in feeders]
    return write_figure(path, panels, title=title, subtitle=subtitle, x=np.arange(len(loads_kw), dtype=float),
                        x_label=x_label)


def write_unbalance(path: Path, before_kw: np.ndarray, after_kw: np.ndarray, *, feeders: list[int], subtitle: str,
                    x_label: str, separators: list[int] | None = None) -> Drawn:
    """``before_kw``/``after_kw`` [k, n_feeders] P_unb: one panel per feeder, before (dashed) and after."""
    marks = tuple(float(s) for s in separators or [])
    panels = [Panel(f"feeder {f}: P_unb (kW)", x_marks=marks, y_min=0.0, series=(
        Series("after", after_kw[:, f], colour=style.OTHER_COLOURS[0]),
        Series("before", before_kw[:, f], colour=style.PHASE_COLOURS["N"], dashed=True))) for f in feeders]
    return write_figure(path, panels, title="P_unb (eq. 7) per LV feeder, before and after re-phasing",
                        subtitle=subtitle, x=np.arange(len(before_kw), dtype=float), x_label=x_label)
