"""Phase identification from the meter voltages: correlation against the phase references and the customers
already assigned (multi-reference correlation), labelled against the transformer's phases, together with the
voltage-difference test (``difference``).

The voltage a customer's meter reports falls with the load of its own phase upstream of it; so do the other
customers' voltages on that phase and the transformer's LV voltage on that phase (given its phase powers, with
the meter's noise projected out: ``reference.denoised_reference``). Two components common to all
phases are taken out first: the mean of the transformer's three phase voltages (the MV voltage, the tap: common
mode) from every series, then, from every customer's standardised series, the mean over all customers (the
daily load shape that every phase shares). What is left is each phase's own signal.

1. Clustering. Each customer is correlated (Pearson, over the intervals both report) with each phase's
   reference: ``REFERENCE_WEIGHT`` × the transformer's phase series plus the mean of the other customers
   currently in that phase's cluster (a customer is never its own reference, nor are the customers whose
   consumption is collinear with its own — one scaled profile, ``identifiability.collinear_groups`` — when
   the powers are given: their own-load drops carry its shape onto their phase); it joins the phase of the
   largest correlation. Repeated until no customer moves (at most ``iterations`` times).
2. Labelling. The three clusters are named A, B, C by the permutations of cluster means against the
   transformer's phase series: S = Σ z(corr) per permutation, each permutation's probability the product over
   the others of Φ((S − S')/(√6·se)), normalised (the clusters are right long before single customers' labels
   are).
3. The voltage-difference test (``difference``) on the same voltages.

Confidence: with Fisher's z = atanh(ρ) and its standard error se = √(1/(n − 3) + MODEL_SPREAD²) for n
intervals (the sampling error, and the reference's own error that more data do not remove), the probability that
phase k's correlation truly exceeds each other phase's, Π_j Φ((z_k − z_j)/(√2·se)); mixed over the namings by
their probabilities; multiplied by the difference test's probability for k, and normalised over the phases. A
customer's phase is the most probable one, its confidence that posterior. A transformer meter too coarse to tell
its phases apart thus leaves both the naming and the difference test undecided and flags everyone instead of
naming the clusters wrongly with confidence.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from scipy.special import log_ndtr

from controllers.identification.assignment import (
    HIGH_CONFIDENCE,
    NOT_ASSIGNED,
    NOT_IDENTIFIABLE,
    Assignment,
    Method,
)
from controllers.identification.difference import difference_log_probabilities
from controllers.identification.identifiability import collinear_groups
from controllers.identification.latent import refine_by_latent_load
from controllers.identification.reference import denoised_reference
from controllers.identification.sensitivity import joint_phases, other_drops_v

__all__ = [
    "MIN_INTERVALS",
    "MODEL_SPREAD",
    "REFERENCE_WEIGHT",
    "confidence_of",
    "identify_by_correlation",
    "log_probabilities",
    "own_signals",
    "phase_correlations",
    "profile_groups",
]

MIN_INTERVALS = 8
"""Intervals with a voltage reading a customer needs to be assigned."""
MODEL_SPREAD = 0.2
"""Spread (in Fisher z) of a customer's correlation with a phase reference that no amount of data removes: the
reference is a model of the phase's voltage, and on long branches the neutral's shift by the other phases'
loads moves a customer's voltage with them. Added in quadrature to the sampling error 1/√(n − 3). Measured in
``benchmarks/phase_identification.py``: on the Kerber grid (r0/r1 = 4) a customer's wrong best phase beat the
true one by 0.54 in z over 30 days of class-0.5 data (0.1 let it through at 0.9999); at 0.2 a margin must
exceed ≈ 0.73 in z (2.6 σ at √2·0.2) for 0.99."""
REFERENCE_WEIGHT = 0.3
"""Weight of the transformer's phase series beside the cluster mean (both standardised) in a phase's reference:
the cluster of tens of customers is the stronger signal, the transformer keeps the clusters apart at the start.
Chosen on the IEEE feeder (0.3 beat 1 and 3 on six meter-error seeds at class 1.0) and kept for every feeder."""


def _nanmean(x: np.ndarray, *, axis: int) -> np.ndarray:
    """Mean over the finite entries along ``axis`` (NaN where there are none), without numpy's empty-slice
    warning."""
    ok = np.isfinite(x)
    n = ok.sum(axis=axis, keepdims=True)
    total = np.where(ok, x, 0.0).sum(axis=axis, keepdims=True)
    return np.where(n > 0, total / np.maximum(n, 1), np.nan)


def _standardised(x: np.ndarray) -> np.ndarray:
    """Each column minus its mean, over its standard deviation (finite entries only; NaN stays NaN)."""
    centred = x - _nanmean(x, axis=0)
    std = np.sqrt(_nanmean(centred * centred, axis=0))
    return centred / np.where(std > 0, std, 1.0)


def _pearson(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column-wise correlation of a[t, i] with b[t, i] over the rows where both are finite, and that count."""
    both = np.isfinite(a) & np.isfinite(b)
    n = both.sum(axis=0)
    a0, b0 = np.where(both, a, 0.0), np.where(both, b, 0.0)
    safe_n = np.maximum(n, 1)
    am, bm = a0.sum(axis=0) / safe_n, b0.sum(axis=0) / safe_n
    da, db = np.where(both, a0 - am, 0.0), np.where(both, b0 - bm, 0.0)
    cov = (da * db).sum(axis=0)
    den = np.sqrt((da * da).sum(axis=0) * (db * db).sum(axis=0))
    return np.where(den > 0, cov / np.where(den > 0, den, 1.0), 0.0), n


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def identify_by_correlation(v_v: np.ndarray, ref_v_v: np.ndarray, *, p_kw: np.ndarray | None = None,
                            ref_p_kw: np.ndarray | None = None, iterations: int = 30,
                            sensitivity: np.ndarray | None = None) -> Assignment:
    """Phases of the customers whose meter voltages are ``v_v[t, i]`` (V, NaN where missing), with the
    transformer's per-phase voltages ``ref_v_v[t, φ]`` as references; with their own powers ``p_kw[t, i]``
    (kW, NaN where missing) customers of one scaled profile are kept out of each other's references; with the
    transformer's phase powers ``ref_p_kw[t, φ]`` (kW) the references' meter noise is projected out
    (``reference.denoised_reference``); with both and the feeder's ``sensitivity[i, k, j, φ]``
    (``sensitivity.voltage_sensitivities``, over these customers) the difference test adds back the drop the
    other customers cause (``sensitivity.other_drops_v``: the metered ones at their current best phases, the
    unmetered load spread over the customers without data), at the joint assignment it fits best
    (``sensitivity.joint_phases``: coordinate descent on the joint assignment). Raises ValueError on mismatched
    shapes."""
    if v_v.ndim != 2 or ref_v_v.ndim != 2 or ref_v_v.shape != (v_v.shape[0], 3):
        raise ValueError(f"voltages have shape {v_v.shape} and references {ref_v_v.shape}; expected [t, n] and "
                         "[t, 3] over the same intervals")
    if p_kw is not None and p_kw.shape != v_v.shape:
        raise ValueError(f"powers have shape {p_kw.shape}; expected {v_v.shape}, as the voltages")
    if ref_p_kw is not None:
        ref_v_v = denoised_reference(ref_v_v, ref_p_kw)
    n_customers = v_v.shape[1]
    reported = np.isfinite(v_v)
    n_valid = reported.sum(axis=0)
    usable = n_valid >= MIN_INTERVALS
    group = profile_groups(p_kw) if p_kw is not None else np.full(n_customers, -1)
    own, own0, ref0 = own_signals(v_v, ref_v_v, usable)
    phase = np.full(n_customers, NOT_ASSIGNED)
    for _ in range(max(iterations, 1)):
        rho, count = phase_correlations(own, own0, ref0, phase=phase, members=usable, group=group)
        new_phase = np.where(usable, rho.argmax(axis=1), NOT_ASSIGNED)
        if np.array_equal(new_phase, phase):
            break
        phase = new_phase
    labellings = _labels(own0, ref0, phase)
    difference = np.exp(difference_log_probabilities(v_v, ref_v_v, p_kw)[0])
    by_naming = [np.exp(log_probabilities(rho[:, np.argsort(perm)], count[:, np.argsort(perm)]))
                 for perm, _ in labellings]
    unsure = np.zeros(n_customers, dtype=bool)
    metered = usable if p_kw is None else usable & np.isfinite(p_kw).any(axis=0)
    if sensitivity is not None and p_kw is not None and ref_p_kw is not None:
        starts = [np.where(usable, (by_naming[0] * difference).argmax(axis=1), NOT_ASSIGNED),
                  np.where(usable, difference.argmax(axis=1), NOT_ASSIGNED)]
        current, disagree, shares = joint_phases(v_v, ref_v_v, p_kw, ref_p_kw, starts=starts, metered=metered,
                                                 sensitivity=sensitivity)
        unsure = unsure | disagree
        drops = other_drops_v(p_kw, ref_p_kw, current, metered, sensitivity, shares)
        difference = np.exp(difference_log_probabilities(v_v, ref_v_v, p_kw, drop_v=drops)[0])
    # the phase: the best under the most probable naming of the clusters (they are right long before single
    # customers are); its confidence: the posterior with the correlation's evidence mixed over every naming by
    # its probability (the difference test needs no naming)
    guess = by_naming[0] * difference
    posterior = sum(weight * e for (_, weight), e in zip(labellings, by_naming, strict=True)) * difference
    posterior /= np.maximum(posterior.sum(axis=1, keepdims=True), 1e-300)
    rho = rho[:, np.argsort(labellings[0][0])]
    phase = np.where(usable, guess.argmax(axis=1), NOT_ASSIGNED)
    confidence = np.where(phase == NOT_ASSIGNED, 0.0, np.take_along_axis(posterior, np.maximum(phase, 0)[:, None],
                                                                         axis=1)[:, 0])
    overruled = np.zeros(n_customers, dtype=bool)
    if sensitivity is not None and p_kw is not None and ref_p_kw is not None and (~metered).any():
        # with unmetered load, the customers left below high confidence get the phase of the fit with that load as
        # latent loads (``latent``; the others held): a best guess, flagged all the same
        unsure_ones = metered & (unsure | (confidence < HIGH_CONFIDENCE))
        latent_says = refine_by_latent_load(v_v, ref_v_v, p_kw, ref_p_kw, np.where(metered, phase, NOT_ASSIGNED),
                                            metered, sensitivity, movable=unsure_ones)[0]
        overruled = unsure_ones & (latent_says != phase)
        phase = np.where(overruled, latent_says, phase)
        confidence = np.where(overruled, np.take_along_axis(posterior, np.maximum(phase, 0)[:, None], axis=1)[:, 0],
                              confidence)
    reason = tuple((f"{NOT_IDENTIFIABLE}: with the unmetered load as latent loads it fits best on "
                    f"{'ABC'[phase[i]]}, with that load spread evenly on {'ABC'[int(guess[i].argmax())]}"
                    if overruled[i] else
                    f"{NOT_IDENTIFIABLE}: its neighbours' phases fit two ways (the modelled drops have two local "
                    "optima that disagree on it)" if unsure[i] else "") if phase[i] != NOT_ASSIGNED else
                   ("no voltage data" if n_valid[i] == 0 else
                    f"only {n_valid[i]} interval(s) with voltage; at least {MIN_INTERVALS} needed")
                   for i in range(n_customers))
    return Assignment(method=Method.CORRELATION, phase=phase, confidence=confidence, scores=rho, reason=reason)


def own_signals(v_v: np.ndarray, ref_v_v: np.ndarray, usable: np.ndarray) -> tuple[np.ndarray, ...]:
    """Each phase's own signal: the customers' standardised voltages without the common mode and without the
    mean over the ``usable`` customers (NaN kept, and with NaN as 0), and the transformer's phases without the
    common mode (NaN as 0)."""
    common = _nanmean(ref_v_v, axis=1)
    own = _standardised(v_v - common)
    if usable.any():
        own = _standardised(own - np.nan_to_num(_nanmean(own[:, usable], axis=1)))
    ref = _standardised(ref_v_v - common)
    return own, np.where(np.isfinite(own), own, 0.0), np.where(np.isfinite(ref), ref, 0.0)


def phase_correlations(own: np.ndarray, own0: np.ndarray, ref0: np.ndarray, *, phase: np.ndarray,
                       members: np.ndarray, group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[i, k] correlation of customer i with phase k's reference (``REFERENCE_WEIGHT`` × the transformer's phase
    plus the mean of the ``members`` on ``phase`` k other than i and its profile peers ``group``), and the
    number of intervals it is taken over."""
    n = own.shape[1]
    rho = np.zeros((n, 3))
    count = np.zeros((n, 3), dtype=int)
    for k in range(3):
        on_k = (phase == k) & members
        # leave-one-out: a customer in cluster k is taken out of k's reference before it is compared
        total = own0[:, on_k].sum(axis=1, keepdims=True) - np.where(on_k, own0, 0.0)
        size = on_k.sum() - on_k.astype(float)
        for g in np.unique(group[group >= 0]):
            # a customer's profile peers carry its own shape: they are no reference for it
            peers = (group == g) & on_k
            total[:, group == g] -= own0[:, peers].sum(axis=1, keepdims=True) - np.where(peers, own0, 0.0)[
                :, group == g]
            size[group == g] -= peers.sum() - peers[group == g]
        reference = REFERENCE_WEIGHT * ref0[:, [k]] + total / np.maximum(size, 1.0)
        rho[:, k], count[:, k] = _pearson(own, np.broadcast_to(reference, own.shape))
    return rho, count


def confidence_of(rho: np.ndarray, count: np.ndarray, phase: np.ndarray, *,
                  spread: float = MODEL_SPREAD) -> np.ndarray:
    """Probability that ``phase[i]``'s correlation truly exceeds each other phase's: Π_k Φ((z_φ − z_k)/(√2·se)),
    se = √(1/(n − 3) + spread²)."""
    z = np.arctanh(np.clip(rho, -0.999999, 0.999999))
    se = np.sqrt(1.0 / np.maximum(count.min(axis=1) - 3, 1) + spread**2)
    chosen = np.maximum(phase, 0)
    best = np.take_along_axis(z, chosen[:, None], axis=1)
    margins = (best - z) / (math.sqrt(2.0) * se[:, None])
    others = np.ones_like(z, dtype=bool)
    others[np.arange(z.shape[0]), chosen] = False
    return np.asarray(np.prod(np.where(others, _normal_cdf(margins), 1.0), axis=1))


def log_probabilities(rho: np.ndarray, count: np.ndarray, *, spread: float = MODEL_SPREAD) -> np.ndarray:
    """[i, k] ln Π_{j ≠ k} Φ((z_k − z_j)/(√2·se)): the log-probability that phase k's correlation truly exceeds
    the other two (``confidence_of``'s test, for every phase)."""
    z = np.arctanh(np.clip(rho, -0.999999, 0.999999))
    se = np.sqrt(1.0 / np.maximum(count.min(axis=1) - 3, 1) + spread**2)
    margins = (z[:, :, None] - z[:, None, :]) / (math.sqrt(2.0) * se[:, None, None])
    pair = log_ndtr(margins)
    return np.asarray(pair.sum(axis=2) - np.diagonal(pair, axis1=1, axis2=2))


def profile_groups(p_kw: np.ndarray) -> np.ndarray:
    """The customers' profile groups: ``collinear_groups`` of their powers, gaps filled by each one's mean."""
    filled = np.where(np.isfinite(p_kw), p_kw, np.nan_to_num(_nanmean(p_kw, axis=0)))
    return collinear_groups(filled)


def _labels(own0: np.ndarray, ref0: np.ndarray, cluster: np.ndarray) -> list[tuple[np.ndarray, float]]:
    """The six namings of the clusters (permutation: cluster → phase), best first, each with its probability:
    S = Σ z(corr(cluster mean, transformer phase)) per permutation, and, as for the phases, Π over the other
    permutations of Φ((S − S')/(√6·se)), normalised."""
    means = np.stack([own0[:, cluster == k].mean(axis=1) if (cluster == k).any() else np.zeros(own0.shape[0])
                      for k in range(3)], axis=1)
    corr = np.array([[_pearson(means[:, [a]], ref0[:, [b]])[0][0] for b in range(3)] for a in range(3)])
    z = np.arctanh(np.clip(corr, -0.999999, 0.999999))
    perms = sorted(itertools.permutations(range(3)), key=lambda perm: -sum(z[a, perm[a]] for a in range(3)))
    total = np.array([sum(z[a, perm[a]] for a in range(3)) for perm in perms])
    se = 1.0 / math.sqrt(max(own0.shape[0] - 3, 1))
    pair = log_ndtr((total[:, None] - total[None, :]) / (math.sqrt(6.0) * se))
    log_w = pair.sum(axis=1) - np.diagonal(pair)
    weight = np.exp(log_w - log_w.max())
    weight /= weight.sum()
    return [(np.array(perm), float(w)) for perm, w in zip(perms, weight, strict=True)]
