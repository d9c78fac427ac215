"""The watch's modelled test: a likelihood-ratio change-point test of "customer i on phase k since t₀" against
"every customer still on its baseline phase", with the feeder's voltage sensitivities as the model.

With every customer j on its phase b_j, customer m's meter voltage is its phase's transformer voltage less the
drops the loads cause (``sensitivity.voltage_sensitivities``): v_m(t) = V_{b_m}(t) − Σ_j S[m, b_m, j, b_j]·p_j(t)
+ c_m + e_m(t). The residual e_m (meter error, the reference's error, the linearisation's) is taken Gaussian,
its offset c_m and variance σ_m² fitted on the calibration intervals (the baseline).

If customer i is on phase k instead, from t₀ on:

- each other customer m's residual shifts by μ_m(t) = −(S[m, b_m, i, k] − S[m, b_m, i, b_i])·p_i(t): i's load
  now drops the voltage of k's customers (on its own branch most) and no longer of b_i's. This evidence grows
  with i's own consumption: a customer that uses little power gives little of it;
- i's own residual shifts by μ_i(t) = V_k(t) − V_{b_i}(t) − (D_i^k(t) − D_i^{b_i}(t)), D_i^φ its modelled drop on
  phase φ: its meter now follows phase k's voltage.

The per-interval log-likelihood ratio (nats) is Σ_m μ_m(t)·(e_m(t) − μ_m(t)/2)/σ_m², over the customers with a
reading; the statistic at the end T of a window is its largest sum over t₀ within the last ``window`` intervals
(a generalised likelihood ratio over the change time). The threshold is ``margin`` × the largest statistic any
watched customer reached over the calibration intervals (with every customer where the baseline put it): the
baseline never alarms, with a margin for the days it did not see.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from controllers.identification.assignment import NOT_ASSIGNED

__all__ = ["LR_MARGIN", "Change", "Fit", "calibrate", "day_evidence_nats", "fit_residuals", "log_likelihood_ratios",
           "modelled_changes", "window_statistics"]

LR_MARGIN = 2.0
"""The threshold over the calibration's largest statistic. Measured in ``benchmarks/phase_identification.py``
(IEEE feeder and Kerber grid, 8 seeds each): the largest statistic any watched customer reached over 23 days
without a move was 0.44–0.77 of the threshold, i.e. up to 1.54 × the baseline's largest; a margin below ≈ 1.55
would have given false reports."""


@dataclass(frozen=True)
class Fit:
    """Per customer: the residual's offset (V) and variance (V²) over the calibration intervals."""

    offset_v: np.ndarray
    var_v2: np.ndarray


@dataclass(frozen=True)
class Change:
    """Customer ``customer`` on ``to_phase`` (from ``from_phase``), noticed at the end of interval ``noticed_at``
    (exclusive) with statistic ``statistic_nats`` against ``threshold_nats``."""

    customer: int
    from_phase: int
    to_phase: int
    noticed_at: int
    statistic_nats: float
    threshold_nats: float


def _drops_v(p_kw: np.ndarray, sensitivity: np.ndarray, phase: np.ndarray, on: np.ndarray) -> np.ndarray:
    """[t, m] Σ_j S[m, on[m], j, phase[j]]·p_j(t) over the customers j with a phase (NaN power as 0)."""
    n = phase.size
    known = phase != NOT_ASSIGNED
    gain = sensitivity[np.arange(n), np.maximum(on, 0)][:, np.flatnonzero(known), phase[known]]  # [m, j]
    return np.asarray(np.nan_to_num(p_kw[:, known]) @ gain.T)


def _residuals_v(v_v: np.ndarray, ref_v_v: np.ndarray, p_kw: np.ndarray, sensitivity: np.ndarray,
                 phase: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[t, m] the residual v_m − V_{b_m} + D_m (NaN without a reading or a phase), and [t, m] the drop D_m."""
    drop = _drops_v(p_kw, sensitivity, phase, phase)
    e = v_v - ref_v_v[:, np.maximum(phase, 0)] + drop
    return np.where(phase != NOT_ASSIGNED, e, np.nan), drop


def fit_residuals(v_v: np.ndarray, ref_v_v: np.ndarray, p_kw: np.ndarray, sensitivity: np.ndarray,
                  phase: np.ndarray) -> Fit:
    """The residuals' offset and variance per customer over these intervals (NaN where there is no reading)."""
    e, _ = _residuals_v(v_v, ref_v_v, p_kw, sensitivity, phase)
    ok = np.isfinite(e)
    count = ok.sum(axis=0)
    offset = np.where(ok, e, 0.0).sum(axis=0) / np.maximum(count, 1)
    var = np.where(ok, (e - offset) ** 2, 0.0).sum(axis=0) / np.maximum(count - 1, 1)
    usable = count >= 2
    return Fit(offset_v=np.where(usable, offset, np.nan), var_v2=np.where(usable & (var > 0), var, np.nan))


def log_likelihood_ratios(v_v: np.ndarray, ref_v_v: np.ndarray, p_kw: np.ndarray, sensitivity: np.ndarray,
                          phase: np.ndarray, fit: Fit, *, expected: bool = False) -> np.ndarray:
    """[t, i, k] the log-likelihood ratio (nats) of "customer i on phase k at t" against "on ``phase[i]``", every
    other customer on its ``phase`` (NOT_ASSIGNED: out of the model); 0 where k is i's phase or i has none.
    With ``expected``, the ratio's expectation had i been on k (Σ_m μ_m²/(2σ_m²), the Kullback–Leibler
    divergence): the evidence these intervals can give of such a move, whatever the voltages read."""
    n_t, n = v_v.shape
    e, drop = _residuals_v(v_v, ref_v_v, p_kw, sensitivity, phase)
    e = e - fit.offset_v
    seen = np.isfinite(e) & np.isfinite(fit.var_v2)
    weight = np.where(seen, 1.0, 0.0) / np.where(np.isfinite(fit.var_v2), fit.var_v2, 1.0)  # [t, m] 1/σ² seen
    scaled = np.where(seen, e, 0.0) * weight
    p = np.nan_to_num(p_kw)
    known = phase != NOT_ASSIGNED
    rows = np.arange(n)
    b = np.maximum(phase, 0)
    s_own_phase = sensitivity[rows, b]  # [m, j, φ] = S[m, b_m, j, φ]
    out = np.zeros((n_t, n, 3))
    for k in range(3):
        # neighbours: μ_m = −G[m, i]·p_i, G[m, i] = S[m, b_m, i, k] − S[m, b_m, i, b_i]
        g = s_own_phase[:, :, k] - s_own_phase[:, rows, b]
        g[rows, rows] = 0.0
        g[~known, :] = 0.0
        quadratic = 0.5 * p**2 * (weight @ g**2)
        out[:, :, k] = quadratic if expected else -p * (scaled @ g) - quadratic
        # its own meter: μ_i = V_k − V_{b_i} − (D_i^k − D_i^{b_i})
        on_k = np.full(n, k)
        drop_k = _drops_v(p_kw, sensitivity, phase, on_k) - p * sensitivity[rows, k, rows, b] \
            + p * sensitivity[rows, k, rows, k]
        mu = ref_v_v[:, [k]] - ref_v_v[:, b] - drop_k + drop
        own = np.where(seen, 0.5 * mu * mu if expected else mu * (np.where(seen, e, 0.0) - 0.5 * mu), 0.0) * weight
        out[:, :, k] += np.nan_to_num(own)
        out[:, (phase == k) | ~known, k] = 0.0
    return out


def window_statistics(llr: np.ndarray, *, ends: range, window: int, since: int = 0) -> np.ndarray:
    """[end, i, k] the largest sum of ``llr[t₀:end]`` over t₀ in [max(end − window, since), end)."""
    cum = np.concatenate([np.zeros((1, *llr.shape[1:])), np.cumsum(llr, axis=0)])
    out = np.zeros((len(ends), *llr.shape[1:]))
    for row, end in enumerate(ends):
        first = max(end - window, since)
        if first < end:
            out[row] = cum[end] - cum[first:end].min(axis=0)
    return out


def calibrate(*, v_v: np.ndarray, ref_v_v: np.ndarray, p_kw: np.ndarray, sensitivity: np.ndarray,
              phase: np.ndarray, model_phase: np.ndarray, window: int, step: int,
              margin: float = LR_MARGIN) -> tuple[Fit, float]:
    """The residual fit over these (baseline) intervals, every customer at ``model_phase`` (the watched at
    ``phase``), and the threshold (nats): ``margin`` × the largest window statistic a watched customer reaches
    over them (windows of ``window`` ending every ``step`` intervals)."""
    current = np.where(phase != NOT_ASSIGNED, phase, model_phase)
    fit = fit_residuals(v_v, ref_v_v, p_kw, sensitivity, current)
    calibration = window_statistics(log_likelihood_ratios(v_v, ref_v_v, p_kw, sensitivity, current, fit),
                                    ends=range(window, v_v.shape[0] + 1, step), window=window)
    return fit, margin * float(calibration[:, phase != NOT_ASSIGNED].max(initial=0.0))


def modelled_changes(*, v_v: np.ndarray, ref_v_v: np.ndarray, p_kw: np.ndarray, sensitivity: np.ndarray,
                     phase: np.ndarray, model_phase: np.ndarray, window: int, step: int, start: int,
                     margin: float = LR_MARGIN, confirm: int = 1) -> tuple[list[Change], float]:
    """Moves of the watched customers (``phase[i]`` ≠ NOT_ASSIGNED) among ``v_v[t, i]``, ``p_kw[t, i]`` (V, kW),
    against ``ref_v_v[t, φ]``, every customer in the model at ``model_phase`` (the watched at ``phase``);
    calibrated on the intervals before ``start``, tested at the ends ``start + step``, ``start + 2·step``, … (each
    window within the last ``window`` intervals, none reaching before ``start``); a customer is reported when
    its statistic for one other phase exceeds the threshold at ``confirm`` consecutive ends (of several at one
    end, the largest statistic alone); it is then on that phase, and every window restarts there. Returns the
    changes and the threshold (nats). Raises ValueError when the calibration is shorter than a window."""
    n_t, n = v_v.shape
    if start < window:
        raise ValueError(f"the calibration ({start} intervals before the watch) is shorter than the window "
                         f"({window})")
    current = np.where(phase != NOT_ASSIGNED, phase, model_phase)
    watched = phase != NOT_ASSIGNED
    fit, threshold = calibrate(v_v=v_v[:start], ref_v_v=ref_v_v[:start], p_kw=p_kw[:start], sensitivity=sensitivity,
                               phase=phase, model_phase=model_phase, window=window, step=step, margin=margin)
    llr = log_likelihood_ratios(v_v, ref_v_v, p_kw, sensitivity, current, fit)
    since = start
    streak = np.zeros(n, dtype=int)
    candidate = np.full(n, NOT_ASSIGNED)
    changes: list[Change] = []
    for end in range(start + step, n_t + 1, step):
        stat = window_statistics(llr, ends=range(end, end + 1), window=window, since=since)[0]
        best = stat.argmax(axis=1)
        value = stat.max(axis=1)
        over = watched & (value > threshold)
        streak = np.where(over & (best == candidate), streak + 1, np.where(over, 1, 0))
        candidate = np.where(over, best, NOT_ASSIGNED)
        confirmed = np.flatnonzero(streak >= confirm)
        if confirmed.size == 0:
            continue
        # one move per test, the best supported: a moved customer's load shifts its neighbours' voltages too, and
        # for a neighbour on the same branch that shift looks like a move of its own (IEEE feeder, seed 11 of the
        # benchmark: two neighbours crossed in the same hour as the moved customer, at a quarter of its statistic)
        i = int(confirmed[value[confirmed].argmax()])
        changes.append(Change(customer=i, from_phase=int(current[i]), to_phase=int(best[i]), noticed_at=end,
                              statistic_nats=float(value[i]), threshold_nats=threshold))
        current[i] = best[i]
        # the model changed: every customer's ratios from here on are taken against it, every window restarts
        llr[end:] = log_likelihood_ratios(v_v[end:], ref_v_v[end:], p_kw[end:], sensitivity, current, fit)
        since = end
        streak[:] = 0
        candidate[:] = NOT_ASSIGNED
    return changes, threshold


def day_evidence_nats(v_v: np.ndarray, ref_v_v: np.ndarray, p_kw: np.ndarray, sensitivity: np.ndarray,
                      phase: np.ndarray, fit: Fit, *, window: int) -> np.ndarray:
    """[i] the evidence (nats) a window of these intervals gives of a move of customer i, for the less evident
    of its two other phases, the median over the whole windows (``log_likelihood_ratios(expected=True)``): below
    the threshold, a move of i is not expected to be noticed within a window. It grows with i's consumption
    (its neighbours' part as its square) and with its electrical distance from the transformer."""
    kl = log_likelihood_ratios(v_v, ref_v_v, p_kw, sensitivity, phase, fit, expected=True)
    n_windows = kl.shape[0] // window
    if n_windows == 0:
        return np.zeros(kl.shape[1])
    per_window = kl[:n_windows * window].reshape(n_windows, window, *kl.shape[1:]).sum(axis=1)  # [w, i, k]
    others = np.ones(kl.shape[1:], dtype=bool)
    others[np.arange(phase.size), np.maximum(phase, 0)] = False
    least = np.where(others[None], per_window, np.inf).min(axis=2)
    return np.asarray(np.median(least, axis=0))
