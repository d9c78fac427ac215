"""The generic meter-data reader, against hand-made files whose problems are planted and counted.

tests/data/meter/wide_gaps.csv (15-min grid 00:00-02:45 UTC, 12 steps; columns c1_A, c_2_1, c_2_2, c_2_3):

    00:00  ok                        01:15  out of order (after 01:30)
    00:07  off the grid              01:30  ok
    00:15  c1_A empty (1 NaN)        01:45  c_2_3 empty ┐
    00:30  twice (99s, then values)  02:00  c_2_3 empty │ 5 NaN: longer than 4,
    00:45  no row (missing step)     02:15  c_2_3 empty │ left unfilled
    01:00  ok                        02:30  c_2_3 empty │
                                     02:45  c_2_3 empty ┘

tests/data/meter/long.csv (5-min grid, +01:00 offsets, customers a: terminal 1, b: terminals 1-2, p and q):
b-1 at 00:05 comes after 00:10 (out of order), a-1 at 00:10 appears twice (last wins), b-2 has no row at
00:05 (2 absent cells: p, q), a-1 q at 00:15 is empty (1 NaN).

The expected reading of each (counts, grid, series) is kept as data beside it: ``NAME.expected.json``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.small_feeders import one_bus_feeder

from streams.meters.data import (
    DuplicateRule,
    GapPolicy,
    PowerUnit,
    match_customers,
    read_meter_data,
    require_finite,
)
from streams.meters.table import MeterTable
from twin.errors import DataError
from twin.network import Customer, Feeder

METER = Path(__file__).resolve().parents[2] / "data" / "meter"
T0 = pd.Timestamp("2024-03-01 00:00", tz="UTC")


@pytest.fixture
def two_customer_feeder() -> Feeder:
    """mv =trafo= lv --50 m-- b1, with c_2 (CAB) and c1 (A) at b1."""
    return one_bus_feeder("two-customers", (("c_2", "CAB", 0.8), ("c1", "A", 1.0)))


def _write(path: Path, times: pd.DatetimeIndex, columns: dict[str, list[float]]) -> Path:
    frame = pd.DataFrame({"time": [t.isoformat() for t in times], **columns})
    frame.to_csv(path, index=False)
    return path


# --- planted counts -------------------------------------------------------------------------------------------


def _golden(name: str) -> dict[str, Any]:
    """The expected reading of ``tests/data/meter/NAME.csv``, kept beside it as ``NAME.expected.json``."""
    return json.loads((METER / f"{name}.expected.json").read_text())


def _assert_reads_as_golden(table: MeterTable, golden: dict[str, Any], compare: Callable[..., None]) -> None:
    """Counts, grid and customers equal the golden ones; each golden series [step] agrees by ``compare`` (null in
    the file: NaN)."""
    assert {name: getattr(table.quality, name) for name in golden["quality"]} == golden["quality"]
    assert table.time_utc[0] == pd.Timestamp(golden["first_utc"])
    assert (table.step_s, table.n_steps, table.customer_ids) == (golden["step_s"], golden["n_steps"],
                                                                  tuple(golden["customer_ids"]))
    for quantity in ("p_kw", "q_kvar"):
        for series in golden.get(quantity, []):
            values = getattr(table, quantity)[:, table.customer_ids.index(series["customer"]), series["terminal"] - 1]
            compare(values, np.array(series["values"], dtype=float), err_msg=f"{quantity} {series}")


def test_wide_gaps_counts_and_values() -> None:
    table = read_meter_data(METER / "wide_gaps.csv", unit=PowerUnit.KW)
    q = table.quality
    _assert_reads_as_golden(table, _golden("wide_gaps"), np.testing.assert_array_equal)
    assert q.nan_values + q.missing_steps * 4 == q.filled_values + q.unfilled_values
    assert not table.p_kw[:, 0, 1:].any()
    assert not table.q_kvar.any()
    assert "no reactive power in the data and no customers given: q_kvar = 0" in q.notes


@pytest.mark.parametrize(("max_fill_steps", "filled", "unfilled"), [(0, 0, 10), (1, 5, 5), (4, 5, 5), (5, 10, 0)])
def test_fill_limit(max_fill_steps: int, filled: int, unfilled: int) -> None:
    table = read_meter_data(METER / "wide_gaps.csv", unit=PowerUnit.KW,
                            policy=GapPolicy(max_fill_steps=max_fill_steps))
    assert (table.quality.filled_values, table.quality.unfilled_values) == (filled, unfilled)


def test_period_drops_rows_outside() -> None:
    table = read_meter_data(METER / "wide_gaps.csv", unit=PowerUnit.KW, start_utc=T0 + pd.Timedelta("30min"),
                            end_utc=T0 + pd.Timedelta("2h"))
    q = table.quality
    assert (q.dropped_rows, q.duplicate_timestamps, q.off_grid_rows, q.missing_steps) == (7, 1, 0, 1)
    assert (q.nan_values, q.filled_values, q.unfilled_values) == (1, 5, 0)
    assert table.time_utc[0] == T0 + pd.Timedelta("30min") and table.n_steps == 6
    assert np.isfinite(require_finite(table).p_kw).all()


def test_long_counts_values_and_utc() -> None:
    table = read_meter_data(METER / "long.csv", unit=PowerUnit.KW)
    _assert_reads_as_golden(table, _golden("long"), np.testing.assert_allclose)


def test_duplicates_keep_first_or_reject() -> None:
    first = read_meter_data(METER / "wide_gaps.csv", unit=PowerUnit.KW,
                            policy=GapPolicy(duplicates=DuplicateRule.KEEP_FIRST))
    assert first.p_kw[2, 0, 0] == 99.0
    with pytest.raises(DataError, match=r"1 row\(s\) repeat a timestamp, first 2024-03-01T00:30:00\+00:00"):
        read_meter_data(METER / "wide_gaps.csv", unit=PowerUnit.KW,
                        policy=GapPolicy(duplicates=DuplicateRule.REJECT))


def test_unsorted_rows_rejected_when_asked() -> None:
    with pytest.raises(DataError, match=r"1 row\(s\) earlier than the row before"):
        read_meter_data(METER / "wide_gaps.csv", unit=PowerUnit.KW, policy=GapPolicy(sort_rows=False))


def test_require_finite_names_customers_gaps_and_the_fill_that_would_close_them() -> None:
    table = read_meter_data(METER / "wide_gaps.csv", unit=PowerUnit.KW)
    with pytest.raises(DataError, match=r"wide_gaps.csv: meter data have gaps in the period; set --fill-gaps to 5 "
                       r"\(steps of 900 s\) to carry the last value over the gaps, or choose a period without gaps: "
                       r"1 problem\(s\):\n  1. customer 'c_2': 1 gap\(s\) of NaN on terminal\(s\) 3: 5 step\(s\) "
                       r"2024-03-01T01:45:00\+00:00 .. 2024-03-01T02:45:00\+00:00$"):
        require_finite(table, fill_option="--fill-gaps")
    assert require_finite(table, end_utc=T0 + pd.Timedelta("1h45min")) is table  # the gap is after the period
    filled = read_meter_data(METER / "wide_gaps.csv", unit=PowerUnit.KW, policy=GapPolicy(max_fill_steps=5))
    assert np.isfinite(require_finite(filled).p_kw).all()


def test_require_finite_says_a_gap_at_the_start_cannot_be_filled(tmp_path: Path) -> None:
    times = pd.date_range(T0, periods=4, freq="15min")
    path = _write(tmp_path / "m.csv", times, {"m_1": [np.nan, np.nan, 1.0, 2.0]})
    table = read_meter_data(path, unit=PowerUnit.KW, policy=GapPolicy(max_fill_steps=10))
    with pytest.raises(DataError, match=r"start the period after the gaps at the start of the data .*\n"
                       r"  1. customer 'm': 1 gap\(s\) of NaN on terminal\(s\) 1: 2 step\(s\) "
                       r"2024-03-01T00:00:00\+00:00 .. 2024-03-01T00:15:00\+00:00 \(at the start of the data\)$"):
        require_finite(table)
    assert require_finite(table, start_utc=T0 + pd.Timedelta("30min")) is table


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    values=st.lists(st.lists(st.one_of(st.none(), st.integers(-5, 5)), min_size=2, max_size=2), min_size=2,
                    max_size=25),
    kept=st.data(),
    max_fill_steps=st.integers(0, 5),
)
def test_gap_counts_add_up(tmp_path: Path, values: list[list[int | None]], kept: st.DataObject,
                           max_fill_steps: int) -> None:
    """Any gaps: every NaN, absent or missing cell is either filled or counted as unfilled; data are untouched."""
    rows = [i for i in range(len(values)) if i in (0, len(values) - 1) or kept.draw(st.booleans())]
    times = pd.date_range(T0, periods=len(values), freq="15min")[rows]
    grid = np.array([[np.nan if v is None else float(v) for v in row] for row in values])
    path = _write(tmp_path / "h.csv", times, {"m_1": grid[rows, 0], "m_2": grid[rows, 1]})
    table = read_meter_data(path, unit=PowerUnit.KW, step_s=900, policy=GapPolicy(max_fill_steps=max_fill_steps))
    q = table.quality
    assert table.n_steps == len(values)
    assert q.missing_steps == len(values) - len(rows)
    assert q.nan_values == int(np.isnan(grid[rows]).sum())
    assert q.nan_values + 2 * q.missing_steps == q.filled_values + q.unfilled_values
    assert int(np.isnan(table.p_kw[:, 0, :2]).sum()) == q.unfilled_values
    known = np.zeros_like(grid, dtype=bool)
    known[rows] = ~np.isnan(grid[rows])
    np.testing.assert_array_equal(table.p_kw[:, 0, :2][known], grid[known])


# --- units, resolutions, timestamps ---------------------------------------------------------------------------


@pytest.mark.parametrize(("unit", "step_min", "value"), [
    (PowerUnit.W, 15, 2000.0), (PowerUnit.KW, 15, 2.0), (PowerUnit.MW, 15, 0.002),
    (PowerUnit.KWH, 15, 0.5), (PowerUnit.WH, 1, 2000.0 / 60), (PowerUnit.MWH, 60, 0.002),
])
def test_unit_conversion_to_kw(tmp_path: Path, unit: PowerUnit, step_min: int, value: float) -> None:
    times = pd.date_range(T0, periods=3, freq=f"{step_min}min")
    path = _write(tmp_path / "u.csv", times, {"m_1": [value] * 3, "m_1_q": [value / 2] * 3})
    table = read_meter_data(path, unit=unit)
    np.testing.assert_allclose(table.p_kw[:, 0, 0], 2.0)
    np.testing.assert_allclose(table.q_kvar[:, 0, 0], 1.0)


@pytest.mark.parametrize("step_min", [1, 15, 60])
def test_supported_resolutions(tmp_path: Path, step_min: int) -> None:
    times = pd.date_range(T0, periods=5, freq=f"{step_min}min")
    table = read_meter_data(_write(tmp_path / "r.csv", times, {"m_A": [1.0] * 5}), unit=PowerUnit.KW)
    assert (table.step_s, table.n_steps) == (step_min * 60, 5)


@pytest.mark.parametrize(("freq", "shown"), [("90min", r"5400 s \(90 min"), ("30s", r"30 s \(0.5 min")])
def test_unsupported_resolutions(tmp_path: Path, freq: str, shown: str) -> None:
    times = pd.date_range(T0, periods=5, freq=freq)
    path = _write(tmp_path / "r.csv", times, {"m_A": [1.0] * 5})
    with pytest.raises(DataError, match=rf"step {shown}, inferred as the median timestamp difference\) is not "
                       r"supported; expected a whole number of minutes from 1 to 60"):
        read_meter_data(path, unit=PowerUnit.KW)


def test_given_step_is_checked_too(tmp_path: Path) -> None:
    path = _write(tmp_path / "r.csv", pd.date_range(T0, periods=3, freq="15min"), {"m_A": [1.0] * 3})
    with pytest.raises(DataError, match=r"step 4500 s \(75 min, given\) is not supported"):
        read_meter_data(path, unit=PowerUnit.KW, step_s=4500)


def test_naive_timestamps_rejected_unless_declared_utc(tmp_path: Path) -> None:
    path = tmp_path / "naive.csv"
    path.write_text("time,m_A\n2024-03-01 00:00:00,1\n2024-03-01 00:15:00,2\n")
    with pytest.raises(DataError, match=r"column 'time': 2 timestamp\(s\) without a UTC offset, first "
                       r"'2024-03-01 00:00:00' at line 2; .* --naive-utc, or give their zone with --timezone"):
        read_meter_data(path, unit=PowerUnit.KW)
    table = read_meter_data(path, unit=PowerUnit.KW, naive_is_utc=True)
    assert table.start_utc == T0
    path.write_text("time,m_A\n2024-03-01,1\n")  # a date alone ends in "-01", which is no UTC offset
    with pytest.raises(DataError, match=r"1 timestamp\(s\) without a UTC offset, first '2024-03-01'"):
        read_meter_data(path, unit=PowerUnit.KW)


def test_parquet_with_local_datetime_index(tmp_path: Path) -> None:
    times = pd.date_range("2024-03-31 01:00", periods=8, freq="15min", tz="Europe/Brussels")  # across DST
    frame = pd.DataFrame({"m_1": np.arange(8.0)}, index=pd.Index(times, name="time_utc"))
    frame.to_parquet(tmp_path / "m.parquet")
    table = read_meter_data(tmp_path / "m.parquet", unit=PowerUnit.KW)
    assert table.start_utc == pd.Timestamp("2024-03-31 00:00", tz="UTC")
    assert (table.n_steps, table.quality.missing_steps) == (8, 0)
    np.testing.assert_array_equal(table.p_kw[:, 0, 0], np.arange(8.0))


def test_naive_parquet_index_rejected(tmp_path: Path) -> None:
    frame = pd.DataFrame({"m_1": [1.0, 2.0]}, index=pd.date_range("2024-03-01", periods=2, freq="15min"))
    frame.to_parquet(tmp_path / "m.parquet")
    with pytest.raises(DataError, match=r"index: timestamps have no time zone"):
        read_meter_data(tmp_path / "m.parquet", unit=PowerUnit.KW)


# --- columns and customers ------------------------------------------------------------------------------------


def test_every_column_problem_listed_once() -> None:
    with pytest.raises(DataError, match=r"bad_columns.csv: 5 problem\(s\):") as info:
        read_meter_data(METER / "bad_columns.csv", unit=PowerUnit.KW)
    text = str(info.value)
    for planted in (
        "1. column 'time': 1 timestamp(s) without a UTC offset, first '2024-03-01 00:30:00' at line 4",
        "2. column 'nounderscore' is not '<customer>_<terminal>' or '<customer>_<terminal>_q'",
        "3. column 'x_D': 'D' is neither a terminal 1, 2, 3 nor a phase letter A, B, C",
        "4. column 'y_1': 1 value(s) are not finite numbers: 'abc' at line 3; write numbers, and leave the cell "
        "of a missing value empty",
        "5. reactive power without active power for z_2",
    ):
        assert planted in text


def test_phase_letters_follow_the_connection(tmp_path: Path, two_customer_feeder: Feeder) -> None:
    times = pd.date_range(T0, periods=2, freq="15min")
    path = _write(tmp_path / "p.csv", times, {"c_2_A": [1.0, 1.0], "c_2_B": [2.0, 2.0], "c_2_C": [3.0, 3.0],
                                              "c1_A": [4.0, 4.0]})
    table = read_meter_data(path, unit=PowerUnit.KW, customers=two_customer_feeder.customers)
    assert table.customer_ids == ("c_2", "c1")
    np.testing.assert_array_equal(table.p_kw[0], [[3.0, 1.0, 2.0], [4.0, 0.0, 0.0]])  # c_2 is CAB
    np.testing.assert_allclose(table.q_kvar[0], [[2.25, 0.75, 1.5], [0.0, 0.0, 0.0]])  # pf 0.8 and 1.0
    without = read_meter_data(path, unit=PowerUnit.KW)
    np.testing.assert_array_equal(without.p_kw[0], [[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])  # order in the file


def test_read_with_customers_lists_mismatches(tmp_path: Path) -> None:
    times = pd.date_range(T0, periods=2, freq="15min")
    path = _write(tmp_path / "m.csv", times, {"c1_A": [1.0, 1.0], "c1_B": [1.0, 1.0], "other_1": [1.0, 1.0]})
    customers = [Customer(id="c1", bus="b1", phases="A"), Customer(id="gone", bus="b1", phases="B")]
    with pytest.raises(DataError, match=r"m.csv: 3 problem\(s\):\n"
                       r"  1. 1 customer\(s\) with no data: 'gone'\n"
                       r"  2. 1 data customer\(s\) not expected: 'other'\n"
                       r"  3. customer 'c1' \(A\): data for phase\(s\) B it does not have; label each "
                       r"column with the phase its terminal was on when measured \(the feeder's connection, before any "
                       r"--rephase plan\) or with the terminal number 1-3$"):
        read_meter_data(path, unit=PowerUnit.KW, customers=customers)


def test_match_customers_orders_by_feeder(two_customer_feeder: Feeder) -> None:
    table = read_meter_data(METER / "wide_gaps.csv", unit=PowerUnit.KW)
    matched = match_customers(table, two_customer_feeder)
    assert matched.customer_ids == ("c_2", "c1")
    np.testing.assert_array_equal(matched.p_kw[:, 1, 0], table.p_kw[:, 0, 0])


def test_match_customers_lists_exact_names(two_customer_feeder: Feeder) -> None:
    table = read_meter_data(METER / "long.csv", unit=PowerUnit.KW)
    with pytest.raises(DataError, match=r"long.csv: meter data do not match feeder 'two-customers': 2 problem\(s\):\n"
                       r"  1. 2 customer\(s\) of feeder 'two-customers' with no data: 'c_2', 'c1'\n"
                       r"  2. 2 data customer\(s\) not in feeder 'two-customers': 'a', 'b'$"):
        match_customers(table, two_customer_feeder)


def test_unknown_suffix_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "m.xlsx").write_text("x")
    with pytest.raises(DataError, match=r"unknown file type '.xlsx'; expected .csv, .csv.gz or .parquet"):
        read_meter_data(tmp_path / "m.xlsx", unit=PowerUnit.KW)
    with pytest.raises(DataError, match=r"nothing.csv: no such file"):
        read_meter_data(tmp_path / "nothing.csv", unit=PowerUnit.KW)
