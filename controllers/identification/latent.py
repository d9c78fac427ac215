"""The load nobody measured as latent loads: each unmetered customer's draw on each phase, per interval, unknown,
non-negative, and together equal to the transformer's phase power less the metered customers'.

With some customers unmetered, ``sensitivity.joint_phases`` spreads each phase's unmetered load U_φ(t) over the
unmetered customers by fixed shares (``unmetered.shares_of``, their phases estimated by the same fit). That spread
is a model choice the data cannot check, and on the Kerber grid (a month of hourly class-1.0 data, half the
customers metered, seed 11) a wrong joint assignment of the metered customers fitted it better than the truth.

Here nothing is assumed of where or how the unmetered load is drawn beyond what is physical and measured: in each
interval t the unmetered customers draw x_uφ(t) ≥ 0 on phase φ (any phase, any of them), with Σ_u x_uφ(t) =
U_φ(t). A metered customer i on phase k then reads

    V_i(t) = V_k(t) − Σ_metered j S[i, k, j, φ_j] p_j(t) − Σ_u Σ_φ S[i, k, u, φ] x_uφ(t) + c_i + ε_i(t)

(``sensitivity.voltage_sensitivities``; c_i a constant per customer: the linearisation's offset). For a joint
assignment of the metered customers, ``latent_misfit`` is the least Σ ε² (V²) over the latent loads
(non-negative least squares per interval, the equality held by weighted rows, ``BALANCE_V_PER_KW``) and the
constants (alternated, ``CONSTANT_ROUNDS``). A wrong assignment must explain the metered voltages with a
placement of non-negative load that also closes every phase's balance, which it can only partly do.

``refine_by_latent_load`` lowers the misfit by steepest descent over single moves of one metered customer to
another phase, from a given assignment, at most ``LATENT_MOVES`` moves (a work budget, no clock).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import nnls

from controllers.identification.assignment import NOT_ASSIGNED

__all__ = ["BALANCE_V_PER_KW", "CONSTANT_ROUNDS", "LATENT_MOVES", "latent_misfit", "refine_by_latent_load"]

BALANCE_V_PER_KW = 8.0
"""Weight of a phase balance's mismatch (V per kW) beside the voltage residuals (V) in the least squares: a 1 kW
gap in a balance costs as much as an 8 V error at one meter, ten times a class-1.0 meter's interval error
(σ ≈ 0.77 V), so the balance holds within about 0.1 kW."""
CONSTANT_ROUNDS = 2
"""Rounds of the alternation between the latent loads (per interval) and the customers' constants."""
LATENT_MOVES = 12
"""Most single moves of ``refine_by_latent_load``'s descent."""


def latent_misfit(v_v: np.ndarray, ref_v_v: np.ndarray, p_kw: np.ndarray, ref_p_kw: np.ndarray,
                  phase: np.ndarray, metered: np.ndarray, sensitivity: np.ndarray) -> float:
    """Least Σ_t Σ_i ε_i(t)² (V²) over the ``metered`` customers at ``phase`` (customers not ``metered`` are the
    latent loads; metered ones NOT_ASSIGNED are left out of both), for meter voltages ``v_v[t, i]`` (V, NaN where
    missing), powers ``p_kw[t, i]`` (kW, NaN as 0), the transformer's ``ref_v_v[t, φ]``, ``ref_p_kw[t, φ]`` and
    ``sensitivity[i, k, j, φ]`` (V/kW). Raises ValueError on mismatched shapes."""
    n_t, n = v_v.shape
    if p_kw.shape != (n_t, n) or ref_v_v.shape != (n_t, 3) or ref_p_kw.shape != (n_t, 3) or \
            phase.shape != (n,) or metered.shape != (n,) or sensitivity.shape != (n, 3, n, 3):
        raise ValueError(f"v_v {v_v.shape}, p_kw {p_kw.shape}, ref_v_v {ref_v_v.shape}, ref_p_kw {ref_p_kw.shape}, "
                         f"phase {phase.shape}, metered {metered.shape}, sensitivity {sensitivity.shape}: expected "
                         "[t, n], [t, n], [t, 3], [t, 3], [n], [n], [n, 3, n, 3]")
    rows = np.flatnonzero(metered & (phase != NOT_ASSIGNED))
    latent = np.flatnonzero(~metered)
    if rows.size == 0:
        return 0.0
    p = np.where(np.isfinite(p_kw), p_kw, 0.0)
    k = phase[rows]
    on = np.zeros((n, 3))
    on[rows, k] = 1.0
    # the metered customers' own drops (every metered j, i itself included) added back: y_i = V_i − V_k + drop
    gain = np.einsum("ikjf,jf->ikj", sensitivity[rows], on)[np.arange(rows.size), k]  # [i, j]
    y = v_v[:, rows] - ref_v_v[:, k] + p @ gain.T
    balance = np.where(np.isfinite(ref_p_kw), ref_p_kw, 0.0) - p @ on  # [t, φ]
    design = -sensitivity[rows][np.arange(rows.size), k][:, latent, :].reshape(rows.size, 3 * latent.size)
    sums = np.zeros((3, design.shape[1]))
    for phi in range(3):
        sums[phi, phi::3] = BALANCE_V_PER_KW
    ok = np.isfinite(y)
    constant = np.zeros(rows.size)
    residual = np.zeros_like(y)
    for _ in range(CONSTANT_ROUNDS):
        for t in range(n_t):
            seen = ok[t]
            if not seen.any():
                continue
            if latent.size:
                x, _ = nnls(np.vstack([design[seen], sums]),
                            np.concatenate([y[t, seen] - constant[seen], BALANCE_V_PER_KW * balance[t]]))
                fitted = design[seen] @ x
            else:
                fitted = np.zeros(int(seen.sum()))
            residual[t, seen] = y[t, seen] - constant[seen] - fitted
        constant += np.where(ok, residual, 0.0).sum(axis=0) / np.maximum(ok.sum(axis=0), 1)
    centred = np.where(ok, residual - residual.sum(axis=0) / np.maximum(ok.sum(axis=0), 1), 0.0)
    return float((centred * centred).sum())


def refine_by_latent_load(v_v: np.ndarray, ref_v_v: np.ndarray, p_kw: np.ndarray, ref_p_kw: np.ndarray,
                          start: np.ndarray, metered: np.ndarray, sensitivity: np.ndarray, *,
                          moves: int = LATENT_MOVES,
                          movable: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """The assignment of the ``metered`` customers (NOT_ASSIGNED ones stay so) that steepest descent over single
    moves of the ``movable`` ones (None: every metered one) reaches from ``start`` on ``latent_misfit``, at most
    ``moves`` moves, and its misfit (V²)."""
    phase = start.copy()
    who = np.flatnonzero(metered & (start != NOT_ASSIGNED) & (True if movable is None else movable))

    def misfit(trial: np.ndarray) -> float:
        return latent_misfit(v_v, ref_v_v, p_kw, ref_p_kw, trial, metered, sensitivity)

    best = misfit(phase)
    for _ in range(moves):
        scored = []
        for i in who.tolist():
            for k in range(3):
                if k != phase[i]:
                    trial = phase.copy()
                    trial[i] = k
                    scored.append((misfit(trial), i, k))
        if not scored:
            break
        value, chosen, to = min(scored)
        if value >= best - 1e-9:
            break
        phase[chosen] = to
        best = value
    return phase, best
