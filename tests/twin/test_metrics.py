"""Each metric against a value computed by hand."""

import numpy as np
import pytest

from twin import metrics


def test_p_unb_is_the_sum_of_absolute_deviations_from_the_phase_mean() -> None:
    # loads 10, 4, 1 kW: mean 5, deviations 5, 1, 4
    assert metrics.p_unb_kw(np.array([10.0, 4.0, 1.0])) == pytest.approx(10.0)


def test_p_unb_is_zero_for_balanced_phases_and_keeps_pv_sign() -> None:
    assert metrics.p_unb_kw(np.array([[3.0, 3.0, 3.0], [-2.0, 2.0, 0.0]])) == pytest.approx([0.0, 4.0])


def test_phase_loads_group_customers_by_lv_feeder() -> None:
    # customers: c0 (feeder 0) 1 kW on A, c1 (feeder 1) 2 kW on B, c2 (feeder 0) 4 kW on C and -1 kW on A
    p = np.array([[[1.0, 0, 0], [0, 2.0, 0], [-1.0, 0, 4.0]]])
    loads = metrics.phase_loads_kw(p, np.array([0, 1, 0]), 2)
    assert loads[0].tolist() == [[0.0, 0.0, 4.0], [0.0, 2.0, 0.0]]


def test_current_unbalance_is_max_over_mean_minus_one() -> None:
    # 100, 50, 30 A: mean 60, (3*100 - 180)/180 = 2/3
    assert metrics.current_unbalance(np.array([100.0, 50.0, 30.0])) == pytest.approx(2.0 / 3.0)
    assert metrics.current_unbalance(np.array([[0.0, 0.0, 0.0], [7.0, 7.0, 7.0]])) == pytest.approx([0.0, 0.0])


def test_vuf_of_a_lost_phase_is_fifty_percent() -> None:
    # Va = 1∠0, Vb = 1∠-120°, Vc = 0: V1 = 2/3, V2 = |1 + a|/3 = 1/3
    vuf = metrics.voltage_unbalance_factor_pct(np.array([1.0, 1.0, 0.0]), np.array([0.0, -120.0, 0.0]))
    assert vuf == pytest.approx(50.0)


def test_vuf_of_a_balanced_set_is_zero_whatever_the_rotation() -> None:
    vuf = metrics.voltage_unbalance_factor_pct(np.array([0.97, 0.97, 0.97]), np.array([-30.0, -150.0, 90.0]))
    assert vuf == pytest.approx(0.0, abs=1e-9)


def test_vuf_of_phasors_is_the_sequence_ratio_and_the_polar_form() -> None:
    rng = np.random.default_rng(5)
    v = rng.normal(size=(4, 7, 3)) + 1j * rng.normal(size=(4, 7, 3))
    _, v1, v2 = metrics.sequence_components(v)
    ours = metrics.voltage_unbalance_factor_pct_of_phasors(v)
    np.testing.assert_allclose(ours, 100 * np.abs(v2) / np.abs(v1), rtol=1e-12)
    np.testing.assert_allclose(ours, metrics.voltage_unbalance_factor_pct(np.abs(v), np.angle(v, deg=True)),
                               rtol=1e-12)
    lost_phase = np.array([1.0, np.exp(-2j * np.pi / 3), 0.0])
    assert metrics.voltage_unbalance_factor_pct_of_phasors(lost_phase) == pytest.approx(50.0)
    assert metrics.voltage_unbalance_factor_pct_of_phasors(np.zeros(3)) == 0.0


def test_neutral_current_of_two_equal_phases_equals_one_phase() -> None:
    a = np.exp(-2j * np.pi / 3)
    assert metrics.neutral_current(np.array([10.0, 10.0 * a, 0.0])) == pytest.approx(10.0)


def test_sequence_components_rebuild_the_phase_values() -> None:
    rng = np.random.default_rng(3)
    v = rng.normal(size=3) + 1j * rng.normal(size=3)
    v0, v1, v2 = metrics.sequence_components(v)
    a = np.exp(2j * np.pi / 3)
    rebuilt = np.array([v0 + v1 + v2, v0 + a**2 * v1 + a * v2, v0 + a * v1 + a**2 * v2])
    assert np.allclose(rebuilt, v)


def _kpis(**overrides: float) -> metrics.Kpis:
    base = dict(p_unb_kwh=100.0, peak_neutral_a=100.0, mean_neutral_a=30.0, peak_trafo_loading_pct=50.0,
                vm_min_pu=0.95, vm_max_pu=1.05, max_vuf_pct=1.0, switch_operations=0)
    return metrics.Kpis(**(base | overrides))  # type: ignore[arg-type]


def _changes(run: metrics.Kpis, base: metrics.Kpis) -> dict[str, metrics.KpiChange]:
    return {c.name: c for c in metrics.kpi_changes(run, base, vm_min_limit_pu=0.9, vm_max_limit_pu=1.1)}


def test_a_kpi_that_rises_beyond_the_tolerance_is_worse_and_one_within_it_is_not() -> None:
    # the SimBench case of issue 28: P_unb falls, the peak neutral current rises from 101 to 120 A
    changes = _changes(_kpis(p_unb_kwh=80.0, peak_neutral_a=120.0, mean_neutral_a=30.02, switch_operations=40),
                       _kpis(peak_neutral_a=101.0))
    assert changes["peak_neutral_a"].worse and changes["peak_neutral_a"].change_pct == pytest.approx(100 * 19 / 101)
    assert not changes["p_unb_kwh"].worse and changes["p_unb_kwh"].change_text() == "-20.0 %"
    assert not changes["mean_neutral_a"].worse  # +0.07 % < REL_TOL
    assert not changes["switch_operations"].worse and changes["switch_operations"].change_text() == "+40"


def test_voltages_are_worse_when_they_move_towards_a_limit_and_broken_when_they_leave_it() -> None:
    # V_min 0.990 -> 0.983 (issue 28): worse, inside the limit
    c = _changes(_kpis(vm_min_pu=0.983), _kpis(vm_min_pu=0.990))["vm_min_pu"]
    assert c.worse and c.note == "inside the limit 0.9" and not metrics.breaks_limit(c)
    # V_max 1.09 -> 1.12 breaks 1.1 where no control is inside
    c = _changes(_kpis(vm_max_pu=1.12), _kpis(vm_max_pu=1.09))["vm_max_pu"]
    assert c.worse and metrics.breaks_limit(c)
    # below the limit with and without control, but less deep: better, not broken
    c = _changes(_kpis(vm_min_pu=0.89), _kpis(vm_min_pu=0.88))["vm_min_pu"]
    assert not c.worse and not metrics.breaks_limit(c) and "so is no control" in c.note
