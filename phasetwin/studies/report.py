"""The answer of a study: per feeder and fleet, each strategy's P_unb reduction against none, switch operations
and voltage violations, summed over the periods that both it and none completed."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

COMPARISON = "comparison.csv"
KEYS = ["feeder", "fleet", "strategy"]


def comparison(results: pd.DataFrame) -> pd.DataFrame:
    """One row per feeder, fleet and strategy (``none`` first). ``p_unb_reduction_pct`` is
    100·(1 − Σ P_unb / Σ P_unb of none) over the periods both finished; NaN without such a period."""
    columns = [*KEYS, "tasks", "failed", "periods_compared", "p_unb_kwh", "p_unb_none_kwh", "p_unb_reduction_pct",
               "switch_operations", "voltage_violation_ticks", "battery_throughput_kwh", "rejected", "losses_kwh",
               "solve_s_p95_max"]
    if results.empty:
        return pd.DataFrame(columns=columns)
    counts = results.groupby(KEYS, sort=False).agg(
        tasks=("key", "size"), failed=("status", lambda s: int((s != "ok").sum()))).reset_index()
    ok = results[results["status"] == "ok"]
    base = ok[ok["strategy"] == "none"][["feeder", "period", "fleet", "p_unb_kwh"]].rename(
        columns={"p_unb_kwh": "p_unb_none_kwh"})
    paired = ok.merge(base, on=["feeder", "period", "fleet"], how="inner")
    sums = paired.groupby(KEYS, sort=False).agg(
        periods_compared=("period", "nunique"), p_unb_kwh=("p_unb_kwh", "sum"),
        p_unb_none_kwh=("p_unb_none_kwh", "sum"), switch_operations=("switch_operations", "sum"),
        voltage_violation_ticks=("voltage_violation_ticks", "sum"),
        battery_throughput_kwh=("battery_throughput_kwh", "sum"), rejected=("rejected", "sum"),
        losses_kwh=("losses_kwh", "sum"), solve_s_p95_max=("solve_s_p95", "max")).reset_index()
    table = counts.merge(sums, on=KEYS, how="left")
    table["periods_compared"] = table["periods_compared"].fillna(0).astype(int)
    reduction = 100.0 * (1.0 - table["p_unb_kwh"] / table["p_unb_none_kwh"])
    table["p_unb_reduction_pct"] = reduction.where(table["p_unb_none_kwh"] > 0)
    order = {"none": 0}
    table = table.sort_values(by=["feeder", "fleet", "strategy"],
                              key=lambda col: col.map(lambda v: (order.get(v, 1), v)) if col.name == "strategy"
                              else col, kind="stable")
    return table[columns].reset_index(drop=True)


def write_comparison(study_dir: Path, table: pd.DataFrame) -> Path:
    path = study_dir / COMPARISON
    table.to_csv(path, index=False, float_format="%.6g")
    return path
