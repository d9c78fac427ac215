"""Partial metering (``streams.meters.coverage``), the unit check (``plausibility``) and strict cells, on hand-made
tables whose expected values are worked out by hand in each test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from support.small_feeders import one_bus_feeder

from streams.meters.coverage import UnknownMeters, Unmetered, UnmeteredRule, cover
from streams.meters.data import PowerUnit, read_meter_data
from streams.meters.plausibility import check_unit, median_customer_load_kw
from streams.meters.table import MeterTable
from twin.errors import DataError
from twin.network import Feeder

T0 = pd.Timestamp("2024-03-01 00:00", tz="UTC")


@pytest.fixture
def three_customers() -> Feeder:
    """mv =trafo= lv --50 m-- b1, with c3 (CAB, pf 0.8), c1 (A, pf 1) and c2 (B, pf 1) at b1."""
    return one_bus_feeder("three", (("c3", "CAB", 0.8), ("c1", "A", 1.0), ("c2", "B", 1.0)))


def _table(p_first_terminal: dict[str, list[float]]) -> MeterTable:
    ids = tuple(p_first_terminal)
    n_t = len(next(iter(p_first_terminal.values())))
    p_kw = np.zeros((n_t, len(ids), 3))
    for i, cid in enumerate(ids):
        p_kw[:, i, 0] = p_first_terminal[cid]
    return MeterTable(time_utc=pd.date_range(T0, periods=n_t, freq="15min"), step_s=900, customer_ids=ids,
                      p_kw=p_kw, q_kvar=p_kw * 0.1, source="hand")


def test_zero_keeps_the_metered_data_and_counts(three_customers: Feeder) -> None:
    table = _table({"c2": [2.0, 4.0], "c1": [1.0, 3.0]})
    covered, coverage = cover(table, three_customers, unmetered=Unmetered(rule=UnmeteredRule.ZERO))
    assert covered.customer_ids == ("c3", "c1", "c2")
    np.testing.assert_array_equal(covered.p_kw[:, 0], 0.0)
    np.testing.assert_array_equal(covered.p_kw[:, 1, 0], [1.0, 3.0])
    np.testing.assert_array_equal(covered.q_kvar[:, 2, 0], [0.2, 0.4])
    assert (coverage.customers, coverage.metered, coverage.unmetered, coverage.unknown_meters) == (3, 2, 1, 0)
    assert coverage.unmetered_ids == ("c3",) and coverage.unmetered_policy == "zero"


def test_profile_is_the_metered_mean_split_over_terminals_with_q_from_the_power_factor(
    three_customers: Feeder,
) -> None:
    # step 1: c2 has no value, so the mean is over c1 alone
    table = _table({"c1": [1.0, 3.0], "c2": [2.0, np.nan]})
    covered, _ = cover(table, three_customers, unmetered=Unmetered(rule=UnmeteredRule.PROFILE))
    np.testing.assert_allclose(covered.p_kw[:, 0], [[0.5, 0.5, 0.5], [1.0, 1.0, 1.0]])  # 1.5 and 3 kW over 3
    np.testing.assert_allclose(covered.q_kvar[:, 0], covered.p_kw[:, 0] * 0.75)  # tan(acos 0.8) = 0.75


def test_profile_scaled_to_annual_energy(three_customers: Feeder, tmp_path: Path) -> None:
    annual = tmp_path / "annual.csv"
    annual.write_text("customer,annual_kwh\nc3,8760\n")  # a mean of 1 kW
    table = _table({"c1": [1.0, 3.0], "c2": [2.0, 3.0]})  # mean profile 1.5, 3; its mean 2.25
    covered, coverage = cover(table, three_customers, unmetered=Unmetered.model_validate(f"profile:{annual}"))
    np.testing.assert_allclose(covered.p_kw[:, 0].sum(axis=1), [1.5 / 2.25, 3.0 / 2.25])
    assert coverage.unmetered_policy == f"profile:{annual}"


def test_annual_energy_needs_a_positive_mean(three_customers: Feeder, tmp_path: Path) -> None:
    annual = tmp_path / "annual.csv"
    annual.write_text("customer,annual_kwh\nc3,1000\n")
    with pytest.raises(DataError, match=r"the metered customers' mean load over the data is -1 kW; a profile scaled "
                       r"to annual energy needs a positive mean"):
        cover(_table({"c1": [-1.0, -1.0]}), three_customers, unmetered=Unmetered.model_validate(f"profile:{annual}"))


def test_unknown_meters_are_dropped_and_named_or_refused_with_the_unmetered_at_once(three_customers: Feeder) -> None:
    table = _table({"x": [9.0, 9.0], "c1": [1.0, 1.0], "c2": [1.0, 1.0], "c3": [1.0, 1.0]})
    covered, coverage = cover(table, three_customers, unknown_meters=UnknownMeters.IGNORE)
    assert covered.customer_ids == ("c3", "c1", "c2") and coverage.unknown_meter_ids == ("x",)
    assert not (covered.p_kw == 9.0).any()
    with pytest.raises(DataError, match=r"hand: meter data do not match feeder 'three': 2 problem\(s\):\n"
                       r"  1. 1 customer\(s\) of feeder 'three' with no data: 'c3'; give their data or a policy for "
                       r"them: --unmetered zero, profile or profile:ANNUAL_KWH.csv\n"
                       r"  2. 1 data customer\(s\) not in feeder 'three': 'x'; remove them from the data or drop "
                       r"them with --unknown-meters ignore$"):
        cover(table.select(["x", "c1", "c2"]), three_customers)


def test_a_profile_needs_a_metered_customer(three_customers: Feeder) -> None:
    with pytest.raises(DataError, match=r"none of the 3 customers is metered, so there is no profile to take"):
        cover(_table({"x": [1.0]}), three_customers, unmetered=Unmetered(rule=UnmeteredRule.PROFILE),
              unknown_meters=UnknownMeters.IGNORE)


@pytest.mark.parametrize(
    ("text", "rule", "file"),
    [("zero", UnmeteredRule.ZERO, None), ("PROFILE", UnmeteredRule.PROFILE, None),
     ("profile:a b.csv", UnmeteredRule.PROFILE, Path("a b.csv"))],
)
def test_unmetered_text_form(text: str, rule: UnmeteredRule, file: Path | None) -> None:
    policy = Unmetered.model_validate(text)
    assert (policy.rule, policy.annual_kwh_file) == (rule, file)


def test_units_match_case_insensitively() -> None:
    assert [PowerUnit(u) for u in ("kw", "KW", " W ", "mwh", "KWh")] == [
        PowerUnit.KW, PowerUnit.KW, PowerUnit.W, PowerUnit.MWH, PowerUnit.KWH]
    with pytest.raises(ValueError, match="'kVA' is not a valid PowerUnit"):
        PowerUnit("kVA")


def test_unit_check_names_the_unit_the_values_look_like() -> None:
    kw = _table({"a": [0.2, 0.4], "b": [1.0, 1.0], "c": [0.5, 0.5]})
    assert median_customer_load_kw(kw) == pytest.approx(0.5)  # means 0.3, 1.0, 0.5
    check_unit(kw, PowerUnit.KW)
    watts = _table({"a": [200.0, 400.0], "b": [1000.0, 1000.0], "c": [500.0, 500.0]})
    with pytest.raises(DataError, match=r"hand: the median customer load is 500 kW read as kW \(mean \|p\| of each "
                       r"of 3 customer\(s\), median over them\), above the 0.005 .. 50 kW plausible for a "
                       r"customer of this feeder: the values look like W, not kW: use --unit W if they are power, or "
                       r"--unit Wh if they are energy per 900 s interval"):
        check_unit(watts, PowerUnit.KW)
    with pytest.raises(DataError, match=r"0.0005 kW read as W .* below .* look like kW, not W: use --unit kW"):
        check_unit(_table({"a": [0.0005, 0.0005]}), PowerUnit.W)
    with pytest.raises(DataError, match=r"check the values and --unit W"):
        check_unit(watts, PowerUnit.W)  # too large even as W: no smaller unit to propose
    check_unit(_table({"a": [np.nan]}), PowerUnit.KW)  # nothing to judge


def test_partial_read_orders_known_customers_then_the_others(three_customers: Feeder, tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("time,c2_B,x_A,c1_A\n2024-03-01T00:00Z,2,5,1\n2024-03-01T00:15Z,2,5,1\n")
    table = read_meter_data(path, unit=PowerUnit.KW, customers=three_customers.customers, exact=False)
    assert table.customer_ids == ("c1", "c2", "x")
    np.testing.assert_array_equal(table.p_kw[0, :, 0], [1.0, 2.0, 5.0])
    with pytest.raises(DataError, match=r"1 customer\(s\) with no data: 'c3'"):
        read_meter_data(path, unit=PowerUnit.KW, customers=three_customers.customers)


def test_text_in_a_value_cell_is_refused_in_every_format(tmp_path: Path) -> None:
    long = tmp_path / "long.csv"
    long.write_text("time,customer,terminal,p\n2024-03-01T00:00Z,a,1,1\n2024-03-01T00:15Z,a,1,NA\n"
                    "2024-03-01T00:30Z,a,1,\n")
    with pytest.raises(DataError, match=r"long.csv: 1 problem\(s\):\n  1. column 'p': 1 value\(s\) are not finite "
                       r"numbers: 'NA' at line 3; write numbers, and leave the cell of a missing value empty$"):
        read_meter_data(long, unit=PowerUnit.KW)
    long.write_text(long.read_text().replace(",NA\n", ",2\n"))
    assert read_meter_data(long, unit=PowerUnit.KW).quality.nan_values == 1  # the empty cell is a gap
    frame = pd.DataFrame({"time": pd.date_range(T0, periods=2, freq="15min"), "a_1": ["1.5", "n/a"]})
    frame.to_parquet(tmp_path / "m.parquet")
    with pytest.raises(DataError, match=r"column 'a_1': 1 value\(s\) are not finite numbers: 'n/a' at row 1"):
        read_meter_data(tmp_path / "m.parquet", unit=PowerUnit.KW)
