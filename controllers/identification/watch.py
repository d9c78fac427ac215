"""Watching for a customer whose phase changed (a PSD move, a field re-connection) over a rolling window.

A baseline gives each watched customer its phase (customers the baseline could not identify with high
confidence are not watched). A window of ``window`` intervals then slides by ``step``; in each, every watched
customer is correlated with the three phase references of ``correlation.phase_correlations`` (the
transformer's phase and the customers of that phase, leave-one-out, profile peers left out), clusters fixed by
the current phases. The references' members are the watched customers and, when ``reference_phase`` gives them,
the others at the baseline's best guess: a cluster of a few watched customers is a noisy reference (on the IEEE
feeder, seed 2 of the benchmark, a move to C among 32 watched customers was never confirmed; with all 55 in the
references it was noticed after 12 h), and a flagged customer's guess is right far more often than not (98–100 %
over a week of 15-minute data), so it adds to its phase's reference more than it takes away.

A customer whose best phase in a window differs from its current one with confidence ≥ ``threshold``
(``correlation.confidence_of``: the same test, with ``WATCH_SPREAD``) in ``confirm`` consecutive windows is
reported as moved, noticed at the end of the window that confirmed it; its current phase becomes the new one (a
move back is reported again).

Before the watch, the same windows are run over the baseline (``wavering``): a customer to whom one of them
gives another phase with confidence ≥ ``STEADY_LEVEL`` is not watched, its evidence wobbling from day to day as a
move would show (on the Kerber grid such customers were reported moved in 30 days without a move).

This is windowed correlation with a vote over consecutive windows, on the references of the multi-reference
correlation; the rolling window bounds the delay: a move is seen once most of a window lies after it.

With the feeder's voltage sensitivities (``sensitivity``), the watch is instead the modelled likelihood-ratio
change-point test of ``change_test``: "customer i on phase k since t₀" against "everyone still on the baseline's
phases", from what i's own load does to its neighbours' voltages and from its own meter, its threshold
``margin`` × the largest statistic of the baseline (no steadiness check: the calibration covers every watched
customer; ``threshold`` and ``steady_level`` are not used).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from controllers.identification.assignment import HIGH_CONFIDENCE, NOT_ASSIGNED
from controllers.identification.change_test import LR_MARGIN, modelled_changes
from controllers.identification.correlation import (
    MIN_INTERVALS,
    confidence_of,
    own_signals,
    phase_correlations,
    profile_groups,
)

__all__ = ["LR_MARGIN", "STEADY_LEVEL", "WATCH_SPREAD", "PhaseChange", "watch_phases", "wavering"]

WATCH_SPREAD = 0.1
"""The reference error of the watch's test (identification uses ``correlation.MODEL_SPREAD``, 0.2): only
customers the baseline identified with high confidence are watched, so the references' systematic error has
already been found small for them, and a move must show in ``confirm`` consecutive windows. Measured in
``benchmarks/phase_identification.py``: no false report over 30 days on 3 seeds, with and without a move."""


STEADY_LEVEL = 0.5
"""Confidence for another phase that, reached in any window of the baseline, leaves a customer unwatched
(``wavering``). Measured in ``benchmarks/phase_identification.py``: on the Kerber grid (r0/r1 = 4) customers
identified with high confidence over the week still had days on which another phase won with ≥ 0.99, and the
watch reported them moved in 30 days without a move; see docs/identification/README.md."""


@dataclass(frozen=True)
class PhaseChange:
    """Customer ``customer`` (column index) moved from ``from_phase`` to ``to_phase`` (0, 1, 2 = A, B, C),
    noticed at the end of interval ``noticed_at`` (exclusive index: the window ``[noticed_at − window,
    noticed_at)`` confirmed it) with ``confidence``; by the modelled test (``change_test``) the confidence is
    NaN (no probability) and ``statistic_nats`` exceeded ``threshold_nats``."""

    customer: int
    from_phase: int
    to_phase: int
    noticed_at: int
    confidence: float
    statistic_nats: float | None = None
    threshold_nats: float | None = None


def watch_phases(*, v_v: np.ndarray, ref_v_v: np.ndarray, phase: np.ndarray, window: int, step: int,
                 p_kw: np.ndarray | None = None, reference_phase: np.ndarray | None = None,
                 threshold: float = HIGH_CONFIDENCE, confirm: int = 2, start: int = 0,
                 steady_level: float | None = STEADY_LEVEL, sensitivity: np.ndarray | None = None,
                 margin: float = LR_MARGIN) -> list[PhaseChange]:
    """Moves among the customers of ``v_v[t, i]`` (V, NaN where missing) against ``ref_v_v[t, φ]``, starting from
    ``phase[i]`` (NOT_ASSIGNED = not watched), with windows of ``window`` intervals ending at ``start + window``,
    ``start + window + step``, … up to the last interval; ``p_kw[t, i]`` (optional) gives the profile groups;
    ``reference_phase[i]`` (optional; NOT_ASSIGNED = none) the phase at which an unwatched customer joins the
    references. With ``steady_level``, a customer is watched only if no window of the baseline (the windows
    ending at ``window``, ``window + step``, … up to ``start + window − 1``: those that end before the first
    watched one) gives another phase a confidence ≥ ``steady_level`` (``wavering``).

    With ``sensitivity[i, k, j, φ]`` (``sensitivity.voltage_sensitivities``, these customers; ``p_kw`` then
    required) the modelled test of ``change_test`` runs instead: calibrated on the intervals before ``start``
    (at least a window), every customer in the model at its phase (the unwatched at ``reference_phase``),
    tested every ``step`` intervals from ``start`` on over the last ``window``, a move reported when the
    statistic exceeds ``margin`` × the calibration's largest at ``confirm`` consecutive tests. Raises ValueError
    on bad shapes or window settings."""
    n_t, n = v_v.shape
    if ref_v_v.shape != (n_t, 3) or phase.shape != (n,):
        raise ValueError(f"v_v {v_v.shape}, ref_v_v {ref_v_v.shape}, phase {phase.shape}: expected [t, n], [t, 3], "
                         "[n]")
    if reference_phase is not None and reference_phase.shape != (n,):
        raise ValueError(f"reference_phase {reference_phase.shape}: expected ({n},), one per customer")
    others = np.full(n, NOT_ASSIGNED) if reference_phase is None else reference_phase
    if window < MIN_INTERVALS or step < 1 or confirm < 1:
        raise ValueError(f"window {window} (at least {MIN_INTERVALS} intervals), step {step} and confirm {confirm} "
                         "(at least 1) are not usable")
    if sensitivity is not None:
        return _modelled(v_v=v_v, ref_v_v=ref_v_v, p_kw=p_kw, sensitivity=sensitivity, phase=phase, others=others,
                         window=window, step=step, start=start, margin=margin, confirm=confirm)
    group = profile_groups(p_kw) if p_kw is not None else np.full(n, -1)
    current = phase.copy()
    watched = current != NOT_ASSIGNED
    if steady_level is not None:
        watched &= ~wavering(v_v=v_v[:start + window - 1], ref_v_v=ref_v_v[:start + window - 1], phase=phase,
                             window=window, step=step, group=group, others=others, level=steady_level)
    streak = np.zeros(n, dtype=int)
    candidate = np.full(n, NOT_ASSIGNED)
    changes: list[PhaseChange] = []
    for end in range(start + window, n_t + 1, step):
        best, sure, enough = _window(v_v[end - window:end], ref_v_v[end - window:end],
                                     np.where(current != NOT_ASSIGNED, current, others), group)
        moved = watched & enough & (best != current) & (sure >= threshold)
        streak = np.where(moved & (best == candidate), streak + 1, np.where(moved, 1, 0))
        candidate = np.where(moved, best, NOT_ASSIGNED)
        for i in np.flatnonzero(streak >= confirm):
            changes.append(PhaseChange(customer=int(i), from_phase=int(current[i]), to_phase=int(best[i]),
                                       noticed_at=end, confidence=float(sure[i])))
            current[i] = best[i]
            streak[i] = 0
            candidate[i] = NOT_ASSIGNED
    return changes


def _modelled(*, v_v: np.ndarray, ref_v_v: np.ndarray, p_kw: np.ndarray | None, sensitivity: np.ndarray,
              phase: np.ndarray, others: np.ndarray, window: int, step: int, start: int, margin: float,
              confirm: int) -> list[PhaseChange]:
    """``watch_phases`` by the modelled test (``change_test.modelled_changes``)."""
    n = phase.size
    if p_kw is None or p_kw.shape != v_v.shape:
        raise ValueError(f"the modelled watch needs the powers p_kw of the customers, shape {v_v.shape}")
    if sensitivity.shape != (n, 3, n, 3):
        raise ValueError(f"sensitivity {sensitivity.shape}: expected ({n}, 3, {n}, 3)")
    if not margin > 0:
        raise ValueError(f"margin {margin}: expected a positive factor")
    found, _ = modelled_changes(v_v=v_v, ref_v_v=ref_v_v, p_kw=p_kw, sensitivity=sensitivity, phase=phase,
                                model_phase=np.where(phase != NOT_ASSIGNED, phase, others), window=window,
                                step=step, start=start, margin=margin, confirm=confirm)
    return [PhaseChange(customer=c.customer, from_phase=c.from_phase, to_phase=c.to_phase, noticed_at=c.noticed_at,
                        confidence=float("nan"), statistic_nats=c.statistic_nats, threshold_nats=c.threshold_nats)
            for c in found]


def wavering(*, v_v: np.ndarray, ref_v_v: np.ndarray, phase: np.ndarray, window: int, step: int,
             group: np.ndarray, others: np.ndarray, level: float) -> np.ndarray:
    """[i] whether some window of ``v_v`` (windows of ``window`` intervals stepped by ``step`` from the start)
    gives customer i a phase other than ``phase[i]`` with confidence ≥ ``level``: its phase evidence does not
    hold steady over a window, so a move could not be told from its everyday wobble."""
    out = np.zeros(phase.shape, dtype=bool)
    clusters = np.where(phase != NOT_ASSIGNED, phase, others)
    for end in range(window, v_v.shape[0] + 1, step):
        best, sure, enough = _window(v_v[end - window:end], ref_v_v[end - window:end], clusters, group)
        out |= (phase != NOT_ASSIGNED) & enough & (best != phase) & (sure >= level)
    return out


def _window(v_v: np.ndarray, ref_v_v: np.ndarray, clusters: np.ndarray, group: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One window's best phase per customer against the references of ``clusters``, its confidence (the watch's
    test), and whether the customer has enough data in the window."""
    enough = np.isfinite(v_v).sum(axis=0) >= MIN_INTERVALS
    members = enough & (clusters != NOT_ASSIGNED)
    own, own0, ref0 = own_signals(v_v, ref_v_v, members)
    rho, count = phase_correlations(own, own0, ref0, phase=clusters, members=members, group=group)
    best = rho.argmax(axis=1)
    return best, confidence_of(rho, count, best, spread=WATCH_SPREAD), enough
