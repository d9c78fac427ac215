"""Paper 003's tables read on their own: the cost's time basis from Table 4's slope, and rows that a minimiser of a
cost linear in the varied price cannot have produced (hand-computed values)."""

from __future__ import annotations

import pytest

from controllers.planning.sts_siting.case import CostParams
from phasetwin.plan.siting.paper_figures import (
    beaten_by_own_plan,
    below_chord,
    horizon_years,
    price_slope_per_sts,
)
from phasetwin.plan.siting.study import PAPER_TABLE_3, PAPER_TABLE_4


def test_horizon_from_table_4_slope() -> None:
    # Rows with 3 STS: (11.55 − 11.33) / (0.05 · 3) = 1.4667, (11.78 − 11.55) / 0.15 = 1.5333; with 2 STS:
    # (12.25 − 12.10) / (0.05 · 2) = 1.5. Mean 1.5 M¥ per STS per M¥; eq. 2's annuity at 8 %, 5 years:
    # 0.08 · 1.08⁵ / (1.08⁵ − 1) = 0.250456 per year, so H = 1.5 / 0.250456 = 5.989 years.
    assert price_slope_per_sts(PAPER_TABLE_4) == pytest.approx(1.5, abs=1e-9)
    assert horizon_years(PAPER_TABLE_4, CostParams()) == pytest.approx(5.9891, abs=1e-4)
    assert horizon_years(PAPER_TABLE_4, CostParams(discount_rate=0.0)) == pytest.approx(1.5 * 5, abs=1e-9)


def test_slope_needs_two_rows_with_one_count() -> None:
    with pytest.raises(ValueError, match="share a count"):
        price_slope_per_sts(((0.2, 0.3, 3, 11.0), (0.2, 0.4, 2, 11.2)))


def test_rows_below_the_chord_of_their_neighbours() -> None:
    # Table 3, α 0.25 / 0.30 / 0.35: chord at 0.30 = (11.58 + 12.21) / 2 = 11.895 > 11.64.
    # Table 4, π 0.35 / 0.40 / 0.45: chord at 0.40 = (11.55 + 12.10) / 2 = 11.825 > 11.78; at π 0.35 the chord
    # (11.33 + 11.78) / 2 = 11.555 is within the table's rounding (0.005) of 11.55, so not counted.
    t3, t4 = below_chord(PAPER_TABLE_3, 0), below_chord(PAPER_TABLE_4, 1)
    assert [(g.row, g.cost_myuan) for g in t3] == [(2, 11.64)]
    assert t3[0].gap_myuan == pytest.approx(0.255)
    assert [(g.row, g.cost_myuan) for g in t4] == [(2, 11.78)]
    assert t4[0].gap_myuan == pytest.approx(0.045)
    concave = ((0.1, 0.0, 1, 1.0), (0.2, 0.0, 1, 1.8), (0.3, 0.0, 1, 2.4), (0.4, 0.0, 1, 2.9))
    assert below_chord(concave, 0) == []


def test_table_4_rows_beaten_by_the_papers_own_plan() -> None:
    # Slope 1.5 M¥ per STS per M¥. Row π 0.35 (3 STS, 11.55) priced at 0.45: 11.55 + 3 · 1.5 · 0.10 = 12.00 <
    # 12.10 by 0.10; at 0.50: 11.55 + 3 · 1.5 · 0.15 = 12.225 < 12.25 by 0.025 (row 0.40's plan: 12.005, 12.23).
    # The 3-STS rows are not beaten: row 0.30's plan at 0.40 costs 11.33 + 0.45 = 11.78, the paper's figure.
    found = beaten_by_own_plan(PAPER_TABLE_4)
    assert [(c.row, c.by) for c in found] == [(3, 1), (4, 1)]
    assert found[0].own_plan_myuan == pytest.approx(12.00)
    assert found[1].own_plan_myuan == pytest.approx(12.225)
    assert beaten_by_own_plan(PAPER_TABLE_4, tolerance_myuan=0.05) == [found[0]]
