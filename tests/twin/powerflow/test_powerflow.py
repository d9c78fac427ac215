"""Three-phase power flow: the two engines agree, match a hand calculation, batch like single, fail loudly.

pandapower's runpp_3ph takes 0.1-0.4 s per state on the 906-bus IEEE feeder here, so it solves the 50 random
states once (module fixture) and the other IEEE cases use at most 3 states.
"""

from __future__ import annotations

import cmath
import math

import numpy as np
import pytest
from support.small_feeders import two_bus_feeder

from streams.meters.table import MeterTable
from twin.errors import PowerFlowError
from twin.network import Feeder, VectorGroup
from twin.phase import Phase
from twin.phasing import PhaseMap
from twin.powerflow import (
    Engine,
    PowerFlow,
    PowerFlowNotConverged,
    PowerFlowResult,
    create_powerflow,
)

TAN_PHI = math.tan(math.acos(0.95))
N_RANDOM_STATES = 50
VM_TOL_PU = 1e-3
# Currents are compared as a fraction of each cable's rating: 1e-3 of the rating is the current counterpart of
# the 1e-3 p.u. voltage criterion, and it is what loading limits are checked against.
LOADING_TOL = 1e-3


@pytest.fixture(scope="module")
def pgm(ieee_feeder: Feeder) -> PowerFlow:
    return create_powerflow(ieee_feeder, engine=Engine.PGM)


@pytest.fixture(scope="module")
def pandapower(ieee_feeder: Feeder) -> PowerFlow:
    return create_powerflow(ieee_feeder, engine=Engine.PANDAPOWER)


def random_states(feeder: Feeder, *, n_states: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Each customer draws 0-5 kW on its own phase, a quarter of them inject 0-5 kW (PV) instead; pf 0.95."""
    rng = np.random.default_rng(seed)
    p_kw = np.zeros((n_states, len(feeder.customers), 3))
    for i, c in enumerate(feeder.customers):
        p_kw[:, i, c.phases[0]] = rng.uniform(0.0, 5.0, n_states)
    pv = rng.random((n_states, len(feeder.customers))) < 0.25
    p_kw[pv] *= -1.0
    return p_kw, p_kw * TAN_PHI


@pytest.fixture(scope="module")
def random_solved(
    ieee_feeder: Feeder, pgm: PowerFlow, pandapower: PowerFlow
) -> tuple[PowerFlowResult, PowerFlowResult]:
    p_kw, q_kvar = random_states(ieee_feeder, n_states=N_RANDOM_STATES, seed=20240115)
    return pgm.solve(p_kw=p_kw, q_kvar=q_kvar), pandapower.solve(p_kw=p_kw, q_kvar=q_kvar)


# --- (a) the engines agree on the IEEE European LV feeder ---------------------------------------------------


def test_engines_agree_on_every_bus_phase_voltage(random_solved: tuple[PowerFlowResult, PowerFlowResult]) -> None:
    fast, ref = random_solved
    assert fast.converged.all() and ref.converged.all()
    assert fast.vm_pu.shape == (N_RANDOM_STATES, 907, 3)
    assert np.abs(fast.vm_pu - ref.vm_pu).max() <= VM_TOL_PU
    # Same source angle reference and same transformer shift in both, so angles agree without any offset.
    assert np.abs(fast.va_deg - ref.va_deg).max() <= 1e-3
    assert np.abs(fast.v_v - ref.v_v).max() <= VM_TOL_PU * 416 / math.sqrt(3)


def test_engines_agree_on_currents_and_transformer_power(
    ieee_feeder: Feeder, random_solved: tuple[PowerFlowResult, PowerFlowResult]
) -> None:
    fast, ref = random_solved
    max_i_ka = np.array([ln.max_i_ka for ln in ieee_feeder.lines])
    assert np.abs(fast.loading - ref.loading).max() <= LOADING_TOL
    assert (np.abs(fast.i_n_ka - ref.i_n_ka) / max_i_ka).max() <= LOADING_TOL
    sn_phase_kva = ieee_feeder.transformer.sn_kva / 3
    assert np.abs(fast.p_trafo_kw - ref.p_trafo_kw).max() <= LOADING_TOL * sn_phase_kva
    assert np.abs(fast.q_trafo_kvar - ref.q_trafo_kvar).max() <= LOADING_TOL * sn_phase_kva
    np.testing.assert_allclose(fast.loss_kw, ref.loss_kw, rtol=1e-3)
    assert ref.i_n_ka.max() > 0.01, "random single-phase loads must produce a neutral current"


def test_engines_follow_the_powerflow_protocol(pgm: PowerFlow, pandapower: PowerFlow) -> None:
    assert isinstance(pgm, PowerFlow) and pgm.engine is Engine.PGM
    assert isinstance(pandapower, PowerFlow) and pandapower.engine is Engine.PANDAPOWER


# --- (b) a hand-computed two-bus case ------------------------------------------------------------------------


def one_state(*, p_abc_kw: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    p_kw = np.array(p_abc_kw, dtype=float).reshape(1, 1, 3)
    return p_kw, p_kw * TAN_PHI


def hand_balanced(feeder: Feeder, *, p_phase_kw: float) -> tuple[complex, complex]:
    """Per-phase equivalent: EMF behind source + transformer + line impedance (all referred to LV) feeding a
    constant-power load; fixed-point V = E - Z·conj(S/V). Returns (V at LV1, phase current), V and A."""
    src, tr, ln = feeder.source, feeder.transformer, feeder.lines[0]
    v_base = tr.vn_lv_kv * 1e3 / math.sqrt(3)
    e = src.vm_pu * v_base * cmath.exp(-1j * math.radians(tr.shift_deg))
    z_src_hv = src.vn_kv**2 / src.s_sc_mva
    x_src_hv = z_src_hv / math.sqrt(1 + src.rx_ratio**2)
    z_src = complex(src.rx_ratio * x_src_hv, x_src_hv) * (tr.vn_lv_kv / tr.vn_hv_kv) ** 2
    z_base_tr = tr.vn_lv_kv**2 / (tr.sn_kva * 1e-3)
    r_tr = tr.vkr_percent / 100 * z_base_tr
    z_tr = complex(r_tr, math.sqrt((tr.vk_percent / 100 * z_base_tr) ** 2 - r_tr**2))
    z_line = complex(ln.r1_ohm_per_km, ln.x1_ohm_per_km) * ln.length_km
    s_va = complex(p_phase_kw, p_phase_kw * TAN_PHI) * 1e3
    v = e
    for _ in range(100):
        v = e - (z_src + z_tr + z_line) * (s_va / v).conjugate()
    return v, (s_va / v).conjugate()


@pytest.mark.parametrize("engine", list(Engine))
def test_balanced_load_matches_hand_calculation(engine: Engine) -> None:
    feeder = two_bus_feeder()
    p_phase_kw = 40.0
    p_kw, q_kvar = one_state(p_abc_kw=(p_phase_kw,) * 3)
    result = create_powerflow(feeder, engine=engine).solve(p_kw=p_kw, q_kvar=q_kvar)

    v_lv1, i_a = hand_balanced(feeder, p_phase_kw=p_phase_kw)
    v_base = 416 / math.sqrt(3)
    np.testing.assert_allclose(result.vm_pu[0, 2], abs(v_lv1) / v_base, atol=1e-6)
    np.testing.assert_allclose(result.va_deg[0, 2], math.degrees(cmath.phase(v_lv1)) + np.array([0, -120, 120]),
                               atol=1e-4)
    np.testing.assert_allclose(result.i_ka[0, 0], abs(i_a) * 1e-3, rtol=1e-6)
    assert result.i_n_ka[0, 0] < 1e-9, "balanced load: no neutral current"

    # The textbook drop along the cable, I = S/(√3 V), ΔV ≈ I (R cos φ + X sin φ), holds to its own
    # approximation error (the neglected quadrature term, ~0.1 % of ΔV here).
    line = feeder.lines[0]
    i_approx_a = 3 * p_phase_kw * 1e3 / 0.95 / (math.sqrt(3) * abs(v_lv1) * math.sqrt(3))
    dv_approx_v = i_approx_a * line.length_km * (line.r1_ohm_per_km * 0.95 + line.x1_ohm_per_km * math.sin(
        math.acos(0.95)))
    dv_v = result.v_v[0, 1] - result.v_v[0, 2]
    np.testing.assert_allclose(dv_v, dv_approx_v, rtol=5e-3)

    # Losses of line and transformer (not the MV source), and what the transformer delivers into LV0.
    r_line = line.r1_ohm_per_km * line.length_km
    r_tr = 0.01 * 0.416**2 / 0.25
    np.testing.assert_allclose(result.loss_kw[0], 3 * abs(i_a) ** 2 * (r_line + r_tr) * 1e-3, rtol=1e-6)
    np.testing.assert_allclose(result.p_trafo_kw[0], p_phase_kw + abs(i_a) ** 2 * r_line * 1e-3, rtol=1e-6)


@pytest.mark.parametrize("engine", list(Engine))
def test_single_phase_load_returns_its_whole_current_in_the_neutral(engine: Engine) -> None:
    p_kw, q_kvar = one_state(p_abc_kw=(30.0, 0.0, 0.0))
    result = create_powerflow(two_bus_feeder(), engine=engine).solve(p_kw=p_kw, q_kvar=q_kvar)

    i_a_ka, i_b_ka, i_c_ka = result.i_ka[0, 0]
    assert i_a_ka == pytest.approx(30.0 / 0.95 / (result.v_v[0, 2, Phase.A] * 1e-3) * 1e-3, rel=1e-6)
    # Phases B and C carry nothing but solver residue (pandapower: a few µA at its 1e-8 MVA tolerance).
    assert i_b_ka < 1e-6 and i_c_ka < 1e-6
    assert result.i_n_ka[0, 0] == pytest.approx(i_a_ka, rel=1e-6)
    assert result.vm_pu[0, 2, Phase.A] < result.vm_pu[0, 2, Phase.B]


@pytest.mark.parametrize(
    ("vector_group", "shift_deg"),
    [(VectorGroup.DYN, 30.0), (VectorGroup.DYN, 150.0), (VectorGroup.YNYN, 0.0), (VectorGroup.YNYN, 180.0)],
)
def test_engines_agree_on_every_vector_group_both_support(vector_group: VectorGroup, shift_deg: float) -> None:
    base = two_bus_feeder()
    transformer = base.transformer.model_copy(update={"vector_group": vector_group, "shift_deg": shift_deg})
    feeder = base.model_copy(update={"transformer": transformer})
    p_kw, q_kvar = one_state(p_abc_kw=(60.0, 10.0, -5.0))  # unbalanced: exercises the zero sequence
    fast = create_powerflow(feeder, engine=Engine.PGM).solve(p_kw=p_kw, q_kvar=q_kvar)
    ref = create_powerflow(feeder, engine=Engine.PANDAPOWER).solve(p_kw=p_kw, q_kvar=q_kvar)
    assert np.abs(fast.vm_pu - ref.vm_pu).max() <= 1e-6
    assert np.abs(fast.va_deg - ref.va_deg).max() <= 1e-4
    assert np.abs(fast.i_n_ka - ref.i_n_ka).max() <= 1e-6
    lag_deg = (-fast.va_deg[0, 1, Phase.A]) % 360.0  # LV phase A lags the source by the shift (plus the drop)
    assert lag_deg == pytest.approx(shift_deg, abs=3.0)


def test_unsupported_transformer_setups_are_rejected() -> None:
    base = two_bus_feeder()
    odd_shift = base.model_copy(update={"transformer": base.transformer.model_copy(update={"shift_deg": 0.0})})
    with pytest.raises(PowerFlowError, match=r"shift_deg 0.0 is not possible for Dyn; expected an odd multiple of 30"):
        create_powerflow(odd_shift, engine=Engine.PGM)
    yyn = base.model_copy(update={"transformer": base.transformer.model_copy(
        update={"vector_group": VectorGroup.YYN, "shift_deg": 0.0})})
    with pytest.raises(PowerFlowError, match=r"vector group 'Yyn' is not supported by pandapower runpp_3ph"):
        create_powerflow(yyn, engine=Engine.PANDAPOWER)


# --- (c) a batch equals the same states solved one by one ----------------------------------------------------


def test_batch_equals_single_solves(ieee_feeder: Feeder, ieee_day: MeterTable, pgm: PowerFlow) -> None:
    phase_map = PhaseMap.initial(ieee_feeder.customers)
    p_kw, q_kvar = phase_map.to_phases(ieee_day.p_kw[::180]), phase_map.to_phases(ieee_day.q_kvar[::180])
    batch = pgm.solve(p_kw=p_kw, q_kvar=q_kvar)
    for s in range(p_kw.shape[0]):
        single = pgm.solve(p_kw=p_kw[s : s + 1], q_kvar=q_kvar[s : s + 1])
        for name in ("vm_pu", "va_deg", "i_ka", "i_n_ka", "p_trafo_kw", "q_trafo_kvar", "loss_kw"):
            np.testing.assert_allclose(getattr(single, name)[0], getattr(batch, name)[s], rtol=1e-9, atol=1e-9,
                                       err_msg=f"{name} of state {s}")


# --- (d) states without a solution ---------------------------------------------------------------------------


def collapsing_batch(feeder: Feeder) -> tuple[np.ndarray, np.ndarray]:
    """Three states; state 1 puts 500 kW on phase A at every customer (27.5 MW on an 800 kVA transformer)."""
    p_kw = np.zeros((3, len(feeder.customers), 3))
    for i, c in enumerate(feeder.customers):
        p_kw[:, i, c.phases[0]] = 2.0
    p_kw[1] = 0.0
    p_kw[1, :, Phase.A] = 500.0
    return p_kw, p_kw * TAN_PHI


@pytest.mark.parametrize("engine", list(Engine))
def test_collapse_raises_with_failing_index_and_keeps_the_others(
    ieee_feeder: Feeder, pgm: PowerFlow, pandapower: PowerFlow, engine: Engine
) -> None:
    pf = {Engine.PGM: pgm, Engine.PANDAPOWER: pandapower}.get(engine) or create_powerflow(ieee_feeder, engine=engine)
    p_kw, q_kvar = collapsing_batch(ieee_feeder)
    with pytest.raises(PowerFlowNotConverged, match=r"did not converge for 1 of 3 state\(s\), batch index 1: ") as info:
        pf.solve(p_kw=p_kw, q_kvar=q_kvar)
    err = info.value
    assert err.failed_indices == [1]
    assert err.partial.converged.tolist() == [True, False, True]
    assert np.isnan(err.partial.vm_pu[1]).all() and np.isnan(err.partial.loss_kw[1])
    ok = pf.solve(p_kw=p_kw[[0, 2]], q_kvar=q_kvar[[0, 2]])
    np.testing.assert_allclose(err.partial.vm_pu[[0, 2]], ok.vm_pu, atol=1e-9)


def test_single_state_collapse_raises_too(ieee_feeder: Feeder, pgm: PowerFlow) -> None:
    p_kw, q_kvar = collapsing_batch(ieee_feeder)
    with pytest.raises(PowerFlowNotConverged, match=r"1 of 1 state\(s\), batch index 0: ") as info:
        pgm.solve(p_kw=p_kw[1:2], q_kvar=q_kvar[1:2])
    assert info.value.failed_indices == [0]
    assert not info.value.partial.converged[0]
    # The model is still usable afterwards.
    assert pgm.solve(p_kw=p_kw[:1], q_kvar=q_kvar[:1]).converged.all()


# --- (e) wrong input -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", list(Engine))
def test_wrong_shape_names_the_expected_shape(engine: Engine) -> None:
    pf = create_powerflow(two_bus_feeder(), engine=engine)
    with pytest.raises(PowerFlowError, match=r"p_kw has shape \[1, 3\]; expected shape \[k, 1, 3\]"):
        pf.solve(p_kw=np.zeros((1, 3)), q_kvar=np.zeros((1, 1, 3)))
    with pytest.raises(PowerFlowError, match=r"q_kvar has shape \[2, 2, 3\]; expected shape \[k, 1, 3\]"):
        pf.solve(p_kw=np.zeros((2, 1, 3)), q_kvar=np.zeros((2, 2, 3)))


def test_non_finite_load_is_rejected(pgm: PowerFlow) -> None:
    p_kw = np.zeros((2, 55, 3))
    p_kw[1, 7, 2] = np.nan
    expected = r"p_kw has a non-finite value at \[state, customer, phase\] = \[1, 7, 2\]"
    with pytest.raises(PowerFlowError, match=expected):
        pgm.solve(p_kw=p_kw, q_kvar=np.zeros((2, 55, 3)))


def test_mismatched_p_and_q_batches_are_rejected(pgm: PowerFlow) -> None:
    with pytest.raises(PowerFlowError, match=r"p_kw has shape \[2, 55, 3\] but q_kvar has \[3, 55, 3\]"):
        pgm.solve(p_kw=np.zeros((2, 55, 3)), q_kvar=np.zeros((3, 55, 3)))
