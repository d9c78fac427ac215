"""Figures like the re-phasing paper's Figs. 2-4 as plain SVG (matplotlib is not a dependency).

- ``phase_loads_svg``: per LV feeder, the load of each phase and their mean over the chosen steps (Fig. 2a/3a);
- ``unbalance_svg``: per LV feeder, P_unb (eq. 7) before and after (Figs. 2b/3b and 4).
"""

from __future__ import annotations

from html import escape

import numpy as np

__all__ = ["line_chart_svg", "phase_loads_svg", "unbalance_svg"]

PHASE_COLOURS = ("#1f77b4", "#d62728", "#2ca02c")
_W, _H, _L, _R, _T, _B = 900, 260, 60, 150, 30, 35


def line_chart_svg(series: list[tuple[str, str, np.ndarray, bool]], *, title: str, y_label: str,
                   x_label: str = "step", separators: list[int] | None = None) -> str:
    """One SVG chart; ``series`` are (label, colour, values, dashed). Vertical ``separators`` mark day breaks."""
    n = max(len(s[2]) for s in series)
    lo = min(float(np.min(s[2])) for s in series)
    hi = max(float(np.max(s[2])) for s in series)
    if hi - lo < 1e-9:
        hi = lo + 1.0
    pw, ph = _W - _L - _R, _H - _T - _B

    def xy(i: int, v: float) -> str:
        return f"{_L + pw * i / max(n - 1, 1):.1f},{_T + ph * (1 - (v - lo) / (hi - lo)):.1f}"

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" font-family="sans-serif" '
             'font-size="11">', f'<text x="{_L}" y="18" font-size="13">{escape(title)}</text>',
             f'<rect x="{_L}" y="{_T}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>']
    for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
        v = lo + frac * (hi - lo)
        y = _T + ph * (1 - frac)
        parts.append(f'<line x1="{_L}" x2="{_L + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>')
        parts.append(f'<text x="{_L - 5}" y="{y + 4:.1f}" text-anchor="end">{v:.1f}</text>')
    if lo < 0 < hi:
        y0 = _T + ph * (1 - (0 - lo) / (hi - lo))
        parts.append(f'<line x1="{_L}" x2="{_L + pw}" y1="{y0:.1f}" y2="{y0:.1f}" stroke="#aaa"/>')
    for s in separators or []:
        x = _L + pw * s / max(n - 1, 1)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{_T}" y2="{_T + ph}" stroke="#ccc" '
                     'stroke-dasharray="2,3"/>')
    for k, (label, colour, values, dashed) in enumerate(series):
        points = " ".join(xy(i, float(v)) for i, v in enumerate(values))
        dash = ' stroke-dasharray="5,3"' if dashed else ""
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1"{dash} points="{points}"/>')
        ly = _T + 14 * (k + 1)
        parts.append(f'<line x1="{_W - _R + 10}" x2="{_W - _R + 30}" y1="{ly - 4}" y2="{ly - 4}" '
                     f'stroke="{colour}"{dash}/>')
        parts.append(f'<text x="{_W - _R + 35}" y="{ly}">{escape(label)}</text>')
    parts.append(f'<text x="{_L + pw / 2}" y="{_H - 8}" text-anchor="middle">{escape(x_label)}</text>')
    parts.append(f'<text x="14" y="{_T + ph / 2}" transform="rotate(-90 14 {_T + ph / 2})" '
                 f'text-anchor="middle">{escape(y_label)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def _stack(charts: list[str]) -> str:
    """Charts one below the other in one SVG."""
    body = "".join(f'<g transform="translate(0,{k * _H})">{c}</g>' for k, c in enumerate(charts))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H * len(charts)}">{body}</svg>\n')


def phase_loads_svg(loads_kw: np.ndarray, *, feeders: list[int], title: str, x_label: str,
                    separators: list[int] | None = None) -> str:
    """``loads_kw`` [k, n_feeders, 3]: one chart per feeder with the three phases and their mean (dashed)."""
    charts = []
    for f in feeders:
        series = [(f"phase {p}", PHASE_COLOURS[i], loads_kw[:, f, i], False) for i, p in enumerate("ABC")]
        series.append(("mean", "#555", loads_kw[:, f, :].mean(axis=1), True))
        charts.append(line_chart_svg(series, title=f"{title}, feeder {f + 1}", y_label="kW", x_label=x_label,
                                     separators=separators))
    return _stack(charts)


def unbalance_svg(before_kw: np.ndarray, after_kw: np.ndarray, *, feeders: list[int], x_label: str,
                  separators: list[int] | None = None) -> str:
    """``before_kw``/``after_kw`` [k, n_feeders] P_unb: one chart per feeder, before and after."""
    charts = [line_chart_svg([("before", "#d62728", before_kw[:, f], False),
                              ("after", "#1f77b4", after_kw[:, f], False)],
                             title=f"P_unb (eq. 7), feeder {f + 1}", y_label="kW", x_label=x_label,
                             separators=separators) for f in feeders]
    return _stack(charts)
