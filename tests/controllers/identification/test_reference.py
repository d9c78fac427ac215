"""The denoised transformer reference against the imbalance that generated it."""

from __future__ import annotations

import numpy as np
import pytest

from controllers.identification.reference import MIN_INTERVALS_PER_PARAMETER, denoised_reference


def _transformer(rng: np.random.Generator, n_t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Phase powers, the true phase voltages (an MV drift, each phase's drop under its own load and a rise under
    the others' through the neutral) and the voltages a class-0.2 meter reads (σ = 0.2/3 % of 230 V)."""
    p_kw = rng.gamma(2.0, 15.0, size=(n_t, 3))
    mv = 235.0 + np.cumsum(rng.normal(0, 0.05, n_t))
    drop = np.array([[0.020, -0.006, -0.006], [-0.006, 0.020, -0.006], [-0.006, -0.006, 0.020]])
    true_v = mv[:, None] - p_kw @ drop
    return p_kw, true_v, true_v + rng.normal(0, 0.002 / 3 * 230, size=true_v.shape)


def _imbalance(v: np.ndarray) -> np.ndarray:
    """[t, 2] V_A − V_B and V_B − V_C."""
    return v[:, [0, 1]] - v[:, [1, 2]]


def _rms_error(got: np.ndarray, true_v: np.ndarray) -> float:
    """RMS error of the imbalance's variations (its constant is not what the tests use)."""
    error = _imbalance(got) - _imbalance(true_v)
    return float(np.sqrt(np.mean((error - error.mean(axis=0)) ** 2)))


def test_the_imbalance_is_recovered_far_below_the_meter_noise_and_the_common_mode_is_kept() -> None:
    rng = np.random.default_rng(5)
    p_kw, true_v, read_v = _transformer(rng, 720)
    out = denoised_reference(read_v, p_kw)
    assert _rms_error(read_v, true_v) > 0.15  # the reading's own noise: 0.15 V · √2 ≈ 0.22 V
    assert _rms_error(out, true_v) < 0.03
    np.testing.assert_allclose(out.mean(axis=1), read_v.mean(axis=1), atol=1e-9)


def test_intervals_without_powers_keep_their_readings_and_too_few_leave_all_unchanged() -> None:
    rng = np.random.default_rng(6)
    p_kw, _, read_v = _transformer(rng, 200)
    p_kw[:5, 1] = np.nan
    read_v[7] = np.nan
    out = denoised_reference(read_v, p_kw)
    np.testing.assert_array_equal(out[:5], read_v[:5])
    assert np.isnan(out[7]).all()
    assert not np.allclose(out[10:], read_v[10:])
    few = 4 * MIN_INTERVALS_PER_PARAMETER - 1
    np.testing.assert_array_equal(denoised_reference(read_v[:few + 5], p_kw[:few + 5]), read_v[:few + 5])


def test_mismatched_shapes_name_both() -> None:
    with pytest.raises(ValueError, match=r"transformer voltages \(10, 3\) and powers \(10, 2\)"):
        denoised_reference(np.zeros((10, 3)), np.zeros((10, 2)))
