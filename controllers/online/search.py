"""Local search over the phases of switchable customers and STS-connected PESS with battery powers held: a fast,
exact improvement step.

A move sets one device to phase φ during a window of steps [t0, t1) (t1 = T: "from t0 on"). Its exact change
of the objective is computed for every customer, phase and window at once: the unbalance change per step is
|·| arithmetic on [customers, phases, steps] arrays, windows come from cumulative sums, and the change in the
number of switches from the sequence's transitions. The best improving move that passes the interlocks is
applied; repeat until none is left or the deadline passes. Best-improvement, so the result is a local optimum
of this neighbourhood (the MILP neighbourhoods afterwards handle moves of several customers at once).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from controllers.online.evaluate import net_injection_kw, phase_loads_kw
from controllers.online.interlocks import Interlock, pess_interlocks, sequence_ok, switch_steps
from controllers.online.problem import ControlProblem, ControlWeights, Decisions

_IMPROVES = -1e-9
_MAX_TRIED = 256


def _unbalance(a: np.ndarray) -> np.ndarray:
    return np.abs(a - a.mean(axis=-1, keepdims=True)).sum(axis=-1)


def _peak_change(now: np.ndarray, moved: np.ndarray) -> np.ndarray:
    """[m, 3, t0, t1] change of the horizon's highest transformer-phase load when device m is on φ during steps
    [t0, t1): the highest of the steps before t0 and from t1 on (``now`` [T], per step, unchanged) and of the
    window's steps after the move (``moved`` [m, 3, T]); entries with t1 ≤ t0 are not used."""
    n_m, _, n_t = moved.shape
    before = np.concatenate([[-np.inf], np.maximum.accumulate(now)])  # [T+1] max over steps < t0
    after = np.concatenate([np.maximum.accumulate(now[::-1])[::-1], [-np.inf]])  # [T+1] max over steps ≥ t1
    inside = np.full((n_m, 3, n_t + 1, n_t + 1), -np.inf)
    for t0 in range(n_t):
        inside[:, :, t0, t0 + 1:] = np.maximum.accumulate(moved[:, :, t0:], axis=2)
    outside = np.maximum(before[:, None], after[None, :])  # [t0, t1]
    return np.maximum(inside, outside[None, None]) - now.max()


def _above(a: np.ndarray, level: float) -> np.ndarray:
    return np.maximum(0.0, a - level).sum(axis=-1)


def improve_phases(
    problem: ControlProblem,
    weights: ControlWeights,
    d: Decisions,
    locks: list[Interlock],
    *,
    deadline: float,
    timer: Callable[[], float],
    constant_phases: bool = False,
    max_moves: int | None = None,
) -> Decisions:
    """``d`` with its phases improved by single-device window moves; battery powers unchanged.

    The movable devices are the switchable customers and the STS-connected PESS, whose fixed injection moves with
    their phase like a (negative) customer load. ``constant_phases``: only whole-horizon moves (each device keeps
    one phase, the static baseline). ``max_moves``: stop after that many moves (None: at a local optimum or
    the deadline).
    """
    n_t = problem.n_steps
    net = net_injection_kw(problem, d)
    movers: list[tuple[int, int, Interlock, np.ndarray, np.ndarray]] = []  # (kind, index, lock, load, seq)
    for c, lock in enumerate(locks):
        if not lock.frozen:
            movers.append((0, c, lock, problem.switch_load_kw[:, c], d.phase[:, c]))
    for u, sts in enumerate(pess_interlocks(problem)):
        if sts is not None and not sts.frozen:
            movers.append((1, u, sts, -net[:, u], d.pess_phase[:, u]))
    if not movers:
        return d
    loads = phase_loads_kw(problem, d)
    seq = np.array([m[4] for m in movers], dtype=np.int64)  # [m, T]
    load = np.array([m[3] for m in movers])  # [m, T]
    feeder = np.array([
        problem.switch_devices[i].feeder if kind == 0 else problem.pess_units[i].feeder for kind, i, *_ in movers
    ])
    now = np.array([m[2].phase_now for m in movers])
    cost_sw = np.array([weights.switch_per_operation + m[2].cost_per_operation for m in movers])
    allowed = np.stack([m[2].allowed for m in movers])  # [m, 3]
    k_unb = weights.unbalance_per_kwh * problem.step_h
    k_tr = weights.transformer_unbalance_per_kwh * problem.step_h
    k_pk = weights.peak_phase_per_kw  # the horizon's peak: from prefix, suffix and window maxima below
    k_ex = weights.peak_excess_per_kwh * problem.step_h  # the excess is step by step: exact here
    level = problem.balanced_peak_kw if k_ex else 0.0
    n_m = len(movers)
    t0_idx, t1_idx = np.meshgrid(np.arange(n_t + 1), np.arange(n_t + 1), indexing="ij")
    window_ok = t1_idx > t0_idx
    if constant_phases:
        window_ok &= (t0_idx == 0) & (t1_idx == n_t)
    moves = 0
    while (max_moves is None or moves < max_moves) and timer() < deadline:
        a = loads[:, feeder, :].transpose(1, 0, 2)  # [m, T, 3]
        u0 = _unbalance(a)
        m_idx = np.arange(n_m)[:, None]
        t_idx = np.arange(n_t)[None, :]
        delta = np.empty((n_m, 3, n_t))
        total = np.broadcast_to(loads.sum(axis=1), (n_m, n_t, 3)) if k_tr or k_ex or k_pk else None
        step_max = np.full((n_m, 3, n_t), -np.inf) if k_pk else None  # [m, φ, t] highest phase after the move
        ut0 = _unbalance(total) if total is not None and k_tr else None
        ex0 = _above(total, level) if total is not None and k_ex else None
        for phi in range(3):
            moved = a.copy()
            moved[m_idx, t_idx, seq] -= load
            moved[:, :, phi] += load
            change = k_unb * (_unbalance(moved) - u0)
            if total is not None:
                moved_t = total.copy()
                moved_t[m_idx, t_idx, seq] -= load
                moved_t[:, :, phi] += load
                if ut0 is not None:
                    change += k_tr * (_unbalance(moved_t) - ut0)
                if ex0 is not None:
                    change += k_ex * (_above(moved_t, level) - ex0)
                if step_max is not None:
                    step_max[:, phi, :] = moved_t.max(axis=-1)
            delta[:, phi, :] = np.where(seq == phi, 0.0, change)
        cum = np.concatenate([np.zeros((n_m, 3, 1)), np.cumsum(delta, axis=2)], axis=2)  # [m, 3, T+1]
        d_unb = cum[:, :, None, :] - cum[:, :, :, None]  # [m, 3, t0, t1]
        if step_max is not None and total is not None:
            d_unb = d_unb + k_pk * _peak_change(total[0].max(axis=-1), step_max)
        sw = np.stack([switch_steps(seq[i], int(now[i])) for i in range(n_m)]).astype(np.int64)
        csw = np.concatenate([np.zeros((n_m, 1), dtype=np.int64), np.cumsum(sw, axis=1)], axis=1)
        prev = np.concatenate([now[:, None], seq[:, :-1]], axis=1)  # phase before each step
        new_start = prev[:, None, :] != np.arange(3)[None, :, None]  # [m, 3, T] switch into φ at t0
        new_end = np.zeros((n_m, 3, n_t + 1), dtype=bool)  # switch out of φ at t1 < T
        new_end[:, :, :n_t] = seq[:, None, :] != np.arange(3)[None, :, None]
        new_start_ext = np.concatenate([new_start, np.zeros((n_m, 3, 1), dtype=bool)], axis=2)
        old = csw[:, None, np.minimum(t1_idx + 1, n_t)] - csw[:, None, t0_idx]  # [m, 1, t0, t1]
        new = new_start_ext[:, :, :, None].astype(np.int64) + new_end[:, :, None, :]
        gain = d_unb + cost_sw[:, None, None, None] * (new - old)
        gain = np.where(window_ok[None, None] & allowed[:, :, None, None], gain, np.inf)
        order = np.argsort(gain, axis=None)
        applied = False
        for flat in order[:_MAX_TRIED]:
            i, phi, t0, t1 = np.unravel_index(flat, gain.shape)
            if not gain[i, phi, t0, t1] < _IMPROVES:
                break
            trial = seq[i].copy()
            trial[t0:t1] = phi
            if not sequence_ok(movers[i][2], trial):
                continue
            steps = np.arange(n_t)
            f = feeder[i]
            loads[steps, f, seq[i]] -= load[i]
            loads[steps, f, trial] += load[i]
            seq[i] = trial
            applied = True
            moves += 1
            break
        if not applied:
            break
    phase = np.array(d.phase, copy=True)
    pess_phase = np.array(d.pess_phase, copy=True)
    for (kind, i, *_), row in zip(movers, seq, strict=True):
        if kind == 0:
            phase[:, i] = row
        else:
            pess_phase[:, i] = row
    return Decisions(phase=phase, pess_phase=pess_phase, charge_kw=d.charge_kw, discharge_kw=d.discharge_kw,
                     curtail_kw=d.curtail_kw)
