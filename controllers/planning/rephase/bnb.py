"""Branch and bound over customers with Lagrangian bounds computed on every step of the period.

The objective of one feeder (``rephase.problem``) is λP · Σ_t ‖d_t(x)‖₁ + Σ_c cc_c(x_c), where
d_t(x) = Σ_c D_c,t(x_c) is the feeder's phase deviation at step t and D_c,t(k) what customer c adds on option k.

**The bound.** For any weights w_tφ in [−1, 1], ‖d_t‖₁ ≥ Σ_φ w_tφ · d_tφ, and the right-hand side is linear and
separable in the customers. So for a node of the search tree (customers F fixed on options o_c, the others R free)

    L(w) = Σ_{c∈F} V_w(o_c) + Σ_{c∈R} min_k V_w(k),    V_w(o) = λP · Σ_t Σ_φ w_tφ · D_o,t,φ + cc(o)

is a lower bound of the objective of every plan below the node, for *any* such w: no approximation, no
compression of steps. The best w is the dual of the node's linear relaxation (customers spread fractionally
over their options); it is approached from the primal side: a few steps of mirror descent (exponentiated
gradient) on the fractional options x of the free customers, each followed by w = sign(d(x)) and an exact
evaluation of L(w). The bound kept is the best L seen, never more than the relaxation's value, always valid.
D_o,t,φ = Σ_j P_c,t,j · ([φ = φ_j(o)] − 1/3), so Σ_t w · D_o only needs H = Pᵀ·(w − w̄) for the customers'
terminal powers P [T, terminals]: two products of a [T, terminals] matrix with [T, 3] per step of descent.

**The search** is best-first over customers in decreasing order of size (Σ_t ‖D_c,t‖₁ of the initial option):
a node's children fix the next customer on each of its options. A child is pruned without descent when the
parent's best w already proves it (the parent's L with that customer's minimum replaced by its option), else it
gets its own descent, warm-started from the parent's fractional options. Nodes with few completions are
enumerated exactly. The lowest bound among open nodes (and pruned ones) is the proven lower bound at any
moment; every plan the search meets (the rounded relaxation of each node, every enumerated completion) is
evaluated exactly over all steps and can become the incumbent.

The phase relabelling symmetry (renaming the phases leaves P_unb unchanged) is not broken: the change costs
differ between the six copies of a plan, and the copies with many moves are pruned by their change costs a few
levels down.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from threadpoolctl import ThreadpoolController

from controllers.planning.configurations import CONFIGURATIONS
from controllers.planning.rephase.problem import FeederProblem

__all__ = ["BranchAndBoundResult", "TerminalForm", "branch_and_bound", "lagrangian_bound", "terminal_form"]

_BLAS = ThreadpoolController()
"""The products are [T, ~35] × [~35, 3]: a second OpenBLAS thread only spins (5× the CPU time, measured)."""


@dataclass(frozen=True)
class TerminalForm:
    """A feeder's options as terminal powers: D_o,t = centre(Σ_j P[t, term_j(o)] · e_{phase_j(o)})."""

    powers: np.ndarray
    """[T, n_terminals] terminal powers, kW, each up to a per-step constant (which centring removes)."""
    scatter: np.ndarray
    """[n_terminals · 3, n_options]: column o has a 1 at (terminal, phase) for every terminal of option o."""

    def deviation(self, q: np.ndarray) -> np.ndarray:
        """[T, 3] Σ_o q_o · D_o for option weights q [n_options] (0/1 for a plan, fractional in a relaxation)."""
        x = (self.scatter @ q).reshape(-1, 3)
        r = self.powers @ x
        return np.asarray(r - r.mean(axis=1, keepdims=True))

    def weighted(self, w: np.ndarray) -> np.ndarray:
        """[n_options] Σ_t Σ_φ w_tφ · D_o,t,φ for weights w [T, 3]."""
        h = self.powers.T @ (w - w.mean(axis=1, keepdims=True))
        return np.asarray(self.scatter.T @ h.reshape(-1))


def terminal_form(fp: FeederProblem) -> TerminalForm:
    """The terminal powers of ``fp`` recovered from its deviation arrays (exact up to rounding)."""
    columns: list[np.ndarray] = []
    entries: list[tuple[int, int, int]] = []  # (terminal, phase, option)
    for i, opts in enumerate(fp.options):
        first = fp.offsets[i]
        config = CONFIGURATIONS[opts[0]]
        dev = fp.deviation_kw[first]
        unused = [p for p in range(3) if p not in {int(ph) for ph in config}]
        base = len(columns)
        for ph in config:
            # The deviation of a phase is its load minus the per-step mean; an unused phase holds minus the mean.
            columns.append(dev[:, int(ph)] - dev[:, unused[0]] if unused else dev[:, int(ph)].copy())
        for k, config_index in enumerate(opts):
            for j, placed in enumerate(CONFIGURATIONS[config_index]):
                entries.append((base + j, int(placed), first + k))
    scatter = np.zeros((len(columns) * 3, fp.n_options))
    for term, phase, o in entries:
        scatter[term * 3 + phase, o] = 1.0
    return TerminalForm(powers=np.ascontiguousarray(np.stack(columns, axis=1)), scatter=scatter)


def lagrangian_bound(fp: FeederProblem, form: TerminalForm, fixed: np.ndarray, w: np.ndarray) -> tuple[float,
                                                                                                       np.ndarray]:
    """L(w) (module docstring) for the node where customer c is fixed on option ``fixed[c]`` (−1: free), and
    V_w [n_options]. Valid for any w with entries in [−1, 1]."""
    values = fp.lambda_p * form.weighted(w) + fp.change_cost
    mins = np.minimum.reduceat(values, fp.offsets)
    on = fixed >= 0
    return float(values[fp.offsets[on] + fixed[on]].sum() + mins[~on].sum()), values


@dataclass(frozen=True)
class BranchAndBoundResult:
    choice: np.ndarray
    objective: float
    lower_bound: float
    nodes: int
    """Nodes whose bound was computed (descents run), including enumerated ones."""
    descent_steps: int
    complete: bool
    """True when the search ended by proving the gap target, False when a budget stopped it."""

    @property
    def gap(self) -> float:
        return max(0.0, self.objective - self.lower_bound) / max(abs(self.objective), 1e-12)


@dataclass
class _Node:
    bound: float
    fixed: np.ndarray
    """[n_customers] option of each fixed customer, −1 for free ones."""
    q: np.ndarray
    """[n_options] option weights (one-hot for fixed customers), the warm start of the children's descent."""
    values: np.ndarray
    """V_w at the node's best w."""
    own: float
    """L at that w (``bound`` may be higher: a node inherits its parent's bound)."""
    depth: int


class _Search:
    def __init__(self, fp: FeederProblem, incumbent: np.ndarray, *, gap_target: float, descent_steps: int,
                 enumerate_limit: int) -> None:
        self.fp = fp
        self.form = terminal_form(fp)
        self.sizes = np.array([len(o) for o in fp.options])
        size = [float(np.abs(fp.deviation_kw[fp.offsets[i] + fp.initial[i]]).sum()) for i in range(fp.n_customers)]
        self.order = [int(i) for i in np.argsort(size, kind="stable")[::-1]]
        self.best = np.asarray(incumbent, dtype=np.int64).copy()
        self.best_value = fp.objective(self.best)
        self.gap_target = gap_target
        self.descent_steps = descent_steps
        self.enumerate_limit = enumerate_limit
        self.pruned = np.inf
        self.nodes = 0
        self.steps = 0
        self.seen: set[bytes] = set()

    @property
    def threshold(self) -> float:
        return self.best_value - self.gap_target * abs(self.best_value)

    def offer(self, choice: np.ndarray) -> None:
        key = choice.tobytes()
        if key in self.seen:
            return
        self.seen.add(key)
        value = self.fp.objective(choice)
        if value < self.best_value:
            self.best, self.best_value = choice.copy(), value

    def prune(self, bound: float) -> None:
        self.pruned = min(self.pruned, bound)

    def descend(self, fixed: np.ndarray, q: np.ndarray, floor: float) -> tuple[float, float, np.ndarray, np.ndarray]:
        """Mirror descent on the free customers' options from ``q``; returns the node's bound (the best L found,
        at least ``floor``: a bound of an ancestor), the best L itself, V at its w, and the last fractional
        options."""
        fp = self.fp
        free = np.repeat(fixed < 0, self.sizes)
        best, best_values = -np.inf, np.zeros(fp.n_options)
        q = q.copy()
        for step in range(self.descent_steps):
            self.steps += 1
            w = np.sign(self.form.deviation(q))
            value, values = lagrangian_bound(fp, self.form, fixed, w)
            if value > best:
                best, best_values = value, values
            if max(best, floor) >= self.threshold:
                break
            if step == self.descent_steps - 1:
                break
            shifted = values - np.repeat(np.minimum.reduceat(values, fp.offsets), self.sizes)
            eta = 2.0 / np.sqrt(1.0 + step)
            q = np.where(free, q * np.exp(-eta * shifted), q)
            q /= np.repeat(np.add.reduceat(q, fp.offsets), self.sizes)
        return max(best, floor), best, best_values, q

    def rounded(self, fixed: np.ndarray, q: np.ndarray) -> np.ndarray:
        choice = fixed.copy()
        for c in np.flatnonzero(fixed < 0):
            s = self.fp.offsets[c]
            choice[c] = int(np.argmax(q[s:s + self.sizes[c]]))
        return choice

    def enumerate(self, fixed: np.ndarray) -> None:
        """Evaluate every completion of ``fixed`` exactly (few left)."""
        free = np.flatnonzero(fixed < 0)
        for combo in itertools.product(*(range(self.sizes[c]) for c in free)):
            choice = fixed.copy()
            choice[free] = combo
            self.offer(choice)

    def completions(self, fixed: np.ndarray) -> int:
        return int(np.prod(self.sizes[fixed < 0], dtype=float))


def branch_and_bound(fp: FeederProblem, incumbent: np.ndarray, *, gap_target: float = 1e-6,
                     node_limit: int | None = None, deadline: float | None = None,
                     clock: Callable[[], float] = time.monotonic, descent_steps: int = 15,
                     root_steps: int = 60, enumerate_limit: int = 36) -> BranchAndBoundResult:
    """Best-first branch and bound from the plan ``incumbent`` until the relative gap is at most ``gap_target``,
    or ``node_limit`` bound computations, or ``deadline`` (a ``clock`` value). The lower bound returned is proven
    whichever way it stops (the lowest bound of any node left open or pruned). BLAS runs on one thread."""
    with _BLAS.limit(limits=1, user_api="blas"):
        return _branch_and_bound(fp, incumbent, gap_target=gap_target, node_limit=node_limit, deadline=deadline,
                                 clock=clock, descent_steps=descent_steps, root_steps=root_steps,
                                 enumerate_limit=enumerate_limit)


def _branch_and_bound(fp: FeederProblem, incumbent: np.ndarray, *, gap_target: float, node_limit: int | None,
                      deadline: float | None, clock: Callable[[], float], descent_steps: int, root_steps: int,
                      enumerate_limit: int) -> BranchAndBoundResult:
    search = _Search(fp, incumbent, gap_target=gap_target, descent_steps=root_steps,
                     enumerate_limit=enumerate_limit)
    n = fp.n_customers
    root_fixed = np.full(n, -1, dtype=np.int64)
    uniform = np.repeat(1.0 / search.sizes, search.sizes)
    bound, own, values, q = search.descend(root_fixed, uniform, -np.inf)
    search.nodes += 1
    search.descent_steps = descent_steps
    counter = itertools.count()
    heap: list[tuple[float, int, _Node]] = [(bound, next(counter), _Node(bound, root_fixed, q, values, own, 0))]

    def budget_left() -> bool:
        return ((node_limit is None or search.nodes < node_limit)
                and (deadline is None or clock() < deadline))

    while heap and budget_left():
        if heap[0][0] >= search.threshold:
            break
        _, _, node = heapq.heappop(heap)
        c = search.order[node.depth]
        lo = fp.offsets[c]
        k_values = node.values[lo:lo + search.sizes[c]]
        for k in range(search.sizes[c]):
            fixed = node.fixed.copy()
            fixed[c] = k
            # The parent's best w bounds the child for free: its L with c's minimum replaced by option k.
            cheap = node.own + float(k_values[k] - k_values.min())
            if cheap >= search.threshold:
                search.prune(cheap)
                continue
            if search.completions(fixed) <= search.enumerate_limit:
                search.nodes += 1
                search.enumerate(fixed)
                continue
            q = node.q.copy()
            q[lo:lo + search.sizes[c]] = 0.0
            q[lo + k] = 1.0
            search.nodes += 1
            child_bound, child_own, child_values, child_q = search.descend(fixed, q, max(node.bound, cheap))
            search.offer(search.rounded(fixed, child_q))
            if child_bound >= search.threshold:
                search.prune(child_bound)
            else:
                heapq.heappush(heap, (child_bound, next(counter),
                                      _Node(child_bound, fixed, child_q, child_values, child_own,
                                            node.depth + 1)))
    open_bound = min((b for b, _, _ in heap), default=np.inf)
    lower = min(open_bound, search.pruned, search.best_value)
    complete = not heap or heap[0][0] >= search.threshold
    return BranchAndBoundResult(choice=search.best, objective=search.best_value, lower_bound=float(lower),
                                nodes=search.nodes, descent_steps=search.steps, complete=complete)
