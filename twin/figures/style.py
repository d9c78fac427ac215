"""Colours and sizes shared by every figure."""

from __future__ import annotations

# Okabe–Ito colours: distinguishable with the common colour-vision deficiencies and in greyscale print.
PHASE_COLOURS: dict[str, str] = {"A": "#0072B2", "B": "#E69F00", "C": "#009E73", "N": "#555555"}
OTHER_COLOURS = ("#CC79A7", "#D55E00", "#56B4E9", "#000000", "#F0E442", "#7F7F7F", "#8C564B", "#17BECF")
LIMIT_COLOUR = "#C0392B"
FIGURE_WIDTH_IN = 9.6
PANEL_HEIGHT_IN = 3.2
DPI = 100
MAX_POINTS = 2000
CONTROLLED_COLOUR = "#D55E00"  # a run with its controller, solid
REFERENCE_COLOUR = "#555555"  # the same run without control, dashed
