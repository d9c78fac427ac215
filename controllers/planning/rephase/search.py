"""Exact evaluation of many re-phasing choices over all steps: local search and exhaustive enumeration.

Everything is evaluated on the paper's objective over every step (no compression), so the values found here
are true upper bounds. A move changes one or two customers; its P_unb is |d − D_old + D_new| summed over the
steps, computed for all options of the moved customer(s) at once.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

import numpy as np

from controllers.planning.rephase.problem import FeederProblem

__all__ = ["exhaustive", "local_search", "random_choice"]

_TOL = 1e-9


def random_choice(fp: FeederProblem, rng: np.random.Generator) -> np.ndarray:
    return np.array([rng.integers(len(o)) for o in fp.options], dtype=np.int64)


def _single_moves(fp: FeederProblem, d: np.ndarray, choice: np.ndarray, i: int) -> np.ndarray:
    """Objective change of putting customer i on each of its options (0 for its current one)."""
    opts = fp.offsets[i] + np.arange(len(fp.options[i]))
    cur = fp.offsets[i] + choice[i]
    base = d - fp.deviation_kw[cur]
    p_unb = np.abs(base[None] + fp.deviation_kw[opts]).sum(axis=(1, 2))
    now = float(np.abs(d).sum())
    return np.asarray(fp.lambda_p * (p_unb - now) + fp.change_cost[opts] - fp.change_cost[cur])


def _pair_moves(fp: FeederProblem, d: np.ndarray, choice: np.ndarray, i: int, j: int) -> np.ndarray:
    """Objective change [n_i, n_j] of moving customers i and j together."""
    oi = fp.offsets[i] + np.arange(len(fp.options[i]))
    oj = fp.offsets[j] + np.arange(len(fp.options[j]))
    ci, cj = fp.offsets[i] + choice[i], fp.offsets[j] + choice[j]
    base = d - fp.deviation_kw[ci] - fp.deviation_kw[cj]
    with_i = base[None] + fp.deviation_kw[oi]  # [n_i, T, 3]
    p_unb = np.empty((oi.size, oj.size))
    for b, o in enumerate(oj):
        p_unb[:, b] = np.abs(with_i + fp.deviation_kw[o][None]).sum(axis=(1, 2))
    now = float(np.abs(d).sum())
    cost = fp.change_cost[oi][:, None] + fp.change_cost[oj][None, :] - fp.change_cost[ci] - fp.change_cost[cj]
    return np.asarray(fp.lambda_p * (p_unb - now) + cost)


def local_search(fp: FeederProblem, choice: np.ndarray, *, pairs: bool = True,
                 deadline: float | None = None, clock: Callable[[], float] = time.monotonic) -> np.ndarray:
    """Best-improvement single moves until none improves, then first-improvement pair moves (each followed by
    single moves again), until neither improves or ``deadline`` (a ``clock`` value) passes. Never worse than
    ``choice``."""
    choice = np.asarray(choice, dtype=np.int64).copy()
    d = fp.deviation_of(choice)

    def apply(i: int, k: int) -> None:
        d[...] += fp.deviation_kw[fp.offsets[i] + k] - fp.deviation_kw[fp.offsets[i] + choice[i]]
        choice[i] = k

    while True:
        improved = True
        while improved and (deadline is None or clock() < deadline):
            improved = False
            best, where = -_TOL, (-1, -1)
            for i in range(fp.n_customers):
                delta = _single_moves(fp, d, choice, i)
                k = int(np.argmin(delta))
                if delta[k] < best:
                    best, where = float(delta[k]), (i, k)
            if where[0] >= 0:
                apply(*where)
                improved = True
        if not pairs:
            return choice
        moved = False
        for i, j in itertools.combinations(range(fp.n_customers), 2):
            if deadline is not None and clock() >= deadline:
                return choice
            delta = _pair_moves(fp, d, choice, i, j)
            a, b = np.unravel_index(int(np.argmin(delta)), delta.shape)
            if delta[a, b] < -_TOL:
                apply(i, int(a))
                apply(j, int(b))
                moved = True
                break
        if not moved:
            return choice


def exhaustive(fp: FeederProblem, *, batch: int = 64) -> tuple[np.ndarray, float]:
    """The optimal choice and its objective, by evaluating every assignment over every step.

    Meant for feeders with few assignments (``fp.n_choices``); the cost is n_choices × T × 3.
    """
    sizes = [len(o) for o in fp.options]
    best_value, best_choice = np.inf, fp.initial.copy()
    all_choices = itertools.product(*(range(n) for n in sizes))
    while True:
        chunk = np.array(list(itertools.islice(all_choices, batch)), dtype=np.int64)
        if chunk.size == 0:
            break
        flat = fp.offsets[None, :] + chunk
        d = fp.deviation_kw[flat].sum(axis=1)  # [B, T, 3]
        values = fp.lambda_p * np.abs(d).sum(axis=(1, 2)) + fp.change_cost[flat].sum(axis=1)
        k = int(np.argmin(values))
        if values[k] < best_value:
            best_value, best_choice = float(values[k]), chunk[k].copy()
    return best_choice, best_value
