"""The load nobody measured as a nuisance: fitted per customer and hypothesis within what the feeder allows.

With some customers unmetered, each phase's load nobody measured is known in total, U_φ(t) = the transformer's
phase-φ power less the metered customers' on it, but not where it is drawn. At customer i, taken to be on phase
k, it causes the drop Σ_φ Σ_j S[i, k, j, φ] p_j(t) over the unmetered customers j on φ. If each phase's unmetered
load is shared by its customers in fixed proportions (w_jφ ≥ 0, Σ_j w_jφ = 1 over those on φ), that drop is
Σ_φ c_ikφ U_φ(t) with c_ikφ = Σ_j w_jφ S[i, k, j, φ]: a convex combination of the sensitivities to the unmetered
customers, so whatever their phases and shares, c_ikφ lies between the least and the largest of S[i, k, j, φ]
over them (``nuisance_bounds``).

So instead of committing to one estimate of the unmetered customers' phases (an estimate that overfits: on the
Kerber grid, a month of hourly class-1.0 data, half the customers metered, a wrong joint estimate fitted the
metered voltages better than the true phases did), the difference test fits c_ikφ per customer and hypothesis,
inside those bounds (``bounded_least_squares``), alongside the free slope on the customer's own power: a
hypothesis is judged by its best fit over every way the unmetered load could be placed, not by one of them.
"""

from __future__ import annotations

import itertools

import numpy as np

__all__ = ["UNMETERED_SPREAD", "bounded_least_squares", "nuisance_bounds"]

UNMETERED_SPREAD = 0.05
"""The difference test's floor (``difference.DIFFERENCE_SPREAD`` without unmetered load: 0.03) for the confidence
where the load nobody measured is fitted: the Kerber grid, a month of hourly class-1.0 data, half the customers
metered, seed 11: at 0.03 a customer on a branch of mostly unmetered customers was wrong at 0.9901 (the joint
assignment with it and five neighbours wrong fits better than the truth: −10905 against −10862 in Σ n ln s)."""


def nuisance_bounds(sensitivity: np.ndarray, metered: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[i, k, φ] the least and the largest coefficient of U_φ(t) (the load nobody measured on φ, kW) in the
    residual of customer i's difference to phase k: minus the largest and minus the least
    ``sensitivity[i, k, j, φ]`` over the customers j not ``metered`` (the drop is added back). Zeros (the
    unmetered part left out) where every customer is metered."""
    n = metered.size
    if metered.all():
        zero = np.zeros((n, 3, 3))
        return zero, zero
    absent = sensitivity[:, :, ~metered, :]  # [i, k, j, φ]
    return -absent.max(axis=2), -absent.min(axis=2)


def bounded_least_squares(gram: np.ndarray, cross: np.ndarray, lower: np.ndarray,
                          upper: np.ndarray) -> np.ndarray:
    """[..., r] β minimising β'Gβ − 2β'b with ``lower`` ≤ β ≤ ``upper`` (per element; ±inf: free), for ``gram``
    G[..., r, r] (positive semi-definite) and ``cross`` b[..., r]: exactly, by trying every pattern of the
    bounded coefficients at their lower bound, their upper bound or free (3^m systems for m bounded ones; a
    convex problem's optimum is the best of the patterns whose free coefficients fall inside their bounds).
    Meant for a few coefficients (m ≤ 4). Raises ValueError if a bound is finite on one side only, or the
    lower above the upper."""
    finite_lo, finite_hi = np.isfinite(lower), np.isfinite(upper)
    if (finite_lo != finite_hi).any() or (lower > upper).any():
        raise ValueError("bounded_least_squares: each coefficient needs both bounds finite (lower <= upper) or "
                         "both infinite (free)")
    r = gram.shape[-1]
    bounded = [m for m in range(r) if finite_lo[..., m].all()]
    if any(finite_lo[..., m].any() and not finite_lo[..., m].all() for m in range(r)):
        raise ValueError("bounded_least_squares: a coefficient is bounded for some problems and free for others")
    trace = np.trace(gram, axis1=-2, axis2=-1)
    scale = np.where(trace > 0, trace, 1.0)[..., None, None]
    g = gram + 1e-12 * scale * np.eye(r)
    best_value = np.full(cross.shape[:-1], np.inf)
    best = np.zeros(cross.shape)
    eye = np.eye(r)
    for pattern in itertools.product((0, 1, 2), repeat=len(bounded)):  # 0 free, 1 at lower, 2 at upper
        a = g.copy()
        rhs = cross.copy()
        for m, state in zip(bounded, pattern, strict=True):
            if state:
                a[..., m, :] = eye[m]
                rhs[..., m] = lower[..., m] if state == 1 else upper[..., m]
        beta = np.linalg.solve(a, rhs[..., None])[..., 0]
        inside = ((beta >= lower - 1e-12 * (1 + np.abs(lower))) & (beta <= upper + 1e-12 * (1 + np.abs(upper)))
                  ).all(axis=-1) if bounded else np.ones(best_value.shape, dtype=bool)
        value = np.einsum("...r,...rs,...s->...", beta, g, beta) - 2.0 * np.einsum("...r,...r->...", beta, cross)
        better = inside & (value < best_value)
        best_value = np.where(better, value, best_value)
        best = np.where(better[..., None], beta, best)
    return best
