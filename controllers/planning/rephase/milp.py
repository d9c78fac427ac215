"""The re-phasing MILP of one feeder, exact or on compressed steps, built as arrays for MathOpt/HiGHS.

The deviations of a feeder's three phases from their mean sum to zero, so Σ_φ |d_tφ| = 2 Σ_φ max(d_tφ, 0). Steps
are grouped into clusters (``labels[t]`` = cluster of step t). For every cluster j and phase φ a variable
u_jφ ≥ 0 stands for Σ_{t∈j} max(d_tφ(x), 0), where d_tφ(x) = Σ_o x_o · deviation_kw[o, t, φ] is linear in the
binary option variables x, and the objective is 2·λP·Σ u + change costs. Every *cut* is an indicator array
σ [T, 3] with entries in {0, 1} and adds

    u_jφ ≥ Σ_{t∈j} σ_tφ · d_tφ(x)        for all j, φ,

which is valid because max(a, 0) ≥ σ·a. The constant cut σ ≡ 1 gives u_jφ ≥ max(Σ_{t∈j} d_tφ(x), 0) (Jensen:
the positive part of a sum is at most the sum of positive parts), and the cut with σ_tφ = [d_tφ(x̂) > 0] is
exact at x̂. Hence, for any clusters and any cuts, the optimum of this MILP is a lower bound of the paper's
objective (eq. 6a), and with one step per cluster and the constant cut it *is* the paper's MILP (eqs. 6-11,
with the absolute values of eq. 7 written through positive parts, which halves the rows).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from controllers.planning.rephase.problem import FeederProblem
from controllers.sparse_milp import SolveOutput, SparseModel, solve

__all__ = ["Clusters", "MasterMilp", "build_master", "cut_coefficients", "positive_part"]


@dataclass(frozen=True)
class Clusters:
    """A partition of the steps: ``labels[t]`` in 0..n-1, every cluster non-empty."""

    labels: np.ndarray

    def __post_init__(self) -> None:
        present = np.unique(self.labels)
        if present.size == 0 or present[0] != 0 or present[-1] != present.size - 1:
            raise ValueError("cluster labels must be 0..n-1 with every cluster used")

    @classmethod
    def each_step(cls, n_steps: int) -> Clusters:
        """One step per cluster: the exact (uncompressed) problem."""
        return cls(np.arange(n_steps))

    @property
    def n(self) -> int:
        return int(self.labels.max()) + 1

    def order(self) -> tuple[np.ndarray, np.ndarray]:
        """Steps sorted by cluster and the start of each cluster in that order (for ``np.add.reduceat``)."""
        order = np.argsort(self.labels, kind="stable")
        starts = np.searchsorted(self.labels[order], np.arange(self.n))
        return order, starts


def cut_coefficients(fp: FeederProblem, clusters: Clusters, signs: np.ndarray) -> np.ndarray:
    """G[j, φ, o] = Σ_{t∈j} σ[t, φ] · deviation_kw[o, t, φ] for σ = ``signs``: the cut u_jφ ≥ G[j, φ, :] · x."""
    order, starts = clusters.order()
    weighted = fp.deviation_kw[:, order, :] * signs[order][None, :, :]
    summed = np.add.reduceat(weighted, starts, axis=1)  # [n_options, n_clusters, 3]
    return np.ascontiguousarray(np.transpose(summed, (1, 2, 0)))


@dataclass
class MasterMilp:
    """The MILP of one feeder over given clusters; ``cuts`` are coefficient blocks [n_clusters, 3, n_options]."""

    fp: FeederProblem
    clusters: Clusters
    cuts: list[np.ndarray]
    signs: list[np.ndarray]

    def add_cut(self, signs: np.ndarray) -> None:
        """Add the cut of an indicator array σ [T, 3] (entries in [0, 1])."""
        self.cuts.append(cut_coefficients(self.fp, self.clusters, signs))
        self.signs.append(signs)

    def value(self, choice: np.ndarray) -> float:
        """The MILP objective at ``choice`` (u at its smallest feasible value): a lower bound of the true
        objective at that choice."""
        return (2.0 * self.fp.lambda_p * float(self._u(choice).sum())
                + float(self.fp.change_cost[self.fp.flat(choice)].sum()))

    def _u(self, choice: np.ndarray) -> np.ndarray:
        flat = self.fp.flat(choice)
        return np.max(np.stack([g[:, :, flat].sum(axis=2) for g in self.cuts]), axis=0).clip(min=0.0)

    def model(self) -> tuple[SparseModel, np.ndarray]:
        """The SparseModel and the id array of the option variables x [n_options]."""
        fp, n = self.fp, self.clusters.n
        sm = SparseModel()
        x = sm.add_vars(fp.n_options, lb=0.0, ub=1.0, integer=True)
        u = sm.add_vars((n, 3), lb=0.0, ub=np.inf)
        one = sm.add_rows(fp.n_customers, lb=1.0, ub=1.0)
        for i, opts in enumerate(fp.options):
            sm.add_terms(one[i], x[fp.offsets[i]:fp.offsets[i] + len(opts)], 1.0)
        for g in self.cuts:
            rows = sm.add_rows((n, 3), lb=0.0)
            sm.add_terms(rows, u, 1.0)
            sm.add_terms(rows[:, :, None], x[None, None, :], -g)
        sm.add_objective(u, 2.0 * fp.lambda_p)
        sm.add_objective(x, fp.change_cost)
        return sm, x

    def solve(self, *, time_limit_s: float, hint: np.ndarray | None = None,
              relative_gap: float = 1e-6) -> tuple[SolveOutput, np.ndarray | None]:
        """Solve with HiGHS; returns the solver output and the choice it found (None without a solution)."""
        sm, x = self.model()
        full_hint = None
        if hint is not None:
            full_hint = np.zeros(sm.n_vars)
            full_hint[x[self.fp.flat(hint)]] = 1.0
            full_hint[self.fp.n_options:] = self._u(hint).ravel()
        out = solve(sm, time_limit_s=time_limit_s, hint=full_hint, relative_gap=relative_gap)
        if out.values is None:
            return out, None
        chosen = out.values[x] > 0.5
        choice = np.array([int(np.argmax(chosen[s:s + len(o)])) for s, o in
                           zip(self.fp.offsets, self.fp.options, strict=True)], dtype=np.int64)
        return out, choice


def positive_part(deviation: np.ndarray) -> np.ndarray:
    """σ = [d > 0] as int8: the cut exact at the plan whose deviation is ``deviation``."""
    return (deviation > 0).astype(np.int8)


def build_master(fp: FeederProblem, clusters: Clusters, signs: list[np.ndarray] | None = None) -> MasterMilp:
    """The MILP with the constant (Jensen) cut and one cut per indicator array of ``signs``; with
    ``Clusters.each_step`` and no further cuts it is the exact problem."""
    master = MasterMilp(fp=fp, clusters=clusters, cuts=[], signs=[])
    for s in [np.ones((fp.n_steps, 3), dtype=np.int8), *(signs or [])]:
        master.add_cut(s)
    return master
