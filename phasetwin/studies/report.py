"""The answer of a study: per feeder and fleet, each strategy's P_unb reduction against none, switch operations
and voltage violations, summed over the periods that both it and none completed; every KPI of the strategy and of
none over those periods, and the KPIs it made worse (``worse_than_none``).

``operations_per_year`` puts dynamic switching and static re-phasing on one scale: the devices' switch operations
over the compared days scaled to 365 days, plus the customer moves a year of the strategy's static re-phasing
(``plan_operations_per_year``: a yearly plan's moves, applied once; a seasonal plan's moves at the four season
changes). A device operation and a crew's move are not the same cost: both columns stay in the table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from controllers.ltupf import OperatingLimits
from twin.metrics import Kpis, kpi_changes

COMPARISON = "comparison.csv"
KEYS = ["feeder", "fleet", "strategy"]
KPI_REDUCTIONS = {"peak_neutral_a": "max", "peak_trafo_loading_pct": "max", "vm_min_pu": "min", "vm_max_pu": "max",
                  "max_vuf_pct": "max"}
"""How a KPI of the periods adds up to the study's (the mean neutral current is weighted by ticks)."""
KPI_COLUMNS = ["peak_neutral_a", "mean_neutral_a", "peak_trafo_loading_pct", "vm_min_pu", "vm_max_pu", "max_vuf_pct"]


def comparison(results: pd.DataFrame) -> pd.DataFrame:
    """One row per feeder, fleet and strategy (``none`` first). ``p_unb_reduction_pct`` is
    100·(1 − Σ P_unb / Σ P_unb of none) over the periods both finished; NaN without such a period."""
    columns = [*KEYS, "tasks", "failed", "periods_compared", "p_unb_kwh", "p_unb_none_kwh", "p_unb_reduction_pct",
               "switch_operations", "days_compared", "plan_operations_per_year", "operations_per_year",
               "voltage_violation_ticks", "battery_throughput_kwh", "rejected", "losses_kwh",
               "solve_s_p95_max", *KPI_COLUMNS, *[f"{c}_none" for c in KPI_COLUMNS], "worse_than_none"]
    if results.empty:
        return pd.DataFrame(columns=columns)
    for column in ("period_days", "plan_operations_per_year"):  # results written before these columns existed
        if column not in results:
            results = results.assign(**{column: float("nan")})
    counts = results.groupby(KEYS, sort=False).agg(
        tasks=("key", "size"), failed=("status", lambda s: int((s != "ok").sum()))).reset_index()
    ok = results[results["status"] == "ok"]
    ok = ok.assign(neutral_a_ticks=ok["mean_neutral_a"] * ok["ticks"])
    base = ok[ok["strategy"] == "none"][["feeder", "period", "fleet", "p_unb_kwh", *KPI_COLUMNS, "neutral_a_ticks",
                                         "ticks"]].rename(
        columns={"p_unb_kwh": "p_unb_none_kwh", "neutral_a_ticks": "neutral_a_ticks_none", "ticks": "ticks_none",
                 **{c: f"{c}_none" for c in KPI_COLUMNS}})
    paired = ok.merge(base, on=["feeder", "period", "fleet"], how="inner")
    sums = paired.groupby(KEYS, sort=False).agg(
        periods_compared=("period", "nunique"), p_unb_kwh=("p_unb_kwh", "sum"),
        p_unb_none_kwh=("p_unb_none_kwh", "sum"), switch_operations=("switch_operations", "sum"),
        voltage_violation_ticks=("voltage_violation_ticks", "sum"),
        battery_throughput_kwh=("battery_throughput_kwh", "sum"), rejected=("rejected", "sum"),
        losses_kwh=("losses_kwh", "sum"), solve_s_p95_max=("solve_s_p95", "max"),
        days_compared=("period_days", "sum"), plan_operations_per_year=("plan_operations_per_year", "max"),
        **{f"{c}{suffix}": (f"{c}{suffix}", how) for c, how in KPI_REDUCTIONS.items() for suffix in ("", "_none")},
        neutral_a_ticks=("neutral_a_ticks", "sum"), neutral_a_ticks_none=("neutral_a_ticks_none", "sum"),
        ticks=("ticks", "sum"), ticks_none=("ticks_none", "sum")).reset_index()
    sums["mean_neutral_a"] = sums["neutral_a_ticks"] / sums["ticks"].where(sums["ticks"] > 0)
    sums["mean_neutral_a_none"] = sums["neutral_a_ticks_none"] / sums["ticks_none"].where(sums["ticks_none"] > 0)
    table = counts.merge(sums, on=KEYS, how="left")
    table["periods_compared"] = table["periods_compared"].fillna(0).astype(int)
    reduction = 100.0 * (1.0 - table["p_unb_kwh"] / table["p_unb_none_kwh"])
    table["p_unb_reduction_pct"] = reduction.where(table["p_unb_none_kwh"] > 0)
    yearly = table["switch_operations"] * 365.0 / table["days_compared"].where(table["days_compared"] > 0)
    table["operations_per_year"] = yearly + table["plan_operations_per_year"].fillna(0)
    table["worse_than_none"] = [_worse(row) for row in table.to_dict("records")]
    order = {"none": 0}
    table = table.sort_values(by=["feeder", "fleet", "strategy"],
                              key=lambda col: col.map(lambda v: (order.get(v, 1), v)) if col.name == "strategy"
                              else col, kind="stable")
    return table[columns].reset_index(drop=True)


def _worse(row: dict[str, object]) -> str:
    """The KPIs (``;``-separated) of a row worse than none's over the same periods (``twin.metrics.kpi_changes``;
    voltages against the default ``OperatingLimits``)."""
    if row["strategy"] == "none" or not row.get("periods_compared"):
        return ""
    run = {c: row.get(c, float("nan")) for c in KPI_COLUMNS}
    base = {c: row.get(f"{c}_none", float("nan")) for c in KPI_COLUMNS}
    lim = OperatingLimits()
    changes = kpi_changes(Kpis(p_unb_kwh=float(row["p_unb_kwh"]), switch_operations=0, **run),  # type: ignore[arg-type]
                          Kpis(p_unb_kwh=float(row["p_unb_none_kwh"]), switch_operations=0, **base),  # type: ignore[arg-type]
                          vm_min_limit_pu=lim.vm_min_pu, vm_max_limit_pu=lim.vm_max_pu)
    return ";".join(c.name for c in changes if c.worse)


def write_comparison(study_dir: Path, table: pd.DataFrame) -> Path:
    path = study_dir / COMPARISON
    table.to_csv(path, index=False, float_format="%.6g")
    return path
