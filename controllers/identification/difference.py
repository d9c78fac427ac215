"""The voltage-difference test: which of the transformer's phase voltages a customer's meter voltage follows.

A customer on phase φ sees the transformer's phase-φ voltage less the drop along its feeder:
V_i(t) = V_φ(t) − drop_i(t). Its difference to each phase, d_ik(t) = V_i(t) − V_k(t), after the part explained by
a constant and its own power (the drop its own load causes, with a free slope), leaves a residual r_ik(t); on a
wrong phase k the residual also carries V_φ − V_k, the transformer's phase imbalance, which the own load does
not explain. So the true phase is the one of least residual variance s_k = mean r_ik².

The test is paired (Diebold–Mariano): phase k beats phase j by L = ln(s_j / s_k), with the sampling error of the
mean of g(t) = r_ij(t)² − r_ik(t)² (its standard deviation, inflated by its autocorrelation,
``identifiability.variance_inflation``, over √n, relative to s_k) and ``DIFFERENCE_SPREAD`` in quadrature, the
model's own error that more data do not remove (the drops of other customers on the feeder need not be
uncorrelated with the imbalance). P(k beats j) = Φ(L / se), and a phase's log-probability is the sum over the
other two phases of ln Φ.

This complements the correlation: it needs no other customer (unmetered neighbours do not disturb it) and it is
strongest where the correlation is weakest, near the transformer, where a customer's own signal is small but its
voltage follows its phase's almost exactly.
"""

from __future__ import annotations

import numpy as np
from scipy.special import log_ndtr

from controllers.identification.identifiability import variance_inflation

__all__ = ["DIFFERENCE_SPREAD", "difference_log_probabilities", "residual_variances"]

DIFFERENCE_SPREAD = 0.03
"""Spread of the log variance ratio ln(s_j/s_k) that no amount of data removes (taken √2 × in a pair). Measured in
``benchmarks/phase_identification.py``: on the IEEE feeder the wrong phase's residual variance was below the true
one's by up to 0.053 in log (a month of hourly class-1.0 data; far customers whose drop moves with the
transformer's imbalance); at 0.03 a margin must exceed ≈ 0.11 for 0.99, twice that."""


def difference_log_probabilities(v_v: np.ndarray, ref_v_v: np.ndarray, p_kw: np.ndarray | None, *,
                                 spread: float = DIFFERENCE_SPREAD,
                                 drop_v: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """[i, k] ln P(phase k is customer i's best under the test), and [i, k] the residual variances s_k (V²), for
    meter voltages ``v_v[t, i]`` (V, NaN where missing), the transformer's ``ref_v_v[t, φ]`` and the customers'
    powers ``p_kw[t, i]`` (kW, NaN where missing; None: no own-load term); ``drop_v[t, i, k]`` (V, optional) the
    drop the other customers cause at customer i on phase k (``sensitivity.other_drops_v``), added back to its
    difference to phase k. A customer with fewer than 4 common intervals gets log-probabilities 0 (no
    evidence)."""
    n = v_v.shape[1]
    resid, ok, count = _residuals(v_v, ref_v_v, p_kw, drop_v)
    square = resid * resid
    s = square.sum(axis=0) / np.maximum(count, 1)
    log_p = np.zeros((n, 3))
    for i in range(n):
        n_i = int(count[i].min())
        if n_i < 4 or (s[i] <= 0).any():
            continue
        both = ok[:, i].all(axis=1)
        for k in range(3):
            for j in range(3):
                if j == k:
                    continue
                g = (square[:, i, j] - square[:, i, k])[both]
                sampling = float(g.std()) * np.sqrt(variance_inflation(g[:, None]) / g.size) / s[i, k]
                margin = np.log(s[i, j] / s[i, k]) / np.sqrt(sampling**2 + 2.0 * spread**2)
                log_p[i, k] += float(log_ndtr(margin))
    return log_p, s


def residual_variances(v_v: np.ndarray, ref_v_v: np.ndarray, p_kw: np.ndarray | None,
                       drop_v: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """[i, k] the residual variance s_k (V²) of ``difference_log_probabilities`` and [i, k] the intervals it is
    taken over."""
    resid, _, count = _residuals(v_v, ref_v_v, p_kw, drop_v)
    return (resid * resid).sum(axis=0) / np.maximum(count, 1), count


def _residuals(v_v: np.ndarray, ref_v_v: np.ndarray, p_kw: np.ndarray | None,
               drop_v: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """[t, i, k] the residual of customer i's difference to phase k after a constant and its own power (0 where
    missing), [t, i, k] where it is defined, and [i, k] the count."""
    d = v_v[:, :, None] - ref_v_v[:, None, :]
    if drop_v is not None:
        d = d + drop_v
    ok = np.isfinite(d)
    count = ok.sum(axis=0)
    d0 = np.where(ok, d, 0.0)
    mean = d0.sum(axis=0) / np.maximum(count, 1)
    resid = np.where(ok, d0 - mean, 0.0)
    if p_kw is not None:
        p_ok = np.isfinite(p_kw)
        p_mean = np.where(p_ok, p_kw, 0.0).sum(axis=0) / np.maximum(p_ok.sum(axis=0), 1)
        p_filled = np.where(p_ok, p_kw, p_mean)[:, :, None]
        x = np.where(ok, p_filled - (np.where(ok, p_filled, 0.0).sum(axis=0) / np.maximum(count, 1)), 0.0)
        xx = (x * x).sum(axis=0)
        slope = np.where(xx > 0, (x * resid).sum(axis=0) / np.where(xx > 0, xx, 1.0), 0.0)
        resid = resid - slope * x
    return resid, ok, count
