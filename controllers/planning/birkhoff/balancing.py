"""Birkhoff phase balancing (Garces et al., paper 002): one permutation matrix per node, expected losses.

Each node's three terminals are connected to the network phases by a permutation matrix M (a vertex of the
Birkhoff polytope B3; M1-M6 of the paper, ``PAPER_MATRICES``). With one-hot variables z[n, k] (node n takes the
k-th permutation), the linearised power flow takes every injection current at the nominal phase voltage,
I_n,φ = conj(S_n,φ / V0_φ), so currents are linear in z, and the expected active loss

    E[P_loss](z) = Σ_s π_s Σ_b I_b,s(z)ᴴ R_b I_b,s(z)

(b: lines and the transformer; R_b the 3×3 resistance matrix of the branch; I_b the sum of the currents of the
nodes below it) is a convex quadratic z'Qz. OR-Tools has no MIQP solver, and none is needed: because every node
takes exactly one permutation, each product z[a, k]·z[b, l] of two nodes is replaced by a variable y_ab[k, l] ≥ 0
with Σ_l y_ab[k, l] = z[a, k] and Σ_k y_ab[k, l] = z[b, l]. For binary z these equalities force y to the
product, so this MILP (HiGHS) has exactly the MIQP's optimum, and HiGHS's dual bound certifies it (products
within a node vanish, squares are z itself). Losses do not change when all phases of the network are
renamed (the line and transformer resistance matrices are symmetric in the phases), so among the six equivalent
optima the one that moves the fewest nodes is returned.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from controllers.planning.birkhoff.case import BirkhoffCase
from controllers.planning.configurations import CONFIGURATIONS
from controllers.sparse_milp import SparseModel, solve
from twin.phase import Phase
from twin.powerflow import Engine, create_powerflow

__all__ = [
    "PAPER_MATRICES",
    "BirkhoffOutcome",
    "LossModel",
    "brute_force",
    "expected_loss_nonlinear_kw",
    "loss_model",
    "paper_matrix_number",
    "solve_birkhoff",
]

PAPER_MATRICES: dict[int, np.ndarray] = {
    1: np.eye(3, dtype=int),
    2: np.array([[0, 1, 0], [0, 0, 1], [1, 0, 0]]),
    3: np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]]),
    4: np.array([[1, 0, 0], [0, 0, 1], [0, 1, 0]]),
    5: np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1]]),
    6: np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0]]),
}
"""The paper's table: network phase vector = M · terminal vector (row φ says which terminal feeds phase φ)."""

PERMUTATIONS: tuple[tuple[Phase, ...], ...] = tuple(c for c in CONFIGURATIONS if len(c) == 3)
"""Three-phase configurations (terminal j on phase config[j]) in CONFIGURATIONS order: ABC, ACB, ... CBA."""


def matrix_of(config: tuple[Phase, ...]) -> np.ndarray:
    """The permutation matrix M with (M · terminal)[φ] = the terminal on phase φ."""
    m = np.zeros((3, 3), dtype=int)
    for j, phase in enumerate(config):
        m[phase, j] = 1
    return m


def paper_matrix_number(config: tuple[Phase, ...]) -> int:
    """k of the paper's M_k equal to the matrix of ``config``."""
    m = matrix_of(config)
    return next(k for k, mk in PAPER_MATRICES.items() if np.array_equal(mk, m))


@dataclass(frozen=True)
class LossModel:
    """E[P_loss](z) = z'Qz in kW for one-hot z [n_nodes, 6] flattened."""

    q_kw: np.ndarray
    n_nodes: int

    def value(self, choice: np.ndarray) -> float:
        """Expected loss of a choice (permutation index per node)."""
        flat = np.arange(self.n_nodes) * 6 + np.asarray(choice)
        return float(self.q_kw[np.ix_(flat, flat)].sum())

    def gradient(self, choice: np.ndarray) -> np.ndarray:
        flat = np.arange(self.n_nodes) * 6 + np.asarray(choice)
        return np.asarray(2.0 * self.q_kw[:, flat].sum(axis=1))


def loss_model(case: BirkhoffCase) -> LossModel:
    """The quadratic form of the linearised expected losses of ``case``."""
    feeder = case.feeder
    tree = feeder.tree()
    v_ph = feeder.transformer.vn_lv_kv * 1e3 / np.sqrt(3.0)
    angle = -np.deg2rad(feeder.transformer.shift_deg) - np.array([0.0, 2.0, 4.0]) * np.pi / 3
    v0 = v_ph * np.exp(1j * angle)
    n = len(feeder.customers)
    # currents [scenario, node, perm, phase], A
    s_va = (case.p_kw + 1j * case.q_kvar) * 1e3
    currents = np.zeros((s_va.shape[0], n, 6, 3), dtype=complex)
    for k, config in enumerate(PERMUTATIONS):
        net = np.einsum("pj,snj->snp", matrix_of(config), s_va)
        currents[:, :, k, :] = np.conj(net / v0)
    # branches: every line (resistance matrix from sequence values) and the transformer (its own R per phase)
    branches: list[tuple[np.ndarray, np.ndarray]] = []
    for ln in feeder.lines:
        r1, r0 = ln.r1_ohm_per_km * ln.length_km, ln.r0_ohm_per_km * ln.length_km
        r = np.full((3, 3), (r0 - r1) / 3.0) + np.eye(3) * r1
        below = np.array([ln.to_bus in tree.path_to_root(c.bus) for c in feeder.customers])
        branches.append((r, below))
    tr = feeder.transformer
    r_tr = tr.vkr_percent / 100.0 * (tr.vn_lv_kv * 1e3) ** 2 / (tr.sn_kva * 1e3)
    branches.append((np.eye(3) * r_tr, np.ones(n, dtype=bool)))
    flat = currents.reshape(currents.shape[0], n * 6, 3)
    q = np.zeros((n * 6, n * 6))
    node_of = np.repeat(np.arange(n), 6)
    for r, below in branches:
        mask = below[node_of]
        block = np.einsum("sap,pq,sbq->sab", np.conj(flat[:, mask]), r, flat[:, mask]).real
        q[np.ix_(mask, mask)] += np.einsum("s,sab->ab", case.probabilities, block)
    return LossModel(q_kw=q * 1e-3, n_nodes=n)


def brute_force(model: LossModel, *, batch: int = 4096) -> tuple[np.ndarray, float]:
    """The best choice by evaluating all 6^n choices (n small)."""
    best_value, best = np.inf, np.zeros(model.n_nodes, dtype=np.int64)
    combos = itertools.product(range(6), repeat=model.n_nodes)
    offs = np.arange(model.n_nodes) * 6
    while True:
        chunk = np.array(list(itertools.islice(combos, batch)), dtype=np.int64)
        if chunk.size == 0:
            break
        flat = chunk + offs
        values = model.q_kw[flat[:, :, None], flat[:, None, :]].sum(axis=(1, 2))
        k = int(np.argmin(values))
        if values[k] < best_value:
            best_value, best = float(values[k]), chunk[k].copy()
    return best, best_value


@dataclass(frozen=True)
class BirkhoffOutcome:
    choice: np.ndarray
    """Permutation index (into PERMUTATIONS) per node."""
    expected_loss_kw: float
    lower_bound_kw: float
    initial_loss_kw: float
    solver_detail: str

    @property
    def gap(self) -> float:
        return max(0.0, self.expected_loss_kw - self.lower_bound_kw) / max(self.expected_loss_kw, 1e-12)

    def configurations(self) -> list[tuple[Phase, ...]]:
        return [PERMUTATIONS[int(k)] for k in self.choice]


def _fewest_moves(choice: np.ndarray) -> np.ndarray:
    """Among the six global relabellings of ``choice`` (same losses), the one with most nodes on ABC."""
    best = choice
    for relabel in itertools.permutations(tuple(Phase)):
        moved = np.array([PERMUTATIONS.index(tuple(relabel[p] for p in PERMUTATIONS[int(k)])) for k in choice])
        if (moved != 0).sum() < (best != 0).sum():
            best = moved
    return best


def solve_birkhoff(model: LossModel, *, time_limit_s: float = 60.0, relative_gap: float = 1e-9) -> BirkhoffOutcome:
    """Minimise the expected linearised losses exactly (see the module docstring); HiGHS's dual bound is the
    certified lower bound (equal to the loss found when the solve ends optimal)."""
    n = model.n_nodes
    q = model.q_kw
    sm = SparseModel()
    z = sm.add_vars((n, 6), lb=0.0, ub=1.0, integer=True)
    one = sm.add_rows(n, lb=1.0, ub=1.0)
    sm.add_terms(one[:, None], z, 1.0)
    diagonal = np.array([[q[a * 6 + k, a * 6 + k] for k in range(6)] for a in range(n)])
    sm.add_objective(z, diagonal)
    for a, b in itertools.combinations(range(n), 2):
        y = sm.add_vars((6, 6), lb=0.0, ub=1.0)
        rows_a = sm.add_rows(6, lb=0.0, ub=0.0)  # Σ_l y[k, l] = z[a, k]
        sm.add_terms(rows_a[:, None], y, 1.0)
        sm.add_terms(rows_a, z[a], -1.0)
        rows_b = sm.add_rows(6, lb=0.0, ub=0.0)  # Σ_k y[k, l] = z[b, l]
        sm.add_terms(rows_b[None, :], y, 1.0)
        sm.add_terms(rows_b, z[b], -1.0)
        sm.add_objective(y, 2.0 * q[a * 6:(a + 1) * 6, b * 6:(b + 1) * 6])
    initial = np.zeros(n, dtype=np.int64)
    out = solve(sm, time_limit_s=time_limit_s, relative_gap=relative_gap)
    if out.values is None:
        value = model.value(initial)
        return BirkhoffOutcome(initial, value, float(out.bound or 0.0), value, out.detail)
    choice = np.argmax(out.values[z].reshape(n, 6), axis=1)
    value = model.value(choice)
    bound = float(out.bound) if out.bound is not None else -np.inf
    return BirkhoffOutcome(_fewest_moves(choice), value, min(bound, value), model.value(initial), out.detail)


def expected_loss_nonlinear_kw(case: BirkhoffCase, configurations: list[tuple[Phase, ...]], *,
                               engine: Engine = Engine.PGM) -> float:
    """Σ_s π_s · (line + transformer losses) from the nonlinear three-phase power flow, kW."""
    pf = create_powerflow(case.feeder, engine=engine)
    mats = np.stack([matrix_of(c) for c in configurations])
    p = np.einsum("npj,snj->snp", mats, case.p_kw)
    q = np.einsum("npj,snj->snp", mats, case.q_kvar)
    res = pf.solve(p_kw=p, q_kvar=q)
    return float(np.dot(case.probabilities, res.loss_kw))
