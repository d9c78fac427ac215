"""Plan yearly customer re-phasing with a certificate: a feasible plan, a proven lower bound and their gap.

Per feeder (feeders are independent):

1. **Small feeders** (at most ``exhaustive_limit`` assignments) are enumerated over every step: exact.
2. **Short periods** (at most ``exact_max_steps`` steps) are solved as the paper's MILP itself (one step per
   cluster), started from a local-search plan; the bound is HiGHS's.
3. **Long periods** (a year is 35 040 steps; the direct MILP is far too big) start from local search (single
   and pair moves, exact on all steps, from the initial plan and ``starts`` random ones) and then, by default,
   run a best-first **branch and bound** over customers (``rephase.bnb``) whose node bounds are Lagrangian
   bounds evaluated on every step (no compression): valid for any dual weights, tightened by a few steps of
   mirror descent on the node's linear relaxation. It stops at the gap target, the node limit or the time
   limit, and its lower bound is proven whichever way it stops.
   The former method stays selectable (``long_method="outer-approximation"``): an outer approximation on
   compressed steps (``rephase.milp``): steps are grouped into clusters by the sign pattern and size of the
   incumbent's phase deviations, so that the Jensen bound |Σ_t d_t| ≤ Σ_t |d_t| loses little near good plans;
   each master MILP is a relaxation, so its dual bound is a valid lower bound of the full-year optimum. Every
   master solution x̂ is evaluated on all steps (an upper bound), improved by local search, and adds the cut
   exact at x̂ together with its images under the six global phase relabellings. Clusters whose steps
   disagree in sign under x̂ are split while the cluster budget lasts. On the Liège year its time-limited
   masters stall far from the optimum (feeder 1: 22 % gap after 600 s CPU; branch and bound proves 5 % in
   82 s and optimality in 285 s CPU, one thread, 7 508 nodes).

The upper bound is always evaluated on all steps, and the plan returned is the best one ever evaluated.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from controllers.planning.rephase.bnb import branch_and_bound
from controllers.planning.rephase.milp import Clusters, build_master, positive_part
from controllers.planning.rephase.problem import FeederProblem, RephaseProblem
from controllers.planning.rephase.search import exhaustive, local_search, random_choice

__all__ = ["FeederOutcome", "IterationLog", "PlannerSettings", "RephaseOutcome", "plan_rephase", "sign_clusters"]

_PERMUTATIONS = tuple(itertools.permutations(range(3)))
_RESERVE_S = 2.0
"""Seconds kept back from a deadline for the last evaluations (model building, the final local search)."""
_MIN_MASTER_S = 4.0
"""A master solve shorter than this rarely improves the bound; the loop stops instead."""


class PlannerSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    time_limit_s: float = Field(default=120.0, gt=0, description="wall time for the whole network")
    gap_target: float = Field(default=1e-6, ge=0, description="stop a feeder at this relative gap")
    exhaustive_limit: int = Field(default=5_000, ge=0, description="enumerate feeders with at most this many "
                                  "assignments")
    exact_max_steps: int = Field(default=2_000, ge=0, description="solve the paper's MILP directly up to this "
                                 "many steps")
    n_clusters: int = Field(default=12, ge=6, description="initial clusters of the compressed master")
    max_clusters: int = Field(default=12, ge=6, description="clusters are split up to this many")
    master_time_s: float = Field(default=30.0, gt=0, description="time limit of one compressed master solve")
    starts: int = Field(default=3, ge=0, description="random starts of the local search besides the initial plan; "
                        "the master starts with the cuts exact at every local optimum they reach")
    symmetric: bool = Field(default=False, description="masters in the symmetry-broken form (rephase.milp)")
    long_method: Literal["branch-and-bound", "outer-approximation"] = Field(
        default="branch-and-bound", description="the method of long periods (module docstring)")
    node_limit: int | None = Field(default=None, ge=1, description="branch and bound: at most this many node "
                                   "bounds per feeder (a deterministic budget; None: the time limit only)")
    descent_steps: int = Field(default=15, ge=1, description="branch and bound: mirror-descent steps per node")
    seed: int = 0


@dataclass(frozen=True)
class IterationLog:
    elapsed_s: float
    n_clusters: int
    n_cuts: int
    master_bound: float
    master_value: float | None
    master_plan_value: float | None
    upper_bound: float
    lower_bound: float


@dataclass(frozen=True)
class FeederOutcome:
    feeder: int
    choice: np.ndarray
    objective: float
    lower_bound: float
    method: str
    elapsed_s: float
    iterations: tuple[IterationLog, ...] = ()
    """Outer approximation: one entry per master solve."""
    nodes: int = 0
    """Branch and bound: node bounds computed."""

    @property
    def gap(self) -> float:
        """(objective − bound) / objective; 0 when proven optimal."""
        return max(0.0, self.objective - self.lower_bound) / max(abs(self.objective), 1e-12)


@dataclass(frozen=True)
class RephaseOutcome:
    problem: RephaseProblem
    feeders: tuple[FeederOutcome, ...]
    elapsed_s: float

    @property
    def choices(self) -> list[np.ndarray]:
        return [f.choice for f in self.feeders]

    @property
    def objective(self) -> float:
        return sum(f.objective for f in self.feeders)

    @property
    def lower_bound(self) -> float:
        return sum(f.lower_bound for f in self.feeders)

    @property
    def gap(self) -> float:
        return max(0.0, self.objective - self.lower_bound) / max(abs(self.objective), 1e-12)


def sign_clusters(deviation: np.ndarray, n_clusters: int) -> Clusters:
    """Clusters of steps with the same sign pattern of ``deviation`` [T, 3], each pattern split into magnitude
    quantiles; the clusters are shared out among patterns in proportion to their Σ|d| (at least one each)."""
    pattern = (deviation > 0).astype(np.int64) @ np.array([1, 2, 4])
    size = np.abs(deviation).sum(axis=1)
    present = np.unique(pattern)
    weight = np.array([size[pattern == p].sum() for p in present]) + 1e-12
    share = np.maximum(1, np.floor(weight / weight.sum() * max(n_clusters - present.size, 0)).astype(int))
    labels = np.empty(deviation.shape[0], dtype=np.int64)
    next_label = 0
    for p, k in zip(present, share, strict=True):
        steps = np.flatnonzero(pattern == p)
        k = int(min(k, steps.size))
        ranks = np.argsort(np.argsort(size[steps], kind="stable"), kind="stable")
        labels[steps] = next_label + ranks * k // steps.size
        next_label += k
    return Clusters(np.unique(labels, return_inverse=True)[1].reshape(-1))


def _split(clusters: Clusters, deviation: np.ndarray, max_clusters: int) -> Clusters:
    """Split clusters by the sign pattern of ``deviation``, largest disagreement first, up to ``max_clusters``."""
    pattern = (deviation > 0).astype(np.int64) @ np.array([1, 2, 4])
    labels = clusters.labels.copy()
    n = clusters.n
    loss = []
    for j in range(n):
        steps = np.flatnonzero(labels == j)
        pats = np.unique(pattern[steps])
        if pats.size > 1:
            per_phase = np.abs(deviation[steps]).sum(axis=0) - np.abs(deviation[steps].sum(axis=0))
            loss.append((float(per_phase.sum()), steps))
    for _, steps in sorted(loss, key=lambda item: -item[0]):
        pats = np.unique(pattern[steps])
        if n + pats.size - 1 > max_clusters:
            break
        for p in pats[1:]:
            labels[steps[pattern[steps] == p]] = n
            n += 1
    return Clusters(labels)


def _images(signs: np.ndarray) -> list[np.ndarray]:
    return [np.ascontiguousarray(signs[:, list(p)]) for p in _PERMUTATIONS]


@dataclass
class _Search:
    fp: FeederProblem
    clock: Callable[[], float]
    best: np.ndarray
    best_value: float
    seen: set[bytes] = field(default_factory=set)
    local_optima: list[np.ndarray] = field(default_factory=list)
    """Every plan the local search ended on (cuts exact there tighten the master where good plans are)."""

    def offer(self, choice: np.ndarray, deadline: float) -> float:
        """Evaluate ``choice``, improve it by local search, keep the best; returns its own value."""
        value = self.fp.objective(choice)
        key = choice.tobytes()
        if key not in self.seen:
            self.seen.add(key)
            improved = local_search(self.fp, choice, deadline=deadline, clock=self.clock)
            self.local_optima.append(improved)
            better = self.fp.objective(improved)
            if better < self.best_value:
                self.best, self.best_value = improved, better
        if value < self.best_value:
            self.best, self.best_value = choice.copy(), value
        return value


def _plan_feeder(fp: FeederProblem, settings: PlannerSettings, deadline: float,
                 clock: Callable[[], float]) -> FeederOutcome:
    start = clock()
    if fp.n_choices <= settings.exhaustive_limit:
        choice, value = exhaustive(fp)
        return FeederOutcome(fp.feeder, choice, value, value, "exhaustive", clock() - start)
    rng = np.random.default_rng(settings.seed + fp.feeder)
    search = _Search(fp, clock, fp.initial.copy(), fp.objective(fp.initial))
    ls_deadline = start + 0.25 * (deadline - start)
    for start_choice in [fp.initial, *(random_choice(fp, rng) for _ in range(settings.starts))]:
        search.offer(start_choice, ls_deadline)
    if fp.n_steps <= settings.exact_max_steps:
        master = build_master(fp, Clusters.each_step(fp.n_steps))
        out, found = master.solve(time_limit_s=max(deadline - clock(), 1.0), hint=search.best,
                                  relative_gap=max(settings.gap_target, 1e-9))
        if found is not None:
            search.offer(found, deadline)
        bound = out.bound if out.bound is not None else -np.inf
        return FeederOutcome(fp.feeder, search.best, search.best_value, min(bound, search.best_value),
                             f"direct MILP ({out.outcome.value})", clock() - start)
    if settings.long_method == "branch-and-bound":
        result = branch_and_bound(fp, search.best, gap_target=settings.gap_target, node_limit=settings.node_limit,
                                  deadline=deadline - _RESERVE_S, clock=clock, descent_steps=settings.descent_steps)
        search.offer(result.choice, deadline)
        lower = min(result.lower_bound, search.best_value)
        return FeederOutcome(fp.feeder, search.best, search.best_value, lower, "branch and bound",
                             clock() - start, nodes=result.nodes)
    clusters = sign_clusters(fp.deviation_of(search.best), settings.n_clusters)
    keys: set[bytes] = set()
    first: list[np.ndarray] = []
    for c in [search.best, *search.local_optima]:
        if c.tobytes() not in keys:
            keys.add(c.tobytes())
            first += _images(positive_part(fp.deviation_of(c)))
    master = build_master(fp, clusters, first, symmetric=settings.symmetric)
    lower = -np.inf
    log: list[IterationLog] = []
    while deadline - clock() - _RESERVE_S >= _MIN_MASTER_S:
        remaining = deadline - clock() - _RESERVE_S
        out, found = master.solve(time_limit_s=min(settings.master_time_s, remaining), hint=search.best,
                                  relative_gap=max(settings.gap_target, 1e-9) / 2)
        if out.bound is not None and np.isfinite(out.bound):
            lower = max(lower, out.bound)
        plan_value = None
        if found is not None:
            plan_value = search.offer(found, deadline - _RESERVE_S)
        log.append(IterationLog(clock() - start, clusters.n, len(master.cuts), out.bound or -np.inf,
                                out.objective, plan_value, search.best_value, lower))
        if search.best_value - lower <= settings.gap_target * abs(search.best_value) or found is None:
            break
        if clusters.n < settings.max_clusters:
            clusters = _split(clusters, fp.deviation_of(found), settings.max_clusters)
            master = build_master(fp, clusters, master.signs[1:], symmetric=settings.symmetric)
        for c in (found, search.best, *search.local_optima[-1:]):
            if c.tobytes() not in keys:
                keys.add(c.tobytes())
                for signs in _images(positive_part(fp.deviation_of(c))):
                    master.add_cut(signs)
    lower = min(lower, search.best_value)
    return FeederOutcome(fp.feeder, search.best, search.best_value, lower, "compressed outer approximation",
                         clock() - start, tuple(log))


def plan_rephase(problem: RephaseProblem, settings: PlannerSettings | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> RephaseOutcome:
    """Plan every feeder within ``settings.time_limit_s`` in total; exhaustive feeders first, the rest share
    the remaining time in proportion to their number of options."""
    settings = settings or PlannerSettings()
    start = clock()
    deadline = start + settings.time_limit_s
    outcomes: dict[int, FeederOutcome] = {}
    hard = []
    for fp in problem.feeders:
        if fp.n_choices <= settings.exhaustive_limit:
            outcomes[fp.feeder] = _plan_feeder(fp, settings, deadline, clock)
        else:
            hard.append(fp)
    weight_left = float(sum(fp.n_options for fp in hard))
    for fp in hard:
        share = fp.n_options / weight_left
        weight_left -= fp.n_options
        own_deadline = clock() + share * max(deadline - clock(), 0.0)
        outcomes[fp.feeder] = _plan_feeder(fp, settings, own_deadline, clock)
    return RephaseOutcome(problem, tuple(outcomes[fp.feeder] for fp in problem.feeders), clock() - start)
