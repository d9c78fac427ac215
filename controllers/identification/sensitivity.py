"""The feeder's linearised voltage sensitivities, and the voltage drops they predict from the metered customers.

A customer's meter voltage is its phase's transformer voltage less the drop along its path, and that drop is
caused by every customer's load, its own and the others' (on its phase through the shared lines; on the other
phases through the neutral). Linearised about the unloaded feeder,
``drop_i,k(t) = Σ_j Σ_φ S[i, k, j, φ] · p_j,φ(t)``: ``S[i, k, j, φ]`` (V/kW) is how much customer i's voltage on
phase k falls, relative to the transformer's phase-k voltage, when customer j draws 1 kW on phase φ.

``voltage_sensitivities`` computes S with the twin's power flow (one batch: the unloaded feeder and each
customer on each phase alone at ``STEP_KW``). ``other_drops_v`` predicts, for every customer i and every phase
k it might be on, the drop caused by everybody else: the metered customers at their current guessed phases, and
the load nobody measured (the transformer's phase power less the metered customers' at their guesses) spread
evenly over the customers without a meter, whose phases are unknown: the unmetered load is treated as
unknown load at unknown places, not as residual error.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from controllers.identification.assignment import NOT_ASSIGNED
from controllers.identification.difference import residual_variances
from controllers.identification.unmetered import shares_of, unmetered_phases

if TYPE_CHECKING:
    from twin.network import Feeder
    from twin.powerflow.interface import Engine

__all__ = ["DESCENT_MOVES", "NEIGHBOURHOODS", "POWER_FACTOR", "SHARE_ROUNDS", "STEP_KW", "joint_phases",
           "other_drops_v", "unmetered_kw", "voltage_sensitivities"]

NEIGHBOURHOODS = (2, 4, 8, 16)
"""Sizes of the neighbourhoods ``joint_phases`` relabels as one."""
SHARE_ROUNDS = 2
"""Rounds of ``joint_phases``: fit the unmetered customers' phases at the best assignment, descend again."""
DESCENT_MOVES = 20
"""Most moves of the steepest descent in ``joint_phases``."""

STEP_KW = 1.0
"""The load step (kW) each sensitivity is computed with: small against an LV feeder's capacity, so the response
is linear (the test checks superposition against a loaded power flow)."""
POWER_FACTOR = 0.95
"""The loads' power factor in the sensitivities (a customer's reactive power taken proportional to its active)."""


def voltage_sensitivities(feeder: Feeder, *, engine: Engine | None = None,
                          power_factor: float = POWER_FACTOR) -> np.ndarray:
    """[i, k, j, φ] the fall (V per kW) of customer i's voltage on phase k, relative to the transformer's LV
    phase-k voltage, when customer j draws on phase φ (``feeder.customers`` order; power-grid-model by default).
    Raises PowerFlowError if a state does not converge."""
    from twin.errors import PowerFlowError
    from twin.powerflow.factory import create_powerflow
    from twin.powerflow.interface import Engine

    n = len(feeder.customers)
    p = np.zeros((1 + 3 * n, n, 3))
    for j in range(n):
        for phi in range(3):
            p[1 + 3 * j + phi, j, phi] = STEP_KW
    q = p * np.tan(np.arccos(power_factor))
    flow = create_powerflow(feeder, engine=engine or Engine.PGM, threads=1).solve(p_kw=p, q_kvar=q)
    if not flow.converged.all():
        raise PowerFlowError(f"voltage sensitivities of feeder {feeder.name!r}: {int((~flow.converged).sum())} "
                             "state(s) did not converge")
    bus = {b.id: k for k, b in enumerate(feeder.buses)}
    rows = np.array([bus[c.bus] for c in feeder.customers])
    relative = flow.v_v[:, rows, :] - flow.v_v[:, [bus[feeder.lv_bus]], :]  # [state, i, k]
    fall = (relative[[0]] - relative[1:]) / STEP_KW  # [3j + φ, i, k]
    return np.asarray(fall.reshape(n, 3, n, 3).transpose(2, 3, 0, 1))


def other_drops_v(p_kw: np.ndarray, ref_p_kw: np.ndarray, phase: np.ndarray, metered: np.ndarray,
                  sensitivity: np.ndarray, shares: np.ndarray | None = None) -> np.ndarray:
    """[t, i, k] the drop (V) customer i would see on phase k from everybody but itself: the ``metered``
    customers j ≠ i at ``phase[j]`` (NOT_ASSIGNED: left out) with their powers ``p_kw[t, j]`` (kW; NaN as 0), and
    the unmetered load on each phase φ, U_φ(t) = ``ref_p_kw[t, φ]`` less the metered customers' on φ (i counted
    on k), spread over the customers not ``metered`` by ``shares[j, φ]`` (``unmetered.shares_of``; None:
    evenly). ``sensitivity[i, k, j, φ]`` from ``voltage_sensitivities``. Raises ValueError on mismatched
    shapes."""
    n_t, n = p_kw.shape
    if sensitivity.shape != (n, 3, n, 3) or ref_p_kw.shape != (n_t, 3) or phase.shape != (n,) or \
            metered.shape != (n,):
        raise ValueError(f"p_kw {p_kw.shape}, ref_p_kw {ref_p_kw.shape}, phase {phase.shape}, metered "
                         f"{metered.shape}, sensitivity {sensitivity.shape}: expected [t, n], [t, 3], [n], [n], "
                         "[n, 3, n, 3]")
    p = np.where(np.isfinite(p_kw), p_kw, 0.0)
    on = _metered_on(phase, metered)
    # metered: Σ_j S[i, k, j, φ_j] p_j(t), j ≠ i
    gain = np.einsum("ikjf,jf->ikj", sensitivity, on)
    gain[np.arange(n), :, np.arange(n)] = 0.0
    drop = (p @ gain.transpose(2, 0, 1).reshape(n, 3 * n)).reshape(-1, n, 3)
    if (~metered).any():
        if shares is None:
            spread = sensitivity[:, :, ~metered, :].mean(axis=2)  # [i, k, φ]
        else:
            spread = np.einsum("ikjf,jf->ikf", sensitivity, np.where(metered[:, None], 0.0, shares))
        unmetered = np.where(np.isfinite(ref_p_kw), ref_p_kw, 0.0) - p @ on  # [t, φ], as ``unmetered_kw``
        drop += np.einsum("tf,ikf->tik", unmetered, spread)
        # i itself: at its guess in `unmetered`; on hypothesis k it is on k instead
        own_guess = np.einsum("if,ikf->ik", on, spread)
        drop += p[:, :, None] * (own_guess - np.diagonal(spread, axis1=1, axis2=2))[None, :, :]
    return np.asarray(drop)


def unmetered_kw(p_kw: np.ndarray, ref_p_kw: np.ndarray, phase: np.ndarray, metered: np.ndarray) -> np.ndarray:
    """[t, φ] the load nobody measured (kW): the transformer's phase power less the ``metered`` customers' at
    their ``phase`` (NOT_ASSIGNED: not counted; NaN as 0)."""
    p = np.where(np.isfinite(p_kw), p_kw, 0.0)
    return np.asarray(np.where(np.isfinite(ref_p_kw), ref_p_kw, 0.0) - p @ _metered_on(phase, metered))


def _metered_on(phase: np.ndarray, metered: np.ndarray) -> np.ndarray:
    """[n, 3] one where a ``metered`` customer is taken to be on that phase (NOT_ASSIGNED: a zero row)."""
    known = metered & (phase != NOT_ASSIGNED)
    on = np.zeros((phase.size, 3))
    on[np.flatnonzero(known), phase[known]] = 1.0
    return on


def joint_phases(v_v: np.ndarray, ref_v_v: np.ndarray, p_kw: np.ndarray, ref_p_kw: np.ndarray, *,
                 starts: list[np.ndarray], metered: np.ndarray,
                 sensitivity: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The joint assignment of the ``metered`` customers that the voltage-difference test with the other customers'
    drops modelled fits best, and where the searches disagree.

    The fit is Σ_i n_i · ln s_i(φ_i), the customers' residual variances at their own phases (a Gaussian
    log-likelihood; lower is better). From each of ``starts`` a steepest descent takes the best of the single
    moves (one customer to another phase, every drop predicted again; the five whose own fit gains most with the
    others fixed are tried first, all of them when none of those helps) and, when no single move helps, the best
    relabelling of a neighbourhood (a customer and its electrically nearest metered neighbours, by the drop they
    cause each other, ``NEIGHBOURHOODS`` in all, their phases permuted, e.g. A and C swapped): a branch whose
    customers are all relabelled alike fits itself and no single move mends it (the Kerber grid, seed 11, 75 %
    metered: a branch of five with A and C swapped, at 0.997–1.0 confidence). At most ``DESCENT_MOVES``
    moves per start. With unmetered customers, their phases (``unmetered.unmetered_phases``: where the load
    nobody measured is drawn) are then fitted at the best end state and the descents continue from the end
    states with them, ``SHARE_ROUNDS`` times. Returns the best end state, per customer whether the end states
    disagree on it (such a customer's phase rests on which local optimum was found: not identifiable), and the
    unmetered load's shares (``unmetered.shares_of``; None: every customer metered)."""
    movable = np.flatnonzero(metered & (starts[0] != NOT_ASSIGNED))
    n = sensitivity.shape[0]
    mutual = np.einsum("ikjk->ij", sensitivity) / 3.0
    groups = sorted({tuple(sorted(movable[np.argsort(-mutual[i, movable])][:size].tolist()))
                     for i in movable for size in NEIGHBOURHOODS})

    shares: np.ndarray | None = None

    def score(assignment: np.ndarray, with_shares: np.ndarray | None) -> tuple[float, np.ndarray]:
        s, count = residual_variances(v_v, ref_v_v, p_kw,
                                      other_drops_v(p_kw, ref_p_kw, assignment, metered, sensitivity, with_shares))
        log_s = count * np.log(np.maximum(s, 1e-12))
        return float(log_s[movable, assignment[movable]].sum()), log_s

    def evaluate(assignment: np.ndarray) -> tuple[float, np.ndarray]:
        return score(assignment, shares)

    def descend(start: np.ndarray) -> tuple[float, np.ndarray]:
        phase = start.copy()
        best, log_s = evaluate(phase)
        for _ in range(DESCENT_MOVES):
            gain = log_s[movable] - log_s[movable, phase[movable]][:, None]  # own fit of each move, others fixed
            gain[np.arange(movable.size), phase[movable]] = np.inf
            order = np.argsort(gain, axis=None)
            candidates = [_moved(phase, [int(movable[r])], int(k)) for r, k in
                          (np.unravel_index(int(o), gain.shape) for o in order[:5])]
            found = _best(candidates, evaluate, best)
            if found is None:
                found = _best(_single_moves(phase, movable), evaluate, best)
            if found is None:
                found = _best([_permuted(phase, np.array(group), perm) for group in groups
                               for perm in _PERMUTATIONS], evaluate, best)
            if found is None:
                break
            best, phase, log_s = found
        return best, phase

    ends = sorted((descend(start) for start in starts), key=lambda pair: pair[0])
    if (~metered).any():
        for _ in range(SHARE_ROUNDS):
            at = ends[0][1]

            def fit_of(trial: np.ndarray, at: np.ndarray = at) -> float:
                return score(at, trial)[0]

            shares = shares_of(unmetered_phases(fit_of, metered), metered)
            ends = sorted((descend(end) for _, end in ends), key=lambda pair: pair[0])
    disagree = np.zeros(n, dtype=bool)
    for _, other in ends[1:]:
        disagree |= other != ends[0][1]
    return ends[0][1], disagree, shares


def _best(candidates: list[np.ndarray], evaluate: Callable[[np.ndarray], tuple[float, np.ndarray]],
          best: float) -> tuple[float, np.ndarray, np.ndarray] | None:
    """The candidate of the lowest fit if it is below ``best``: (fit, candidate, its log-variances); else None."""
    scored = [(*evaluate(c), c) for c in candidates]
    if not scored:
        return None
    value, log_s, chosen = min(scored, key=lambda triple: triple[0])
    return (value, chosen, log_s) if value < best - 1e-9 else None


def _moved(phase: np.ndarray, who: list[int], to: int) -> np.ndarray:
    out = phase.copy()
    out[who] = to
    return out


def _permuted(phase: np.ndarray, who: np.ndarray, perm: tuple[int, ...]) -> np.ndarray:
    out = phase.copy()
    out[who] = np.array(perm)[out[who]]
    return out


_PERMUTATIONS = [perm for perm in itertools.permutations(range(3)) if perm != (0, 1, 2)]


def _single_moves(phase: np.ndarray, movable: np.ndarray) -> list[np.ndarray]:
    return [_moved(phase, [int(i)], k) for i in movable for k in range(3) if k != phase[i]]
