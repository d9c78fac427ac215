"""A study's comparison as documentation: a Markdown table of every KPI per strategy and the Pareto figure of the
P_unb reduction against operations a year, both from ``comparison.csv`` (``phasetwin study tables``), never typed.

The table goes into a Markdown page between ``<!-- study-table:NAME -->`` and ``<!-- /study-table:NAME -->`` (the
text around it is the page's own); the figure is an SVG beside the page. A strategy is on the Pareto front when no
other strategy of its feeder and fleet has at least its P_unb reduction with at most its operations a year, one of
them strictly better.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from phasetwin.studies.report import COMPARISON
from twin.errors import ScenarioError
from twin.figures import style

REQUIRED = ("feeder", "fleet", "strategy", "periods_compared", "p_unb_reduction_pct", "operations_per_year")


def read_comparison(study_dir: Path) -> pd.DataFrame:
    """``comparison.csv`` of a study folder; ScenarioError naming the file and what it lacks."""
    path = study_dir / COMPARISON
    try:
        table = pd.read_csv(path, keep_default_na=True)
    except OSError as err:
        raise ScenarioError(f"{path}: cannot read it ({err.strerror or err}); run `phasetwin study report` first"
                            ) from err
    missing = [c for c in REQUIRED if c not in table]
    if missing:
        raise ScenarioError(f"{path}: no column {', '.join(missing)} (a comparison from an older phasetwin: run "
                            "`phasetwin study report` again)")
    return table.fillna({"worse_than_none": ""})


def pareto_front(table: pd.DataFrame) -> pd.Series:
    """True for the strategies no other of the same feeder and fleet dominates (more or equal P_unb reduction
    with at most as many operations a year, one strictly); rows without a reduction are never on it."""
    on = pd.Series(False, index=table.index)
    for _, group in table.groupby(["feeder", "fleet"], sort=False):
        valid = group.dropna(subset=["p_unb_reduction_pct", "operations_per_year"])
        for i, row in valid.iterrows():
            better = valid[(valid["p_unb_reduction_pct"] >= row["p_unb_reduction_pct"])
                           & (valid["operations_per_year"] <= row["operations_per_year"])
                           & ((valid["p_unb_reduction_pct"] > row["p_unb_reduction_pct"])
                              | (valid["operations_per_year"] < row["operations_per_year"]))]
            on[i] = better.empty
    return on


def _num(value: object, fmt: str) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)


def _change(value: float, base: float, *, pct: bool = True) -> str:
    if any(isinstance(v, float) and math.isnan(v) for v in (value, base)):
        return "—"
    if pct:
        return f"{_num(value, '.1f')} ({100 * (value / base - 1):+.1f} %)" if base else _num(value, ".1f")
    return f"{base:.3f} → {value:.3f}"


def markdown_table(table: pd.DataFrame) -> str:
    """Every KPI per strategy, with its change against no control over the same periods."""
    front = pareto_front(table)
    head = ("| feeder · fleet | strategy | periods | P_unb kWh (vs none) | P_unb reduction | switch operations | "
            "re-phasing moves a year | operations a year | peak neutral A | mean neutral A | peak phase loading % | "
            "V_min p.u. | V_max p.u. | voltage violations, ticks | max VUF % | losses kWh | worse than none | Pareto |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for i, r in table.iterrows():
        none = r["strategy"] == "none"
        lines.append("| " + " | ".join([
            f"{r['feeder']} · {r['fleet']}", str(r["strategy"]), str(int(r["periods_compared"])),
            _num(r["p_unb_kwh"], ".1f") if none else _change(r["p_unb_kwh"], r["p_unb_none_kwh"]),
            "—" if none else f"{_num(r['p_unb_reduction_pct'], '.1f')} %",
            _num(r["switch_operations"], ".0f"), _num(r.get("plan_operations_per_year"), ".0f"),
            _num(r["operations_per_year"], ".0f"),
            *[_num(r[c], ".1f") if none else _change(r[c], r[f"{c}_none"])
              for c in ("peak_neutral_a", "mean_neutral_a", "peak_trafo_loading_pct")],
            *[_num(r[c], ".3f") if none else _change(r[c], r[f"{c}_none"], pct=False)
              for c in ("vm_min_pu", "vm_max_pu")],
            _num(r["voltage_violation_ticks"], ".0f"),
            _num(r["max_vuf_pct"], ".2f") if none else _change(r["max_vuf_pct"], r["max_vuf_pct_none"]),
            _num(r["losses_kwh"], ".1f"),
            str(r["worse_than_none"] or "—").replace(";", ", "), "yes" if front[i] else ""]) + " |")
    return "\n".join(lines) + "\n"


def write_pareto(table: pd.DataFrame, path: Path, *, title: str) -> Path:
    """The P_unb reduction against operations a year, one point per strategy (symlog x: none sits at 0), the
    Pareto front joined; one colour per feeder and fleet."""
    fig = Figure(figsize=(style.FIGURE_WIDTH_IN, 5.2), dpi=style.DPI)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    front = pareto_front(table)
    for k, ((feeder, fleet), group) in enumerate(table.groupby(["feeder", "fleet"], sort=False)):
        colour = style.OTHER_COLOURS[k % len(style.OTHER_COLOURS)]
        points = group.assign(reduction=group["p_unb_reduction_pct"].where(group["strategy"] != "none", 0.0))
        points = points.dropna(subset=["reduction", "operations_per_year"])
        ax.scatter(points["operations_per_year"], points["reduction"], color=colour, label=f"{feeder} · {fleet}",
                   zorder=3)
        for _, r in points.iterrows():
            ax.annotate(str(r["strategy"]), (r["operations_per_year"], r["reduction"]), textcoords="offset points",
                        xytext=(5, 4), fontsize=8)
        line = points[front[points.index] | (points["strategy"] == "none")].sort_values("operations_per_year")
        ax.plot(line["operations_per_year"], line["reduction"], color=colour, linewidth=1, linestyle="--", zorder=2)
    ax.set_xscale("symlog", linthresh=10)
    ax.set_xlabel("operations a year (device switch operations scaled to 365 days + re-phasing moves a year)")
    ax.set_ylabel("P_unb reduction against no control, %")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.suptitle(title, fontsize=10)
    with rc_context({"svg.hashsalt": "phasetwin"}):  # the same figure from the same table: no random ids, no date
        fig.savefig(path, metadata={"Date": None} if path.suffix.lower() == ".svg" else None)
    return path


def insert_table(page: Path, name: str, text: str) -> Path:
    """Replace the block between the page's ``<!-- study-table:NAME -->`` markers by ``text``; ScenarioError
    naming the page and the marker when they are missing."""
    start, end = f"<!-- study-table:{name} -->", f"<!-- /study-table:{name} -->"
    try:
        body = page.read_text(encoding="utf-8")
    except OSError as err:
        raise ScenarioError(f"{page}: cannot read it ({err.strerror or err})") from err
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), flags=re.S)
    if not pattern.search(body):
        raise ScenarioError(f"{page}: no {start} … {end} block to put the table in; add the two lines")
    page.write_text(pattern.sub(lambda _: f"{start}\n{text}{end}", body, count=1), encoding="utf-8")
    return page


def write_study_tables(study_dir: Path, page: Path, name: str, *,
                       title: str = "P_unb reduction against operations a year") -> Path:
    """The study's comparison written into ``page`` between its ``NAME`` markers and the Pareto figure
    ``NAME-pareto.svg`` beside it (``phasetwin study tables``); returns the figure's path."""
    table = read_comparison(study_dir)
    insert_table(page, name, markdown_table(table))
    return write_pareto(table, page.parent / f"{name}-pareto.svg", title=title)
