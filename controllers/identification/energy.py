"""Phase identification by energy balance: the MILP over assignments that best explains the transformer's
per-phase energy by the customers' energies.

    min Σ_t Σ_φ |P_φ(t) − Σ_i p_i(t)·x_iφ − Σ_m Σ_j p_mj(t)·y_mjφ|
    s.t. Σ_φ x_iφ = 1 (each single-phase customer on one phase), and for each multi-terminal customer m the
         terminals take distinct phases (Σ_φ y_mjφ = 1, Σ_j y_mjφ = 1), x, y binary.

The absolute deviation (losses, meter error) is robust to the few intervals where it is large. A customer's
missing intervals are filled with its mean over the intervals it reported (counted in the reason); intervals
where the transformer's reading is missing are left out. Customers with no power data at all stay out of the
balance and are not assigned.

The solver's assignment is then polished by moves and swaps until none improves it
(``identifiability.improve_by_moves``), so that it is a local optimum under the moves its confidence is tested
against.

Confidence (``identifiability``): moving customer i to phase φ' — alone, or together with the one other
customer's move that best compensates it (a swap) — raises the objective by at least ΔJ_φ'. Under Laplace
residuals of scale b (their mean absolute value) inflated by τ, the residual's autocorrelation factor (n/τ
independent intervals), the posterior of the chosen phase is 1 / (1 + Σ_φ' exp(−ΔJ_φ'/(b·τ))). Customers whose
consumption is collinear with customers on other phases (the same scaled profile: ``collinear_groups``) get
confidence 0 and the reason "not identifiable from these data": group moves of equal total among them leave
the balance unchanged, whatever the single moves and swaps say.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from controllers.identification.assignment import NOT_ASSIGNED, NOT_IDENTIFIABLE, Assignment, Method
from controllers.identification.identifiability import (
    COLLINEAR,
    collinear_groups,
    compensated_deltas,
    improve_by_moves,
    variance_inflation,
)
from controllers.sparse_milp import Outcome, SparseModel, solve

__all__ = ["identify_by_energy"]


def identify_by_energy(p_kw: np.ndarray, n_terminals: np.ndarray, ref_p_kw: np.ndarray, *,
                       time_limit_s: float = 120.0, names: Sequence[str] | None = None) -> Assignment:
    """Phases of the single-phase customers (``n_terminals == 1``) from terminal powers ``p_kw[t, i, j]`` (kW, NaN
    where missing) and the transformer's per-phase power ``ref_p_kw[t, φ]``. Multi-terminal customers take part
    in the balance (their terminals' phases are free) and come back not assigned, reason "three-phase".
    Raises ValueError on mismatched shapes and when the solver returns no assignment."""
    if p_kw.ndim != 3 or p_kw.shape[2] != 3 or ref_p_kw.shape != (p_kw.shape[0], 3):
        raise ValueError(f"powers have shape {p_kw.shape} and references {ref_p_kw.shape}; expected [t, n, 3] "
                         "and [t, 3] over the same intervals")
    n_customers = p_kw.shape[1]
    keep_t = np.isfinite(ref_p_kw).all(axis=1)
    p = p_kw[keep_t]
    ref = ref_p_kw[keep_t]
    reasons = ["" for _ in range(n_customers)]
    has_data = np.zeros(n_customers, dtype=bool)
    filled = p.copy()
    for i in range(n_customers):
        for j in range(int(n_terminals[i])):
            column = p[:, i, j]
            ok = np.isfinite(column)
            if ok.any():
                has_data[i] = True
                filled[~ok, i, j] = column[ok].mean()
            else:
                filled[:, i, j] = 0.0
        if not has_data[i]:
            reasons[i] = "no power data"
    single = np.flatnonzero((n_terminals == 1) & has_data)
    multi = np.flatnonzero((n_terminals > 1) & has_data)
    n_t = p.shape[0]
    sm = SparseModel()
    x = sm.add_vars((single.size, 3), lb=0, ub=1, integer=True)
    y = sm.add_vars((multi.size, 3, 3), lb=0, ub=1, integer=True)
    dev_pos = sm.add_vars((n_t, 3), lb=0, ub=np.inf)
    dev_neg = sm.add_vars((n_t, 3), lb=0, ub=np.inf)
    balance = sm.add_rows((n_t, 3), lb=ref, ub=ref)
    for k in range(3):
        sm.add_terms(balance[:, [k]], x[None, :, k], filled[:, single, 0])
        for jj in range(3):
            sm.add_terms(balance[:, [k]], y[None, :, jj, k], filled[:, multi, jj])
    sm.add_terms(balance, dev_pos, 1.0)
    sm.add_terms(balance, dev_neg, -1.0)
    one = sm.add_rows(single.size, lb=1, ub=1)
    sm.add_terms(one[:, None], x, 1.0)
    per_terminal = sm.add_rows((multi.size, 3), lb=1, ub=1)
    sm.add_terms(per_terminal[:, :, None], y, 1.0)
    per_phase = sm.add_rows((multi.size, 3), lb=1, ub=1)
    sm.add_terms(per_phase[:, None, :], y, 1.0)
    sm.add_objective(dev_pos, 1.0)
    sm.add_objective(dev_neg, 1.0)
    out = solve(sm, time_limit_s=time_limit_s, relative_gap=1e-9,
                hint=_least_squares_start(filled, ref, single, multi, n_vars=sm.n_vars, ids=(x, y, dev_pos, dev_neg)))
    if out.outcome not in (Outcome.OPTIMAL, Outcome.FEASIBLE) or out.values is None:
        raise ValueError(f"the energy-balance MILP found no assignment: {out.detail}")
    x_val = out.values[x].round().astype(int)
    y_val = out.values[y].round().astype(int) if multi.size else np.zeros((0, 3, 3), dtype=int)
    load = np.zeros((n_t, 3))
    load += filled[:, single, 0] @ x_val
    for m in range(multi.size):
        load += filled[:, multi[m], :] @ y_val[m]
    series = filled[:, single, 0]
    chosen, residual = improve_by_moves(ref - load, series, x_val.argmax(axis=1))
    scale = max(float(np.abs(residual).mean()), 1e-9) * variance_inflation(residual)
    delta = compensated_deltas(residual, series, chosen)
    group = collinear_groups(series) if single.size else np.zeros(0, dtype=int)
    label = (lambda i: names[i]) if names is not None else (lambda i: f"#{i}")
    phase = np.full(n_customers, NOT_ASSIGNED)
    confidence = np.zeros(n_customers)
    scores = np.zeros((n_customers, 3))
    for idx, row in enumerate(single.tolist()):
        k = int(chosen[idx])
        phase[row] = k
        scores[row] = -delta[idx]
        confidence[row] = 1.0 / (1.0 + sum(np.exp(-delta[idx, o] / scale) for o in range(3) if o != k))
        peers = np.flatnonzero(group == group[idx]) if group[idx] >= 0 else np.zeros(0, dtype=int)
        if np.unique(chosen[peers]).size > 1:
            confidence[row] = 0.0
            others = [label(int(single[j])) for j in peers if j != idx]
            reasons[row] = (f"{NOT_IDENTIFIABLE}: consumption collinear (ρ ≥ {COLLINEAR}) with "
                            f"{', '.join(others[:5])}{' …' if len(others) > 5 else ''} on other phases (same "
                            "scaled profile); swapping them leaves the balance unchanged")
    for row in multi.tolist():
        reasons[row] = "three-phase"
    if n_t == 0:
        reasons = ["no interval with the transformer's power" for _ in range(n_customers)]
        phase[:] = NOT_ASSIGNED
    return Assignment(method=Method.ENERGY, phase=phase, confidence=confidence, scores=scores,
                      reason=tuple(reasons))


def _least_squares_start(filled: np.ndarray, ref: np.ndarray, single: np.ndarray, multi: np.ndarray, *, n_vars: int,
                         ids: tuple[np.ndarray, ...]) -> np.ndarray:
    """A feasible start for the MILP: each single-phase customer on the phase of its largest coefficient in the
    least-squares regression of the transformer's phase powers on the customers' powers; multi-terminal
    customers in their recorded order. So the solver always has an assignment to return, however short its
    time."""
    x, y, dev_pos, dev_neg = ids
    hint = np.zeros(n_vars)
    known = filled[:, multi, :].sum(axis=1) if multi.size else np.zeros_like(ref)
    beta = np.linalg.lstsq(filled[:, single, 0], ref - known, rcond=None)[0] if single.size else np.zeros((0, 3))
    choice = beta.argmax(axis=1)
    hint[x[np.arange(single.size), choice]] = 1.0
    for m in range(multi.size):
        hint[y[m, np.arange(3), np.arange(3)]] = 1.0
    load = known + np.stack([filled[:, single[choice == k], 0].sum(axis=1) for k in range(3)], axis=1)
    residual = ref - load
    hint[dev_pos] = np.maximum(residual, 0.0)
    hint[dev_neg] = np.maximum(-residual, 0.0)
    return hint
