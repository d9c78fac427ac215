"""Where the load nobody measured is drawn: the phases of the customers without a meter, from the metered voltages.

With some customers unmetered, each phase's load nobody measured is known in total, U_φ(t) = the transformer's
phase-φ power less the metered customers' on φ, but not where it is drawn. ``sensitivity.other_drops_v`` spreads
it by shares w_jφ over the unmetered customers (its drop at customer i on phase k: Σ_φ U_φ(t) Σ_j w_jφ
S[i, k, j, φ]). Spread evenly over all of them, it puts load on phases where a customer draws none: on the Kerber
grid (a month of hourly class-1.0 data, half the customers metered) a wrong joint assignment of the metered
customers then fitted better than the truth (seeds 3 and 11: 88.9 % and 90.6 % right); spread evenly over the
unmetered customers truly on each phase, every metered customer was right on both seeds.

So the unmetered customers' phases are estimated too: ``unmetered_phases`` lowers the same fit as the metered
customers' descent (``sensitivity.joint_phases``: Σ_i n_i ln s_i over the metered customers) by sweeps of
single changes of one unmetered customer's phase, starting from "any phase" (every phase's set). Their loads
stay unknown per interval and per customer: U_φ(t) is spread evenly over the customers taken to be on φ, and
nothing of it is taken as residual error.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from controllers.identification.assignment import NOT_ASSIGNED

__all__ = ["UNMETERED_SWEEPS", "shares_of", "unmetered_phases"]

UNMETERED_SWEEPS = 4
"""Most sweeps over the unmetered customers in ``unmetered_phases``."""


def shares_of(unmetered_phase: np.ndarray, metered: np.ndarray) -> np.ndarray:
    """[n, 3] shares w_jφ: each phase's unmetered load spread evenly over the customers not ``metered`` whose
    ``unmetered_phase[j]`` is φ or NOT_ASSIGNED (any phase); over all of them where none is. Each column sums to
    1 over the unmetered customers (all zero without any)."""
    shares = np.zeros((metered.size, 3))
    absent = ~metered
    if not absent.any():
        return shares
    for phi in range(3):
        on = absent & ((unmetered_phase == phi) | (unmetered_phase == NOT_ASSIGNED))
        if not on.any():
            on = absent
        shares[on, phi] = 1.0 / on.sum()
    return shares


def unmetered_phases(fit: Callable[[np.ndarray], float], metered: np.ndarray) -> np.ndarray:
    """The unmetered customers' phases (NOT_ASSIGNED for the metered, and for an unmetered one no phase fits
    better than "any") that lower ``fit(shares)`` (lower is better; ``shares_of``), by sweeps of single changes,
    at most ``UNMETERED_SWEEPS``."""
    phase = np.full(metered.size, NOT_ASSIGNED)
    best = fit(shares_of(phase, metered))
    for _ in range(UNMETERED_SWEEPS):
        improved = False
        for j in np.flatnonzero(~metered):
            for phi in (NOT_ASSIGNED, 0, 1, 2):
                if phi == phase[j]:
                    continue
                trial = phase.copy()
                trial[j] = phi
                value = fit(shares_of(trial, metered))
                if value < best - 1e-9:
                    best, phase, improved = value, trial, True
        if not improved:
            break
    return phase
