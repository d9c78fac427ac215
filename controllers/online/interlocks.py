"""Switch interlocks of one device over a horizon, in steps: the one place that turns seconds, ratings and UTC
days into "may this device switch at step t, and how often".

Rules (the device enforces the same ones; the plan must never ask for a refused switch):
- a locked device does not switch in the horizon;
- no switch before its remaining dwell has passed: step t starts ``t·step_s`` from now, so t ≥ ⌈dwell_remaining_s
  / step_s⌉;
- two switches are at least ``dwell_steps = ⌈min_dwell_s / step_s⌉`` steps apart;
- no switch at a step whose forecast load exceeds the switch rating (rating_a × nominal voltage, unity power
  factor — a step mean, so an approximation of the device's instantaneous check);
- per UTC day: the switches at steps starting before the next UTC midnight ≤ ops left today; each later day ≤
  max_operations_per_day.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from controllers.online.problem import ControlProblem, SwitchState

_EPS = 1e-9


@dataclass(frozen=True)
class Interlock:
    """Per-step switching permissions of one device. ``phase_now`` and ``allowed`` are phase codes 0..2."""

    phase_now: int
    allowed: np.ndarray
    """[3] bool: phases the device may be on."""
    can_switch: np.ndarray
    """[T] bool: a switch at step t is not forbidden by lock, remaining dwell or rating."""
    dwell_steps: int
    day_of_step: np.ndarray
    """[T] int: UTC day of each step, 0 = today."""
    ops_limit: np.ndarray
    """[n_days] int: operations allowed on each day of the horizon."""
    cost_per_operation: float

    @property
    def frozen(self) -> bool:
        """True when the device cannot switch at all in this horizon."""
        return not self.can_switch.any() or int(self.ops_limit.max(initial=0)) == 0 or int(self.allowed.sum()) == 1


def day_of_step(problem: ControlProblem) -> np.ndarray:
    """UTC day index of each step's start, 0 = the day of ``start_utc``."""
    start_s = problem.start_utc.timestamp()
    t_s = start_s + np.arange(problem.n_steps) * problem.step_s
    return (np.floor(t_s / 86400.0 + _EPS) - math.floor(start_s / 86400.0 + _EPS)).astype(np.int64)


def interlock(
    problem: ControlProblem, switch: SwitchState, load_kw: np.ndarray | None, *, day: np.ndarray | None = None
) -> Interlock:
    """Interlocks of one device; ``load_kw`` [T] is the load it switches (None: no rating check)."""
    n = problem.n_steps
    days = day_of_step(problem) if day is None else day
    can = np.ones(n, dtype=bool)
    if switch.locked:
        can[:] = False
    earliest = math.ceil(switch.dwell_remaining_s / problem.step_s - _EPS)
    can[: max(0, earliest)] = False
    if load_kw is not None:
        rating_kw = switch.limits.rating_a * problem.nominal_v_ln_v / 1000.0
        can &= np.abs(load_kw) <= rating_kw
    n_days = int(days.max()) + 1 if n else 1
    ops = np.full(n_days, switch.limits.max_operations_per_day, dtype=np.int64)
    ops[0] = switch.ops_left
    allowed = np.zeros(3, dtype=bool)
    allowed[[int(p) for p in switch.allowed_phases]] = True
    for array in (can, ops, allowed, days):
        array.flags.writeable = False  # shared by every user of the problem's interlocks
    return Interlock(
        phase_now=int(switch.phase_now),
        allowed=allowed,
        can_switch=can,
        dwell_steps=max(1, math.ceil(switch.limits.min_dwell_s / problem.step_s - _EPS)),
        day_of_step=days,
        ops_limit=ops,
        cost_per_operation=switch.limits.cost_per_operation,
    )


class _LastProblem:
    """The interlocks of the problem asked for last: one solve asks for them thousands of times (every plan it
    checks), always of the same problem; they are read-only. Keyed by identity, with the problem held so that its
    id is not reused."""

    def __init__(self) -> None:
        self.entry: tuple[ControlProblem, list[Interlock], list[Interlock | None]] | None = None

    def get(self, problem: ControlProblem) -> tuple[list[Interlock], list[Interlock | None]]:
        entry = self.entry  # one read: another thread may replace it meanwhile
        if entry is not None and entry[0] is problem:
            return entry[1], entry[2]
        days = day_of_step(problem)
        switches = [interlock(problem, d.switch, problem.switch_load_kw[:, i], day=days)
                    for i, d in enumerate(problem.switch_devices)]
        pess = [None if u.switch is None else interlock(problem, u.switch, None, day=days)
                for u in problem.pess_units]
        self.entry = (problem, switches, pess)
        return switches, pess


_last = _LastProblem()


def switch_interlocks(problem: ControlProblem) -> list[Interlock]:
    """Interlocks of every switchable customer, in problem order (do not modify them: they are shared)."""
    return _last.get(problem)[0]


def pess_interlocks(problem: ControlProblem) -> list[Interlock | None]:
    """Interlocks of every STS-connected PESS (None for the others), in problem order (shared, read-only)."""
    return _last.get(problem)[1]


def switch_steps(seq: np.ndarray, phase_now: int) -> np.ndarray:
    """[T] bool: the device changes phase at step t (compared with step t−1, or with ``phase_now`` at t = 0)."""
    prev = np.concatenate(([phase_now], seq[:-1]))
    return np.asarray(seq != prev)


def sequence_problems(lock: Interlock, seq: np.ndarray) -> list[str]:
    """Every interlock a phase sequence [T] breaks (empty when it is allowed)."""
    out: list[str] = []
    bad_phase = sorted({int(p) for p in seq if not (0 <= p <= 2 and lock.allowed[int(p)])})
    if bad_phase:
        out.append(f"phase(s) {bad_phase} not allowed")
    sw = switch_steps(seq, lock.phase_now)
    forbidden = np.flatnonzero(sw & ~lock.can_switch)
    if forbidden.size:
        out.append(f"switch at step(s) {forbidden.tolist()} forbidden (lock, remaining dwell or rating)")
    at = np.flatnonzero(sw)
    close = at[1:][np.diff(at) < lock.dwell_steps]
    if close.size:
        out.append(f"switch at step(s) {close.tolist()} within {lock.dwell_steps} step(s) of the previous one")
    per_day = np.bincount(lock.day_of_step[sw], minlength=lock.ops_limit.size)
    for d in np.flatnonzero(per_day > lock.ops_limit):
        out.append(f"{per_day[d]} switches on UTC day {d} of the horizon; allowed {lock.ops_limit[d]}")
    return out


def sequence_ok(lock: Interlock, seq: np.ndarray) -> bool:
    """Fast yes/no form of ``sequence_problems``."""
    if not lock.allowed[seq].all():
        return False
    sw = switch_steps(seq, lock.phase_now)
    if not sw.any():
        return True
    if (sw & ~lock.can_switch).any():
        return False
    at = np.flatnonzero(sw)
    if at.size > 1 and int(np.diff(at).min()) < lock.dwell_steps:
        return False
    return bool((np.bincount(lock.day_of_step[sw], minlength=lock.ops_limit.size) <= lock.ops_limit).all())
