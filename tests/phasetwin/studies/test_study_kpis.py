"""The study's comparison carries every KPI of a strategy and of none over the periods both finished, and names
the KPIs a strategy made worse (a results table written by hand; the sums and extremes computed by hand)."""

from __future__ import annotations

import pandas as pd
import pytest

from phasetwin.studies.report import comparison


def _row(strategy: str, period: str, *, p_unb: float, peak_n: float, mean_n: float, vm_min: float,
         status: str = "ok") -> dict[str, object]:
    return {"key": f"{strategy}-{period}", "feeder": "f", "period": period, "fleet": "10psd", "strategy": strategy,
            "status": status, "p_unb_kwh": p_unb, "switch_operations": 4 if strategy != "none" else 0,
            "voltage_violation_ticks": 0, "battery_throughput_kwh": 0.0, "rejected": 0, "losses_kwh": 1.0,
            "solve_s_p95": 0.01, "ticks": 96, "peak_neutral_a": peak_n, "mean_neutral_a": mean_n,
            "peak_trafo_loading_pct": 40.0, "vm_min_pu": vm_min, "vm_max_pu": 1.04, "max_vuf_pct": 0.5}


def test_the_comparison_sets_every_kpi_against_none_and_names_what_got_worse() -> None:
    results = pd.DataFrame([
        _row("none", "jan", p_unb=100.0, peak_n=90.0, mean_n=20.0, vm_min=0.97),
        _row("none", "jun", p_unb=50.0, peak_n=60.0, mean_n=10.0, vm_min=0.98),
        _row("rolling-milp", "jan", p_unb=60.0, peak_n=95.0, mean_n=15.0, vm_min=0.975),
        _row("rolling-milp", "jun", p_unb=30.0, peak_n=50.0, mean_n=9.0, vm_min=0.96),
        _row("greedy", "jan", p_unb=80.0, peak_n=80.0, mean_n=18.0, vm_min=0.97),
        _row("greedy", "jun", p_unb=0.0, peak_n=0.0, mean_n=0.0, vm_min=0.0, status="failed"),
    ])
    table = comparison(results).set_index("strategy")
    milp = table.loc["rolling-milp"]
    assert milp["p_unb_reduction_pct"] == pytest.approx(40.0)
    assert milp["peak_neutral_a"] == 95.0 and milp["peak_neutral_a_none"] == 90.0
    assert milp["mean_neutral_a"] == pytest.approx(12.0) and milp["mean_neutral_a_none"] == pytest.approx(15.0)
    assert milp["vm_min_pu"] == 0.96 and milp["vm_min_pu_none"] == 0.97
    assert milp["worse_than_none"] == "peak_neutral_a;vm_min_pu"
    greedy = table.loc["greedy"]  # only January compared (June failed)
    assert greedy["periods_compared"] == 1 and greedy["peak_neutral_a_none"] == 90.0
    assert greedy["worse_than_none"] == ""
    assert table.loc["none", "worse_than_none"] == ""
