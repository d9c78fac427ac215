"""The Z-bus engine's network model of one radial topology: the tree, its contracted chains and the reduced impedances.

Every impedance and admittance of the circuit (``twin.powerflow.interface``) is a sequence-domain model, so in
phase coordinates it has the form ``a·I₃ + b·J₃`` (J₃ the all-ones 3×3 matrix): ``a = z1`` and ``b = (z0 − z1)/3``.
Sums and products of such matrices keep the form, so a 3N×3N phase matrix is a pair of N×N matrices ``(P, Q)``
acting on an [N, 3] phase array as ``P x + (Q Σₚx) 1ᵀ`` (``Pair``). The Z-bus of a radial tree seen from its LV
bus is ``Z_ij = Z_th + Σ`` of the branch impedances on the path shared by ``i`` and ``j`` (their lowest common
ancestor); it is built row by row down the tree, once per topology.

Line capacitances (pi sections, half at each end) are constant admittances: they are folded into the reduced
impedance once, ``Z_eff = (1 + Z Y)⁻¹ Z``, with the open-circuit voltages ``c = (1 + Z Y)⁻¹ V₀``, so that the
fixed point iterates on the load buses only: ``V_L = c_L − Z_eff[L, L] · conj(S_L / V_L)``.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from twin.errors import PowerFlowError
from twin.network import VectorGroup
from twin.powerflow.interface import source_impedance_ohm

if TYPE_CHECKING:
    from twin.network import Feeder

OMEGA_RAD_S = 2 * math.pi * 50.0
Z = TypeVar("Z", complex, np.ndarray)
SUPPORTED_GROUPS = (VectorGroup.DYN, VectorGroup.YNYN)


@dataclass(frozen=True)
class Pair:
    """The phase matrix ``P ⊗ I₃ + Q ⊗ J₃`` (see the module docstring)."""

    p: np.ndarray
    q: np.ndarray

    def __matmul__(self, other: Pair) -> Pair:
        return Pair(self.p @ other.p, self.p @ other.q + self.q @ other.p + 3.0 * self.q @ other.q)

    def inverse(self) -> Pair:
        p_inv = np.linalg.inv(self.p)
        return Pair(p_inv, (np.linalg.inv(self.p + 3.0 * self.q) - p_inv) / 3.0)

    def rows(self, idx: np.ndarray) -> Pair:
        return Pair(self.p[idx], self.q[idx])

    def cols(self, idx: np.ndarray) -> Pair:
        return Pair(self.p[:, idx], self.q[:, idx])


def sequence_pair(z1: Z, z0: Z) -> tuple[Z, Z]:
    """(a, b) of the phase matrix a·I₃ + b·J₃ with positive-sequence z1 and zero-sequence z0."""
    return z1, (z0 - z1) / 3.0


@dataclass(frozen=True)
class Source:
    """The LV bus's Thevenin equivalent and what the MV side needs to report its bus and the transformer."""

    e_lv_v: np.ndarray  # [3] open-circuit LV phase voltages, V
    e_mv_v: np.ndarray  # [3] ideal source phase voltages at the MV bus, V
    th: tuple[complex, complex]  # (a, b) Thevenin impedance at the LV bus, Ω
    trafo: tuple[complex, complex]  # (a, b) transformer short-circuit impedance referred to LV, Ω
    mv: tuple[complex, complex]  # (a, b) MV source impedance, Ω at MV
    ratio: float  # vn_lv / vn_hv
    shift_rad: float  # LV lags HV by this
    zero_passes: bool  # zero-sequence current flows through the transformer (YNyn)


def source_model(feeder: Feeder) -> Source:
    tr, src = feeder.transformer, feeder.source
    if tr.vector_group not in SUPPORTED_GROUPS:
        raise PowerFlowError(f"feeder {feeder.name!r}: the zbus engine models {', '.join(SUPPORTED_GROUPS)} "
                             f"transformers, not {tr.vector_group.value} (its LV zero sequence has no source path)")
    if src.bus != tr.hv_bus:
        raise PowerFlowError(f"feeder {feeder.name!r}: the zbus engine needs the source at the transformer's HV bus "
                             f"{tr.hv_bus!r}, not at {src.bus!r}")
    z_base = (tr.vn_lv_kv * 1e3) ** 2 / (tr.sn_kva * 1e3)
    r_t = tr.vkr_percent / 100 * z_base
    z_t = complex(r_t, math.sqrt(max((tr.vk_percent / 100 * z_base) ** 2 - r_t**2, 0.0)))
    ratio = tr.vn_lv_kv / tr.vn_hv_kv
    z_s1, z_s0 = source_impedance_ohm(feeder)
    zero_passes = tr.vector_group is VectorGroup.YNYN
    th0 = z_t + (ratio**2 * z_s0 if zero_passes else 0.0)
    shift = math.radians(tr.shift_deg)
    rot = np.exp(-2j * np.pi / 3 * np.arange(3))  # phases A, B, C of a positive sequence
    e_mv = src.vm_pu * src.vn_kv * 1e3 / math.sqrt(3) * rot
    return Source(e_lv_v=e_mv * ratio * np.exp(-1j * shift), e_mv_v=e_mv,
                  th=sequence_pair(z_t + ratio**2 * z_s1, th0), trafo=sequence_pair(z_t, z_t),
                  mv=sequence_pair(z_s1, z_s0), ratio=ratio, shift_rad=shift, zero_passes=zero_passes)


def apply(ab: tuple[complex, complex] | tuple[np.ndarray, np.ndarray], x: np.ndarray) -> np.ndarray:
    """(a·I₃ + b·J₃) x over the last axis (phases) of x; a, b scalars or arrays broadcasting against x[..., 0]."""
    a, b = ab
    a_arr, b_arr = np.asarray(a), np.asarray(b)
    return a_arr[..., None] * x + (b_arr * phase_sum(x))[..., None]


def phase_sum(x: np.ndarray) -> np.ndarray:
    """x[..., 0] + x[..., 1] + x[..., 2]: several times faster than numpy's reduction over a last axis of 3."""
    out = x[..., 0] + x[..., 1]
    out += x[..., 2]
    return out


def expand(pair: Pair) -> np.ndarray:
    """The full [3N, 3M] phase matrix (node-phase major) of a Pair."""
    return np.kron(pair.p, np.eye(3)) + np.kron(pair.q, np.ones((3, 3)))


def apply_rows(ab: tuple[np.ndarray, np.ndarray], x: np.ndarray) -> np.ndarray:
    """(a_n·I₃ + b_n·J₃) x_n for position-major x [n, k, 3] and per-position a, b [n]."""
    a, b = ab
    return a[:, None, None] * x + (b[:, None] * phase_sum(x))[..., None]


class Topology:
    """The tree of one set of closed lines in breadth-first order from the LV bus, and its reduced Z-bus.

    Positions: ``pos`` 0 is the LV bus; every other position is a bus whose series branch (the closed line
    from its parent) shares its position; parents come before their children. The sweep runs on the tree with
    its chains contracted (``twin.powerflow.zbus_chains``).
    """

    def __init__(self, feeder: Feeder, closed: np.ndarray, source: Source) -> None:
        bus_index = {b.id: i for i, b in enumerate(feeder.buses)}
        n_bus = len(feeder.buses)
        mv = bus_index[feeder.transformer.hv_bus]
        lv = bus_index[feeder.transformer.lv_bus]
        adjacent: list[list[tuple[int, int]]] = [[] for _ in range(n_bus)]
        for j, ln in enumerate(feeder.lines):
            if closed[j]:
                a, b = bus_index[ln.from_bus], bus_index[ln.to_bus]
                if mv in (a, b):
                    raise PowerFlowError(f"feeder {feeder.name!r}: line {ln.id!r} is on the MV side; the zbus engine "
                                         "models one transformer feeding a radial LV network")
                adjacent[a].append((b, j))
                adjacent[b].append((a, j))
        order, parent, line_of = [lv], [-1], [-1]
        seen = {lv: 0}
        used: set[int] = set()
        queue = deque([lv])
        while queue:
            bus = queue.popleft()
            for other, j in adjacent[bus]:
                if j in used:
                    continue
                used.add(j)
                if other in seen:
                    raise PowerFlowError(f"feeder {feeder.name!r}: line {feeder.lines[j].id!r} closes a loop; the zbus "
                                         "engine solves radial networks")
                seen[other] = len(order)
                parent.append(seen[bus])
                line_of.append(j)
                order.append(other)
                queue.append(other)
        missing = [feeder.buses[i].id for i in range(n_bus) if i != mv and i not in seen]
        if missing:
            raise PowerFlowError(f"feeder {feeder.name!r}: {len(missing)} bus(es) not supplied by the transformer "
                                 f"with these line states, e.g. {missing[:5]}")
        self.n = n = len(order)
        self.bus_of_pos = np.array(order)
        self.pos_of_bus = np.full(n_bus, -1)
        self.pos_of_bus[self.bus_of_pos] = np.arange(n)
        self.mv_bus = mv
        self.parent = np.array(parent)
        self.line_of = np.array(line_of)

        lines = feeder.lines
        z1 = np.zeros(n, complex)
        z0 = np.zeros(n, complex)
        y1 = np.zeros(n, complex)  # shunt of each bus: half of every closed line's at each of its ends
        y0 = np.zeros(n, complex)
        half1 = np.zeros(n, complex)  # half shunt of the line at each position
        half0 = np.zeros(n, complex)
        from_is_parent = np.zeros(n, bool)
        for q in range(1, n):
            ln = lines[int(self.line_of[q])]
            km = ln.length_km
            z1[q] = complex(ln.r1_ohm_per_km, ln.x1_ohm_per_km) * km
            z0[q] = complex(ln.r0_ohm_per_km, ln.x0_ohm_per_km) * km
            half1[q] = h1 = 0.5j * OMEGA_RAD_S * ln.c1_nf_per_km * 1e-9 * km
            half0[q] = h0 = 0.5j * OMEGA_RAD_S * ln.c0_nf_per_km * 1e-9 * km
            y1[q] += h1
            y0[q] += h0
            y1[self.parent[q]] += h1
            y0[self.parent[q]] += h0
            from_is_parent[q] = bus_index[ln.from_bus] == order[int(self.parent[q])]
        self.z_a, self.z_b = sequence_pair(z1, z0)
        self.half_y_a, self.half_y_b = sequence_pair(half1, half0)
        self.y_a, self.y_b = sequence_pair(y1, y0)
        self.from_is_parent = from_is_parent
        self.has_shunts = bool(np.any(y1 != 0) or np.any(y0 != 0))

        # Nodes of the fixed point: buses with customers (L), then the other buses with a shunt.
        cust_pos = np.array([self.pos_of_bus[bus_index[c.bus]] for c in feeder.customers], dtype=int)
        if (cust_pos < 0).any():
            raise PowerFlowError(f"feeder {feeder.name!r}: the zbus engine needs every customer on the LV network")
        load_pos = np.unique(cust_pos)
        shunt_pos = np.flatnonzero((y1 != 0) | (y0 != 0))
        shunt_only = np.setdiff1d(shunt_pos, load_pos)
        self.load_pos = load_pos
        self.node_pos = np.r_[load_pos, shunt_only].astype(int)
        self.n_load = int(load_pos.size)
        # Customers grouped by load node (in load node order), to sum the customers of one bus with reduceat.
        self.cust_by_node = np.argsort(np.searchsorted(load_pos, cust_pos), kind="stable")
        self.node_first_cust = np.flatnonzero(np.r_[True, np.diff(cust_pos[self.cust_by_node]) != 0])
        self.one_customer_per_node = self.node_first_cust.size == len(feeder.customers)

        z = self._zbus(source)
        e_v = np.broadcast_to(source.e_lv_v, (self.node_pos.size, 3))
        if self.has_shunts:
            y = Pair(np.diag(self.y_a[self.node_pos]), np.diag(self.y_b[self.node_pos]))
            zy = z @ y
            w = Pair(np.eye(self.node_pos.size) + zy.p, zy.q).inverse()
            z_eff = w @ z
            c = w.p @ e_v + (w.q @ e_v.sum(axis=1))[:, None]
        else:
            z_eff, c = z, np.array(e_v)
        load = np.arange(self.n_load)
        # Node-phase major (row 3·node + phase): the fixed point's matrix, the shunt nodes' rows, no-load voltages.
        self.z_ll_full = expand(z_eff.rows(load).cols(load))
        self.z_nl_full = expand(z_eff.cols(load)) if self.has_shunts else np.zeros((0, 3 * self.n_load), complex)
        self.c_flat = c.reshape(-1)
        # What the shunts draw in total, per phase, as a function of the load currents (V_nodes = c − Z_nl·I_L):
        # the transformer's current without the shunt nodes' voltages.
        if self.has_shunts:
            y_full = expand(Pair(np.diag(self.y_a[self.node_pos]), np.diag(self.y_b[self.node_pos])))
            total_y = np.tile(np.eye(3), self.node_pos.size) @ y_full  # [3, 3N]: Y·V summed over the nodes
            self.shunt_i_const = total_y @ self.c_flat
            self.shunt_i_of_load = total_y @ self.z_nl_full
        else:
            self.shunt_i_const = np.zeros(3, complex)
            self.shunt_i_of_load = np.zeros((3, 3 * self.n_load), complex)
        self.c_load_flat = c[load].reshape(-1)
        v_base = np.array([feeder.buses[int(self.bus_of_pos[at])].vn_kv * 1e3 / math.sqrt(3) for at in load_pos])
        self.v_base_load_flat = np.repeat(v_base, 3)

    def load_power_va(self, s_va: np.ndarray, *, out: np.ndarray | None = None,
                      work: np.ndarray | None = None) -> np.ndarray:
        """The customers' complex powers [k, n_customers, 3] summed onto their load buses, node-phase major
        [3·n_load, k] (a sum by reduceat, not a product: BLAS threads would only spin on it). ``out`` [3·n_load, k]
        and ``work`` [n_customers, 3, k]: arrays to write into instead of fresh ones."""
        k, n_cust = s_va.shape[0], s_va.shape[1]
        by_cust = np.empty((n_cust, 3, k), complex) if work is None else work
        np.copyto(by_cust.reshape(3 * n_cust, k), s_va.reshape(k, 3 * n_cust).T)
        target = np.empty((self.n_load, 3, k), complex) if out is None else out.reshape(self.n_load, 3, k)
        if self.one_customer_per_node:
            np.take(by_cust, self.cust_by_node, axis=0, out=target)
        else:
            np.add.reduceat(by_cust[self.cust_by_node], self.node_first_cust, axis=0, out=target)
        return target.reshape(3 * self.n_load, k)

    def _zbus(self, source: Source) -> Pair:
        """Z of the fixed point's nodes: row of each bus down the tree, columns the nodes."""
        cols = self.node_pos
        m = cols.size
        # below[q, c]: node c is in the subtree of position q (q an ancestor of, or, c).
        below = np.zeros((self.n, m), dtype=bool)
        for c_i, p in enumerate(cols):
            q = int(p)
            while q > 0:
                below[q, c_i] = True
                q = int(self.parent[q])
        rows_a = np.empty((self.n, m), complex)
        rows_b = np.empty((self.n, m), complex)
        rows_a[0] = source.th[0]
        rows_b[0] = source.th[1]
        for q in range(1, self.n):
            par = int(self.parent[q])
            rows_a[q] = rows_a[par] + self.z_a[q] * below[q]
            rows_b[q] = rows_b[par] + self.z_b[q] * below[q]
        return Pair(rows_a[cols], rows_b[cols])
