"""Figures of runs, planners and studies, drawn with matplotlib (Agg, no display needed).

One look everywhere: phase A/B/C keep their colour in every figure (``style.PHASE_COLOURS``), a run without
control or a "before" state is dashed, time axes show the time of day in UTC (or a given zone), legends sit
inside the axes, and series longer than a few thousand points are drawn as min/mean/max envelopes.
"""

from twin.figures.chart import Drawn, Panel, Series, write_figure

__all__ = ["Drawn", "Panel", "Series", "write_figure"]
