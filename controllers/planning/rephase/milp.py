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

**Symmetry.** P_unb does not change when all phases of a feeder are renamed (six relabellings π), so the plain
master has six equivalent copies of every plan and its branch-and-bound explores each. With ``canonical``
customers (r, s) the master optimises over plans y with r on phase A and s not on C (every plan has such an
image π(y)) and a relabelling z_π (six binaries, Σ z = 1) that carries the change costs, which are not
symmetric: cost_i ≥ Σ_o y_o · cc[π(o)] − c_i · (1 − z_π) for every customer i and relabelling π. For binary
values the minimum over z picks the cheapest relabelling, so the optimum is the one of the plain master (the
plan is π(y)) and the dual bound stays valid, while the branch-and-bound sees one copy instead of six.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from controllers.planning.configurations import CONFIGURATIONS, relabelled
from controllers.planning.rephase.problem import FeederProblem
from controllers.sparse_milp import SolveOutput, SparseModel, solve
from twin.phase import Phase

__all__ = ["RELABELLINGS", "Clusters", "MasterMilp", "build_master", "canonical_customers", "cut_coefficients",
           "option_relabelling",
           "positive_part"]

RELABELLINGS: tuple[tuple[Phase, Phase, Phase], ...] = tuple(
    (a, b, c) for a, b, c in itertools.permutations(tuple(Phase)))
"""The six global phase relabellings π (phase p renamed π[p]); the first is the identity."""


def option_relabelling(fp: FeederProblem) -> np.ndarray:
    """[6, n_options]: the flat option that option o becomes under relabelling π (RELABELLINGS order)."""
    out = np.empty((len(RELABELLINGS), fp.n_options), dtype=np.int64)
    for k, pi in enumerate(RELABELLINGS):
        for i, opts in enumerate(fp.options):
            for j, config_index in enumerate(opts):
                target = CONFIGURATIONS.index(relabelled(CONFIGURATIONS[config_index], pi))
                out[k, fp.offsets[i] + j] = fp.offsets[i] + opts.index(target)
    return out


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
    canonical: tuple[int, int] | None = None
    """Customers (r, s) of the symmetry-broken form (module docstring); None: the plain master."""

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
        """The SparseModel and the id array of the option variables x [n_options] (y when canonical)."""
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
        if self.canonical is None:
            sm.add_objective(x, fp.change_cost)
            return sm, x
        r, s = self.canonical
        a_opt, c_opt = (fp.offsets[k] + fp.options[k].index(CONFIGURATIONS.index((ph,))) for k, ph in
                        ((r, Phase.A), (s, Phase.C)))
        sm.lb[0] = sm.lb[0].copy()
        sm.ub[0] = sm.ub[0].copy()
        sm.lb[0][a_opt] = 1.0
        sm.ub[0][c_opt] = 0.0
        z = sm.add_vars(len(RELABELLINGS), lb=0.0, ub=1.0, integer=True)
        sm.add_terms(sm.add_rows(1, lb=1.0, ub=1.0)[0], z, 1.0)
        cost = sm.add_vars(fp.n_customers, lb=0.0, ub=np.inf)
        sm.add_objective(cost, 1.0)
        owner = np.repeat(np.arange(fp.n_customers), [len(o) for o in fp.options])
        top = np.array([fp.change_cost[fp.offsets[i]:fp.offsets[i] + len(o)].max() for i, o in enumerate(fp.options)])
        for k, image in enumerate(option_relabelling(fp)):
            rows = sm.add_rows(fp.n_customers, lb=-top)  # cost_i − Σ_o y_o·cc[π(o)] − c_i·z_π ≥ −c_i
            sm.add_terms(rows, cost, 1.0)
            sm.add_terms(rows[owner], x, -fp.change_cost[image])
            sm.add_terms(rows, z[k], -top)
        return sm, x

    def canonical_form(self, choice: np.ndarray) -> tuple[np.ndarray, int]:
        """(y, k): the plan y with ``canonical`` customers placed as required and the relabelling k with
        π_k(y) = ``choice``."""
        if self.canonical is None:
            raise ValueError("the master has no canonical customers")
        r, s = self.canonical
        maps = option_relabelling(self.fp)
        flat = self.fp.flat(choice)
        for k in range(len(RELABELLINGS)):
            inverse = np.argsort(maps[k])
            y = inverse[flat] - self.fp.offsets
            if (CONFIGURATIONS[self.fp.options[r][y[r]]] == (Phase.A,)
                    and CONFIGURATIONS[self.fp.options[s][y[s]]] != (Phase.C,)):
                return y.astype(np.int64), k
        raise AssertionError("no relabelling puts the canonical customers in place")

    def solve(self, *, time_limit_s: float, hint: np.ndarray | None = None,
              relative_gap: float = 1e-6) -> tuple[SolveOutput, np.ndarray | None]:
        """Solve with HiGHS; returns the solver output and the choice it found (None without a solution)."""
        sm, x = self.model()
        full_hint = None
        fp = self.fp
        n_u = self.clusters.n * 3
        if hint is not None:
            full_hint = np.zeros(sm.n_vars)
            y, k = (hint, 0) if self.canonical is None else self.canonical_form(hint)
            full_hint[x[fp.flat(y)]] = 1.0
            full_hint[fp.n_options:fp.n_options + n_u] = self._u(y).ravel()
            if self.canonical is not None:
                full_hint[fp.n_options + n_u + k] = 1.0
                cc = fp.change_cost[fp.flat(hint)]
                full_hint[fp.n_options + n_u + len(RELABELLINGS):] = cc
        out = solve(sm, time_limit_s=time_limit_s, hint=full_hint, relative_gap=relative_gap)
        if out.values is None:
            return out, None
        chosen = out.values[x] > 0.5
        choice = np.array([int(np.argmax(chosen[s:s + len(o)])) for s, o in
                           zip(fp.offsets, fp.options, strict=True)], dtype=np.int64)
        if self.canonical is not None:
            k = int(np.argmax(out.values[fp.n_options + n_u:fp.n_options + n_u + len(RELABELLINGS)]))
            choice = option_relabelling(fp)[k][fp.flat(choice)] - fp.offsets
        return out, choice


def positive_part(deviation: np.ndarray) -> np.ndarray:
    """σ = [d > 0] as int8: the cut exact at the plan whose deviation is ``deviation``."""
    return (deviation > 0).astype(np.int8)


def canonical_customers(fp: FeederProblem) -> tuple[int, int] | None:
    """The two single-phase customers with the most energy (the symmetry-broken master pins them); None when
    the feeder has fewer than two."""
    single = [i for i, o in enumerate(fp.options) if len(o) == 3 and len(CONFIGURATIONS[o[0]]) == 1]
    if len(single) < 2:
        return None
    size = [float(np.abs(fp.deviation_kw[fp.offsets[i]]).sum()) for i in single]
    r, s = (single[k] for k in np.argsort(size)[::-1][:2])
    return int(r), int(s)


def build_master(fp: FeederProblem, clusters: Clusters, signs: list[np.ndarray] | None = None, *,
                 symmetric: bool = False) -> MasterMilp:
    """The MILP with the constant (Jensen) cut and one cut per indicator array of ``signs``; with
    ``Clusters.each_step`` and no further cuts it is the exact problem. ``symmetric``: the symmetry-broken form
    (module docstring) when the feeder has two single-phase customers to pin."""
    master = MasterMilp(fp=fp, clusters=clusters, cuts=[], signs=[],
                        canonical=canonical_customers(fp) if symmetric else None)
    for s in [np.ones((fp.n_steps, 3), dtype=np.int8), *(signs or [])]:
        master.add_cut(s)
    return master
