"""Is the declared unit plausible? Data in W read as kW are a thousand times too large, and fail later as a
power flow that does not converge, which points at the wrong cause; this check names the unit instead.

The figure is the median, over the customers with data, of each customer's mean absolute total load (all
terminals, every finite step), in kW after the declared unit was applied. An LV customer lies well inside
[``MIN_MEDIAN_KW``, ``MAX_MEDIAN_KW``]; the caller may widen the upper bound (the runner: to the transformer's
rating per customer, for MV feeders). Outside, the unit a thousand times smaller (or larger) is proposed: a
unit mistake is a factor of 1000, far beyond the spread of real feeders.
"""

from __future__ import annotations

import numpy as np

from streams.errors import DataError
from streams.meters.data import PowerUnit
from streams.meters.table import MeterTable

__all__ = ["MAX_MEDIAN_KW", "MIN_MEDIAN_KW", "check_unit", "median_customer_load_kw"]

MAX_MEDIAN_KW = 50.0
MIN_MEDIAN_KW = 0.005
_SMALLER = {PowerUnit.KW: PowerUnit.W, PowerUnit.MW: PowerUnit.KW, PowerUnit.KWH: PowerUnit.WH,
            PowerUnit.MWH: PowerUnit.KWH}
_LARGER = {v: k for k, v in _SMALLER.items()}


def median_customer_load_kw(table: MeterTable) -> float | None:
    """Median over customers of their mean |total p| (kW); None when no customer has a finite value."""
    total = np.abs(table.p_kw.sum(axis=2))
    finite = np.isfinite(total)
    count = finite.sum(axis=0)
    if not count.any():
        return None
    means = np.where(finite, total, 0.0).sum(axis=0)[count > 0] / count[count > 0]
    return float(np.median(means))


def check_unit(table: MeterTable, unit: PowerUnit, *, max_median_kw: float = MAX_MEDIAN_KW,
               override: str = "--no-unit-check") -> None:
    """Raise DataError when the median customer load is outside [MIN_MEDIAN_KW, max_median_kw] for ``unit``.

    The message gives the figure, the range, the unit the values look like and the option (``override``) for
    data that really are so large or small. An MV feeder's customers may pass a larger ``max_median_kw``.
    """
    median_kw = median_customer_load_kw(table)
    if median_kw is None or MIN_MEDIAN_KW <= median_kw <= max_median_kw:
        return
    large = median_kw > max_median_kw
    other = (_SMALLER if large else _LARGER).get(unit)
    looks = (f"the values look like {other.value}, not {unit.value}: use --unit {other.value}" if other is not None
             else f"check the values and --unit {unit.value}")
    if other is not None and not other.is_energy and table.step_s != 3600:
        # Wh per 15 minutes read as kW is 4 × the W it looks like: energy per interval is the other reading
        looks += (f" if they are power, or --unit {other.value}h if they are energy per {table.step_s} s interval "
                  f"(× {3600 / table.step_s:g} to mean power)")
    n = int(np.isfinite(table.p_kw.sum(axis=2)).any(axis=0).sum())
    raise DataError(
        f"{table.source}: the median customer load is {median_kw:.6g} kW read as {unit.value} (mean |p| of each of "
        f"{n} customer(s), median over them), {'above' if large else 'below'} the {MIN_MEDIAN_KW:g} .. "
        f"{max_median_kw:.6g} kW plausible for a customer of this feeder: {looks} (or {override} if the values are "
        "right)")
