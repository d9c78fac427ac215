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

from dataclasses import dataclass

import numpy as np
from scipy.special import log_ndtr

from controllers.identification.identifiability import variance_inflation

__all__ = ["DIFFERENCE_SPREAD", "GUESS_CROSS", "DifferenceEvidence", "difference_evidence", "difference_log_probabilities"]

DIFFERENCE_SPREAD = 0.03
"""Spread of the log variance ratio ln(s_j/s_k) that no amount of data removes (taken √2 × in a pair). Measured in
``benchmarks/phase_identification.py``: on the IEEE feeder the wrong phase's residual variance was below the true
one's by up to 0.053 in log (a month of hourly class-1.0 data; far customers whose drop moves with the
transformer's imbalance); at 0.03 a margin must exceed ≈ 0.11 for 0.99, twice that."""
GUESS_CROSS = 0.2
"""Correlation bound ρ of the cross term between a customer's unexplained drop (the other customers' loads on its
path) and the transformer's phase imbalance, used for the best guess of a customer no test is sure of. On a wrong
phase j the residual variance is s_k + var(δ) + 2 cov(r_k, δ), δ the imbalance, and |2 cov| ≤ 2ρ √(s_k var(δ)):
relative to s_k, 2ρ √(s_j/s_k − 1), added in quadrature to the standard error of ln(s_j/s_k). Not used for the
confidence: with it the identifiable share on the Kerber grid fell from 61 to 37 % (30 days of hourly data, half
metered) without any wrong high-confidence answer to remove. Measured in ``benchmarks/phase_identification.py``
(IEEE feeder, 7 days of hourly class-1.0 data: best phase right for 94.5–100 % instead of 92.7–94.5 %)."""


@dataclass(frozen=True)
class DifferenceEvidence:
    """The test's data-side evidence, independent of the model spread: ``log_ratio[i, k, j]`` = ln(s_j / s_k) (phase
    k beats phase j by it), ``sampling[i, k, j]`` its sampling error (NaN where customer i has fewer than 4 common
    intervals: no evidence) and ``variance[i, k]`` the residual variances s_k (V²)."""

    log_ratio: np.ndarray
    sampling: np.ndarray
    variance: np.ndarray

    def log_probabilities(self, spread: float = DIFFERENCE_SPREAD, *, cross: float = 0.0) -> np.ndarray:
        """[i, k] ln P(phase k is customer i's best) with the model spread ``spread`` and the cross-term
        correlation ``cross`` (``GUESS_CROSS``; 0: none) in the standard error (0 where no evidence)."""
        variance = self.sampling**2 + 2.0 * spread**2 + 4.0 * cross**2 * np.abs(np.expm1(self.log_ratio))
        margin = self.log_ratio / np.sqrt(variance)
        pair = np.where(np.isfinite(margin), log_ndtr(np.nan_to_num(margin)), 0.0)
        return np.asarray(pair.sum(axis=2))


def difference_log_probabilities(v_v: np.ndarray, ref_v_v: np.ndarray, p_kw: np.ndarray | None, *,
                                 spread: float = DIFFERENCE_SPREAD) -> tuple[np.ndarray, np.ndarray]:
    """[i, k] ln P(phase k is customer i's best under the test), and [i, k] the residual variances s_k (V²), for
    meter voltages ``v_v[t, i]`` (V, NaN where missing), the transformer's ``ref_v_v[t, φ]`` and the customers'
    powers ``p_kw[t, i]`` (kW, NaN where missing; None: no own-load term). A customer with fewer than 4 common
    intervals gets log-probabilities 0 (no evidence)."""
    evidence = difference_evidence(v_v, ref_v_v, p_kw)
    return evidence.log_probabilities(spread), evidence.variance


def difference_evidence(v_v: np.ndarray, ref_v_v: np.ndarray, p_kw: np.ndarray | None) -> DifferenceEvidence:
    """The test's evidence for meter voltages ``v_v[t, i]`` (V, NaN where missing), the transformer's
    ``ref_v_v[t, φ]`` and the customers' powers ``p_kw[t, i]`` (kW, NaN where missing; None: no own-load
    term)."""
    n = v_v.shape[1]
    d = v_v[:, :, None] - ref_v_v[:, None, :]
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
    square = resid * resid
    s = square.sum(axis=0) / np.maximum(count, 1)
    log_ratio = np.zeros((n, 3, 3))
    sampling = np.full((n, 3, 3), np.nan)
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
                sampling[i, k, j] = float(g.std()) * np.sqrt(variance_inflation(g[:, None]) / g.size) / s[i, k]
                log_ratio[i, k, j] = np.log(s[i, j] / s[i, k])
    return DifferenceEvidence(log_ratio=log_ratio, sampling=sampling, variance=s)
