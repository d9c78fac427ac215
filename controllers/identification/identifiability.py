"""What the data can tell apart: customers whose series are near-collinear, the evidence for a phase against
swaps and moves of other customers, and how much autocorrelation shrinks the number of independent intervals.

- ``collinear_groups``: customers whose consumption series correlate at ``COLLINEAR`` or more (the same scaled
  standard profile, in planning data; a twin-house pair) are grouped (connected components). Swapping two
  of them between phases, or moving sub-groups of equal total, changes the transformer's phase balance by
  (almost) nothing: no energy balance can tell which of them is on which phase.
- ``compensated_deltas``: the increase of an L1 balance objective when customer i goes to phase φ' *and* the
  best single other customer moves to compensate (a swap, or a move of any other customer), as well as the
  move of i alone; the smaller is the evidence for i's phase. ``improve_by_moves`` applies improving moves and
  swaps until none is left (a local optimum under exactly the moves the confidence is tested against).
- ``variance_inflation``: 1 + 2 Σ ρ(ℓ) over the lags ℓ up to the first non-positive autocorrelation (the
  factor by which correlated intervals inflate the variance of a sum; n/τ is the effective sample size).
"""

from __future__ import annotations

import numpy as np

__all__ = ["COLLINEAR", "collinear_groups", "compensated_deltas", "improve_by_moves", "variance_inflation"]

COLLINEAR = 0.95
"""Correlation of two customers' consumption at or above which they count as one scaled profile. Distinct
households correlate far below it at 15-minute to hourly resolution (< 0.8 among the IEEE feeder's 55); scaled
copies of one profile read by class-2 meters stay above 0.99."""
MAX_LAG = 192
"""Longest lag (intervals) of the autocorrelation sum."""


def collinear_groups(series: np.ndarray, *, threshold: float = COLLINEAR) -> np.ndarray:
    """Group id per column of ``series[t, i]`` (finite): columns linked by a chain of correlations ≥
    ``threshold`` share an id; a column correlated with no other gets -1."""
    n = series.shape[1]
    centred = series - series.mean(axis=0)
    norm = np.sqrt((centred * centred).sum(axis=0))
    unit = centred / np.where(norm > 0, norm, 1.0)
    corr = unit.T @ unit
    linked = (corr >= threshold) & (norm[:, None] > 0) & (norm[None, :] > 0)
    np.fill_diagonal(linked, False)
    group = np.full(n, -1)
    next_id = 0
    for start in range(n):
        if group[start] >= 0 or not linked[start].any():
            continue
        stack = [start]
        group[start] = next_id
        while stack:
            k = stack.pop()
            for j in np.flatnonzero(linked[k] & (group < 0)):
                group[j] = next_id
                stack.append(int(j))
        next_id += 1
    return group


def variance_inflation(residual: np.ndarray, *, max_lag: int = MAX_LAG) -> float:
    """Largest, over the columns of ``residual[t, k]``, of 1 + 2 Σ_ℓ ρ(ℓ) summed while ρ(ℓ) > 0; at least 1."""
    worst = 1.0
    for column in np.atleast_2d(residual.T):
        x = column - column.mean()
        var = float(x @ x)
        if var <= 0 or x.size < 4:
            continue
        total = 1.0
        for lag in range(1, min(max_lag, x.size - 2)):
            rho = float(x[:-lag] @ x[lag:]) / var
            if rho <= 0:
                break
            total += 2.0 * rho
        worst = max(worst, total)
    return worst


def _cost_of_adding(residual: np.ndarray, series: np.ndarray, sign: float) -> np.ndarray:
    """[φ, j]: Σ_t |r_φ(t) + sign·p_j(t)| − |r_φ(t)|, the objective change when p_j leaves (sign +1) or joins
    (sign −1) phase φ, with residual = reference − assigned load."""
    base = np.abs(residual).sum(axis=0)
    return np.stack([np.abs(residual[:, [k]] + sign * series).sum(axis=0) - base[k] for k in range(3)])


def compensated_deltas(residual: np.ndarray, series: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """[i, φ]: the smallest increase of Σ|residual| when customer i (series[:, i], on ``phase[i]``) moves to
    φ, alone or together with the move of one other customer to any phase (0 on i's own phase). A swap of two
    customers of one profile costs nothing, so i's evidence is nothing."""
    n = series.shape[1]
    delta = np.zeros((n, 3))
    for i in range(n):
        k = int(phase[i])
        for target in range(3):
            if target == k:
                continue
            moved = residual.copy()
            moved[:, k] += series[:, i]
            moved[:, target] -= series[:, i]
            alone = float(np.abs(moved).sum() - np.abs(residual).sum())
            leave = _cost_of_adding(moved, series, 1.0)
            join = _cost_of_adding(moved, series, -1.0)
            own = leave[phase, np.arange(n)]
            pair = own[:, None] + join.T
            pair[np.arange(n), phase] = np.inf
            pair[i] = np.inf
            delta[i, target] = min(alone, alone + float(pair.min()))
    return delta


def improve_by_moves(residual: np.ndarray, series: np.ndarray, phase: np.ndarray, *,
                     max_rounds: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Apply the best improving single move or swap (as ``compensated_deltas`` tests them) until none lowers
    Σ|residual|; returns the new phases and residual."""
    phase = phase.copy()
    residual = residual.copy()
    for _ in range(max_rounds):
        leave = _cost_of_adding(residual, series, 1.0)
        join = _cost_of_adding(residual, series, -1.0)
        n = series.shape[1]
        own = leave[phase, np.arange(n)]
        single = own[:, None] + join.T
        single[np.arange(n), phase] = np.inf
        i, target = np.unravel_index(int(single.argmin()), single.shape)
        if single[i, target] < -1e-9:
            residual[:, phase[i]] += series[:, i]
            residual[:, target] -= series[:, i]
            phase[i] = target
            continue
        delta = compensated_deltas(residual, series, phase)
        # compensated_deltas reports the best of alone and paired; a negative value is an improving swap
        if delta.min() >= -1e-9:
            break
        i, target = np.unravel_index(int(delta.argmin()), delta.shape)
        residual[:, phase[i]] += series[:, i]
        residual[:, target] -= series[:, i]
        phase[i] = target
    return phase, residual
