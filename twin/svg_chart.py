"""A line chart written as a small SVG file (matplotlib is not a dependency of phasetwin)."""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf", "#7f7f7f")


def write_line_chart(path: Path, series: dict[str, np.ndarray], *, title: str, x_label: str, y_label: str,
                     width: int = 720, height: int = 360) -> None:
    """One polyline per series (same length), linear axes from the data's range; overwrites ``path``."""
    left, right, top, bottom = 60, 150, 30, 40
    values = np.concatenate([np.asarray(v, dtype=float) for v in series.values()])
    y_lo, y_hi = float(values.min()), float(values.max())
    if y_hi - y_lo < 1e-12:
        y_hi = y_lo + 1.0
    n = max(len(v) for v in series.values())
    pw, ph = width - left - right, height - top - bottom

    def xy(i: int, v: float) -> str:
        x = left + pw * i / max(n - 1, 1)
        y = top + ph * (1.0 - (v - y_lo) / (y_hi - y_lo))
        return f"{x:.1f},{y:.1f}"

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
             f'font-size="11">', f'<rect width="{width}" height="{height}" fill="white"/>',
             f'<text x="{width / 2}" y="18" text-anchor="middle" font-size="13">{escape(title)}</text>',
             f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>',
             f'<text x="{left + pw / 2}" y="{height - 8}" text-anchor="middle">{escape(x_label)}</text>',
             f'<text x="14" y="{top + ph / 2}" transform="rotate(-90 14 {top + ph / 2})" '
             f'text-anchor="middle">{escape(y_label)}</text>']
    for k in range(5):
        tick = y_lo + (y_hi - y_lo) * k / 4
        y = top + ph * (1 - k / 4)
        parts.append(f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{tick:.3g}</text>')
    for k in range(n):
        if n <= 30 or k % max(n // 12, 1) == 0:
            parts.append(f'<text x="{left + pw * k / max(n - 1, 1):.1f}" y="{top + ph + 14}" '
                         f'text-anchor="middle">{k}</text>')
    for j, (name, v) in enumerate(series.items()):
        colour = _COLOURS[j % len(_COLOURS)]
        dash = ' stroke-dasharray="5,3"' if "before" in name else ""
        pts = " ".join(xy(i, float(val)) for i, val in enumerate(np.asarray(v, dtype=float).tolist()))
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.6"{dash} points="{pts}"/>')
        parts.append(f'<text x="{width - right + 8}" y="{top + 14 * (j + 1)}" fill="{colour}">{escape(name)}</text>')
    parts.append("</svg>")
    path.write_text("\n".join(parts), encoding="utf-8")
