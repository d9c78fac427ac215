"""The one entry of phase identification: meter arrays in, one assignment per method out.

``identify_phases`` runs voltage correlation and/or the energy balance and their agreement (``Method.BOTH``,
the default). With ``load_complete=False`` (some of the feeder's customers have no meter) the transformer's
phase powers contain load nobody measured: the energy balance cannot tell which metered customer is on which
phase, so every customer is "not identifiable from these data" by energy and ``both`` rests on the voltages
(the unmetered load is unknown, not residual error; the voltage-difference test uses only the customer's own
meter and the transformer's, and the correlation's references are the transformer's phases and the metered
customers, which the unmetered load does not disturb).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from controllers.identification.assignment import NOT_ASSIGNED, NOT_IDENTIFIABLE, Assignment, Method, agree
from controllers.identification.correlation import identify_by_correlation
from controllers.identification.energy import identify_by_energy

__all__ = ["identify_phases"]


def identify_phases(*, v_v: np.ndarray, p_kw: np.ndarray, n_terminals: np.ndarray, ref_v_v: np.ndarray,
                    ref_p_kw: np.ndarray, method: Method = Method.BOTH, load_complete: bool = True,
                    names: Sequence[str] | None = None, time_limit_s: float = 120.0,
                    sensitivity: np.ndarray | None = None) -> dict[Method, Assignment]:
    """Phases of the single-phase customers among n metered ones.

    - ``v_v[t, i, j]``, ``p_kw[t, i, j]``: customer i's terminal j voltage (V) and power (kW), NaN where missing
      (terminals beyond ``n_terminals[i]`` are ignored);
    - ``ref_v_v[t, φ]``, ``ref_p_kw[t, φ]``: the transformer's LV phases A, B, C;
    - ``method``: correlation, energy, or both (the default: their agreement, ``assignment.agree``);
    - ``load_complete``: False when the feeder has customers without a meter (energy then abstains);
    - ``names``: customer names for the reasons (default ``#i``);
    - ``time_limit_s``: the energy MILP's limit;
    - ``sensitivity[i, k, j, φ]``: the feeder's voltage sensitivities over the n customers
      (``sensitivity.voltage_sensitivities``): the voltage-difference test then models the drops the other
      metered customers (and, with ``load_complete=False``, the unmetered load) cause.

    Returns {method: Assignment over the n customers}; multi-terminal customers are not assigned ("three-phase").
    Raises ValueError on mismatched shapes."""
    if v_v.ndim != 3 or p_kw.shape != v_v.shape or v_v.shape[2] != 3 or n_terminals.shape != (v_v.shape[1],):
        raise ValueError(f"v_v {v_v.shape}, p_kw {p_kw.shape} and n_terminals {n_terminals.shape}: expected "
                         "[t, n, 3], [t, n, 3] and [n]")
    n = v_v.shape[1]
    if sensitivity is not None and sensitivity.shape != (n, 3, n, 3):
        raise ValueError(f"sensitivity {sensitivity.shape}: expected ({n}, 3, {n}, 3), one per customer pair and "
                         "phase pair")
    single = np.flatnonzero(n_terminals == 1)
    results: dict[Method, Assignment] = {}
    if method in (Method.CORRELATION, Method.BOTH):
        drops = None if sensitivity is None else sensitivity[single][:, :, single]
        part = identify_by_correlation(v_v[:, single, 0], ref_v_v, p_kw=p_kw[:, single, 0], ref_p_kw=ref_p_kw,
                                       sensitivity=drops)
        results[Method.CORRELATION] = _spread(part, single, n)
    if method in (Method.ENERGY, Method.BOTH):
        if load_complete:
            results[Method.ENERGY] = identify_by_energy(p_kw, n_terminals, ref_p_kw, time_limit_s=time_limit_s,
                                                        names=names)
        else:
            results[Method.ENERGY] = Assignment(
                method=Method.ENERGY, phase=np.full(n, NOT_ASSIGNED), confidence=np.zeros(n),
                scores=np.zeros((n, 3)),
                reason=tuple(f"{NOT_IDENTIFIABLE}: the feeder has unmetered load, unknown on every phase"
                             if n_terminals[i] == 1 else "three-phase" for i in range(n)))
    if method is Method.BOTH:
        results[Method.BOTH] = agree(results[Method.CORRELATION], results[Method.ENERGY])
    return results


def _spread(part: Assignment, rows: np.ndarray, n: int) -> Assignment:
    """An assignment over the single-phase ``rows`` spread over all n customers (the others three-phase)."""
    phase = np.full(n, NOT_ASSIGNED)
    confidence = np.zeros(n)
    scores = np.zeros((n, 3))
    reason = ["three-phase"] * n
    phase[rows], confidence[rows], scores[rows] = part.phase, part.confidence, part.scores
    for k, r in enumerate(rows.tolist()):
        reason[r] = part.reason[k]
    return Assignment(method=part.method, phase=phase, confidence=confidence, scores=scores, reason=tuple(reason))
