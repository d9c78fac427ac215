"""The watch's modelled likelihood-ratio test (``controllers/identification/change_test.py``) on a linear model:
its per-interval ratios against the Gaussian likelihoods of the two models computed in full, its window
statistic against a brute-force maximum, and a move on a synthetic feeder reported once, a still one never."""

from __future__ import annotations

import numpy as np
import pytest

from controllers.identification.change_test import (
    day_evidence_nats,
    fit_residuals,
    log_likelihood_ratios,
    modelled_changes,
    window_statistics,
)
from controllers.identification.watch import watch_phases

PHASE = np.array([0, 1, 2, 0, 1, 2, 0, 1])


def _sensitivity(n: int, seed: int = 3) -> np.ndarray:
    """[i, k, j, φ] V/kW: a radial-like structure, larger on the same phase and for nearby customers."""
    rng = np.random.default_rng(seed)
    near = np.exp(-np.abs(np.subtract.outer(np.arange(n), np.arange(n))) / 2.0)
    same = np.eye(3)[None, :, None, :]
    return (0.6 * same - 0.15 * (1 - same)) * near[:, None, :, None] * rng.uniform(0.8, 1.2, (n, 3, n, 3))


def _case(move_at: int | None, *, n_t: int = 960, seed: int = 5) -> tuple[np.ndarray, ...]:
    """Voltages of the linear model with meter noise; customer 0 on phase B from ``move_at``."""
    rng = np.random.default_rng(seed)
    n = PHASE.size
    s = _sensitivity(n)
    p = rng.gamma(1.5, 0.6, size=(n_t, n))
    ref = 230.0 + rng.normal(0, 1.0, size=(n_t, 3)) + np.cumsum(rng.normal(0, 0.1, size=(n_t, 3)), axis=0)
    on = np.broadcast_to(PHASE, (n_t, n)).copy()
    if move_at is not None:
        on[move_at:, 0] = 1
    v = np.take_along_axis(ref, on, axis=1) - _drops(p, s, on) + rng.normal(0, 0.3, size=(n_t, n))
    return v, ref, p, s


def _drops(p: np.ndarray, s: np.ndarray, on: np.ndarray) -> np.ndarray:
    """[t, i] Σ_j S[i, on_i, j, on_j]·p_j(t), interval by interval (the slow, plain way)."""
    n_t, n = p.shape
    out = np.zeros((n_t, n))
    for t in range(n_t):
        for i in range(n):
            out[t, i] = sum(s[i, on[t, i], j, on[t, j]] * p[t, j] for j in range(n))
    return out


def test_the_ratios_are_the_two_models_gaussian_log_likelihoods_computed_in_full() -> None:
    v, ref, p, s = _case(move_at=None, n_t=60)
    fit = fit_residuals(v, ref, p, s, PHASE)
    llr = log_likelihood_ratios(v, ref, p, s, PHASE, fit)
    for i, k in [(0, 1), (0, 2), (3, 2), (7, 0)]:
        alternative = PHASE.copy()
        alternative[i] = k
        ll = []
        for model in (PHASE, alternative):
            on = np.broadcast_to(model, v.shape)
            predicted = np.take_along_axis(ref, on, axis=1) - _drops(p, s, on) + fit.offset_v
            ll.append(-0.5 * ((v - predicted) ** 2 / fit.var_v2).sum(axis=1))
        np.testing.assert_allclose(llr[:, i, k], ll[1] - ll[0], rtol=1e-9, atol=1e-9)
        # the evidence had i moved: the two models' predictions apart, Σ_m (Δ_m)² / (2σ_m²)
        on = [np.broadcast_to(m, v.shape) for m in (PHASE, alternative)]
        apart = [np.take_along_axis(ref, o, axis=1) - _drops(p, s, o) for o in on]
        kl = log_likelihood_ratios(v, ref, p, s, PHASE, fit, expected=True)
        np.testing.assert_allclose(kl[:, i, k], ((apart[1] - apart[0]) ** 2 / (2 * fit.var_v2)).sum(axis=1),
                                   rtol=1e-9, atol=1e-9)
    assert (llr[:, np.arange(PHASE.size), PHASE] == 0).all()


def test_a_day_gives_more_evidence_of_a_customer_that_uses_more_power() -> None:
    v, ref, p, s = _case(move_at=None, n_t=192)
    fit = fit_residuals(v, ref, p, s, PHASE)
    evidence = day_evidence_nats(v, ref, p, s, PHASE, fit, window=96)
    more = p.copy()
    more[:, 0] *= 3.0
    assert evidence.shape == (PHASE.size,) and (evidence > 0).all()
    assert day_evidence_nats(v, ref, more, s, PHASE, fit, window=96)[0] > 1.2 * evidence[0]


def test_the_window_statistic_is_the_largest_sum_over_the_change_time() -> None:
    llr = np.random.default_rng(2).normal(-0.2, 1.0, size=(50, 3, 3))
    got = window_statistics(llr, ends=range(10, 51, 7), window=12, since=15)
    for row, end in enumerate(range(10, 51, 7)):
        first = max(end - 12, 15)
        brute = np.max([llr[t0:end].sum(axis=0) for t0 in range(first, end)], axis=0) if first < end else 0.0
        np.testing.assert_allclose(got[row], brute)


def test_a_moved_customer_is_reported_once_within_a_window_and_a_still_feeder_never() -> None:
    v, ref, p, s = _case(move_at=700)
    changes, threshold = modelled_changes(v_v=v, ref_v_v=ref, p_kw=p, sensitivity=s, phase=PHASE, model_phase=PHASE,
                                          window=96, step=4, start=480)
    assert threshold > 0
    assert [(c.customer, c.from_phase, c.to_phase) for c in changes] == [(0, 0, 1)]
    assert 700 < changes[0].noticed_at <= 700 + 96 and changes[0].statistic_nats > threshold
    v, ref, p, s = _case(move_at=None)
    assert modelled_changes(v_v=v, ref_v_v=ref, p_kw=p, sensitivity=s, phase=PHASE, model_phase=PHASE, window=96,
                            step=4, start=480)[0] == []


def test_an_unwatched_customer_is_in_the_model_but_never_reported() -> None:
    v, ref, p, s = _case(move_at=700)
    unwatched = PHASE.copy()
    unwatched[0] = -1
    assert watch_phases(v_v=v, ref_v_v=ref, p_kw=p, sensitivity=s, phase=unwatched, reference_phase=PHASE,
                        window=96, step=4, start=480, confirm=1) == []
    found = watch_phases(v_v=v, ref_v_v=ref, p_kw=p, sensitivity=s, phase=PHASE, window=96, step=4, start=480,
                         confirm=1)
    assert [(c.customer, c.to_phase) for c in found] == [(0, 1)] and np.isnan(found[0].confidence)


def test_the_modelled_watch_refuses_missing_powers_bad_shapes_and_a_short_calibration() -> None:
    v, ref, p, s = _case(move_at=None, n_t=200)
    settings = {"v_v": v, "ref_v_v": ref, "phase": PHASE, "window": 96, "step": 4}
    with pytest.raises(ValueError, match="powers"):
        watch_phases(**settings, sensitivity=s, start=100)
    with pytest.raises(ValueError, match="sensitivity"):
        watch_phases(**settings, p_kw=p, sensitivity=s[:4, :, :4], start=100)
    with pytest.raises(ValueError, match="calibration"):
        watch_phases(**settings, p_kw=p, sensitivity=s, start=50)
    with pytest.raises(ValueError, match="margin"):
        watch_phases(**settings, p_kw=p, sensitivity=s, start=100, margin=0.0)
