"""What paper 003's Tables 3–4 imply on their own: the time basis of their cost, and which rows a minimiser of a
cost linear in the varied price cannot have produced.

- Time basis. For a fixed plan the comprehensive cost is linear in the STS unit price π with slope
  H · annuity · n (eq. 2 annualises π; H years of it are summed). Between rows of Table 4 that keep the same
  count n the slope is measured, so H = slope / (annuity · n) follows from the paper's own figures
  (``horizon_years``); the paper does not state it.
- Concavity. The cheapest plan's cost, min over plans of (a + b · price), is concave in the price: it lies on or
  above every chord. Three consecutive rows whose middle cost lies below the chord of the outer two
  (``below_chord``) cannot all be minima of such a cost: some row's own plan, priced at a neighbour's price, is
  cheaper there than the paper's figure.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

from controllers.planning.sts_siting.case import CostParams

PaperRow = tuple[float, float, int, float]  # (α M¥, π M¥, #STS, comprehensive cost M¥)


@dataclass(frozen=True)
class ChordGap:
    """A row (0-based) whose cost lies below the chord of its two neighbours at its price, M¥."""

    row: int
    cost_myuan: float
    chord_myuan: float

    @property
    def gap_myuan(self) -> float:
        return self.chord_myuan - self.cost_myuan


def price_slope_per_sts(table: tuple[PaperRow, ...]) -> float:
    """Mean of Δcost / (Δπ · n) over consecutive rows with the same count n (M¥ per M¥ of π per STS)."""
    slopes = [(b[3] - a[3]) / ((b[1] - a[1]) * a[2]) for a, b in pairwise(table)
              if a[2] == b[2] and b[1] != a[1] and a[2] > 0]
    if not slopes:
        raise ValueError("price_slope_per_sts: no two consecutive rows share a count and differ in price")
    return sum(slopes) / len(slopes)


def horizon_years(table: tuple[PaperRow, ...], params: CostParams) -> float:
    """Years of annualised cost the paper's comprehensive cost sums (see the module docstring)."""
    return price_slope_per_sts(table) / (params.annuity_per_day * 365.0)


def below_chord(table: tuple[PaperRow, ...], column: int, *, tolerance_myuan: float = 0.005) -> list[ChordGap]:
    """Interior rows whose cost lies below the chord of their neighbours by more than the table's rounding.

    ``column`` is the varied price: 0 for α (Table 3), 1 for π (Table 4). Such a row and its two neighbours cannot
    all be minima of a cost linear in that price (the minimum is concave: on or above every chord).
    """
    out = []
    for k in range(1, len(table) - 1):
        (x0, c0), (x1, c1), (x2, c2) = ((table[j][column], table[j][3]) for j in (k - 1, k, k + 1))
        chord = c0 + (c2 - c0) * (x1 - x0) / (x2 - x0)
        if c1 < chord - tolerance_myuan:
            out.append(ChordGap(k, c1, chord))
    return out


@dataclass(frozen=True)
class CheaperOwnPlan:
    """Row ``row`` (0-based) of a price table, beaten by row ``by``'s plan priced at ``row``'s STS price, M¥."""

    row: int
    by: int
    cost_myuan: float
    own_plan_myuan: float


def beaten_by_own_plan(table: tuple[PaperRow, ...], *, tolerance_myuan: float = 0.01) -> list[CheaperOwnPlan]:
    """Rows of an STS-price table (Table 4) that an earlier row's plan undercuts at the row's own price.

    π enters a plan's comprehensive cost only as n · slope · π (eq. 2; slope from ``price_slope_per_sts``), so
    row j's plan costs c_j + n_j · slope · (π_k − π_j) at row k's price. Where that is below the paper's c_k by
    more than ``tolerance_myuan`` (the table's rounding), row k's plan, and so its count, is not the cheapest of
    the paper's own plans: no minimiser of the paper's cost reports it.
    """
    slope = price_slope_per_sts(table)
    out = []
    for k, (_, price_k, _, cost_k) in enumerate(table):
        best: CheaperOwnPlan | None = None
        for j, (_, price_j, n_j, cost_j) in enumerate(table[:k]):
            own = cost_j + n_j * slope * (price_k - price_j)
            if own < cost_k - tolerance_myuan and (best is None or own < best.own_plan_myuan):
                best = CheaperOwnPlan(k, j, cost_k, own)
        if best is not None:
            out.append(best)
    return out
