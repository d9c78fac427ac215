"""The radial tree of a Z-bus topology with its load-free parts contracted: the sweep runs on the key buses only.

A bus is active when an injection (customers, line shunts) lies at or below it; the lines of an inactive bus
carry no current, so it has the voltage of its nearest active ancestor. A key bus is the LV bus, a bus with an
injection or an active bus that does not have exactly one active child (a branch point of the current). Every
other active bus lies on a chain: one active child, nothing drawn, so the same series current flows through
every branch of the chain. Hence, with ``up(q)`` the nearest key ancestor of ``q``, ``down(q)`` the first key bus
at or below it (none, a zero current, for an inactive bus) and ``Z_q`` the chain impedance from ``up(q)`` to
``q`` (to its nearest active ancestor for an inactive bus):

    J_q = J_down(q)        V_q = V_up(q) − Z_q · J_down(q)

The backward/forward sweep by level therefore runs over the contracted tree (the IEEE European LV feeder: 906
buses in 157 levels become 110 key buses), and every bus and line is then one gather and one multiply-add over
all states. The contraction is exact: the same circuit, the same equations.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from twin.network import Feeder
    from twin.powerflow.zbus_model import Topology


class ChainTree:
    """Key buses in breadth-first order of the contracted tree (``key_pos``: their tree positions), with the
    chain impedance (a, b pair) from each key bus's key parent, by level; and, in feeder order, the key bus each
    bus and line takes its current (``bus_down``, ``line_down``) and voltage (``bus_up``) from. Index
    ``n_key`` is a row of zeros: the open lines' current and the MV bus's (its voltage is the source's)."""

    def __init__(self, feeder: Feeder, topo: Topology) -> None:
        n, parent = topo.n, topo.parent
        active = np.zeros(n, dtype=bool)
        active[topo.node_pos] = True
        active[0] = True
        for q in range(n - 1, 0, -1):  # children come later in breadth-first order
            if active[q]:
                active[parent[q]] = True
        children = np.bincount(parent[1:][active[1:]], minlength=n)
        key = active & (children != 1)
        key[0] = True
        key[topo.node_pos] = True
        only_child = np.zeros(n, dtype=int)
        only_child[parent[1:][active[1:]]] = np.flatnonzero(active[1:]) + 1  # the active child of a chain bus
        up = np.zeros(n, dtype=int)
        z_a = np.zeros(n, complex)
        z_b = np.zeros(n, complex)
        for q in range(1, n):  # parents come first in breadth-first order
            p = int(parent[q])
            own_a, own_b = (topo.z_a[q], topo.z_b[q]) if active[q] else (0.0, 0.0)
            up[q] = p if key[p] else up[p]
            z_a[q] = own_a + (0.0 if key[p] else z_a[p])
            z_b[q] = own_b + (0.0 if key[p] else z_b[p])
        down = np.where(active, np.arange(n), n)  # n: no current
        for q in range(n - 1, -1, -1):  # children come later
            if active[q] and not key[q]:
                down[q] = down[only_child[q]]
        v_down = down.copy()  # the current in the voltage drop from up(q): an inactive bus takes its ancestor's
        for q in range(1, n):
            if not active[q]:
                p = int(parent[q])
                v_down[q] = n if key[p] else v_down[p]

        kids: dict[int, list[int]] = {}
        for q in np.flatnonzero(key)[1:]:
            kids.setdefault(int(up[q]), []).append(int(q))
        order, starts, frontier = [0], [0, 1], [0]
        while frontier:
            frontier = [c for p in frontier for c in kids.get(p, [])]
            order += frontier
            starts.append(len(order))
        self.n_key = len(order)
        self.key_pos = np.array(order)
        index = np.full(n + 1, self.n_key)  # position -> key index; position n (none) -> the zero row
        index[self.key_pos] = np.arange(self.n_key)
        self.parent = index[up[self.key_pos]]
        self.z_a, self.z_b = z_a[self.key_pos], z_b[self.key_pos]
        self.groups: list[tuple[int, int, np.ndarray, np.ndarray]] = []
        """Per level below the LV bus: (start, end, distinct key parents, where their children start)."""
        for s, e in itertools.pairwise(starts[1:-1]):
            par = self.parent[s:e]
            first = np.flatnonzero(np.r_[True, par[1:] != par[:-1]])
            self.groups.append((s, e, par[first], first))

        self.key_of_load = index[topo.load_pos]
        self.key_of_node = index[topo.node_pos]
        self.mv_bus = topo.mv_bus
        bus_pos = np.where(topo.pos_of_bus >= 0, topo.pos_of_bus, n)
        self.bus_down = index[np.r_[v_down, n][bus_pos]]
        self.bus_up = index[np.r_[up, 0][bus_pos]]
        self.bus_z_a = np.r_[z_a, 0][bus_pos]
        self.bus_z_b = np.r_[z_b, 0][bus_pos]
        pos_of_line = np.full(len(feeder.lines), n)
        pos_of_line[topo.line_of[1:]] = np.arange(1, n)
        self.line_down = index[np.r_[down, n][pos_of_line]]
        closed_line = pos_of_line < n
        self.line_sign = np.where(closed_line, np.where(np.r_[topo.from_is_parent, False][pos_of_line], 1.0, -1.0),
                                  0.0)
        bus_index = {b.id: i for i, b in enumerate(feeder.buses)}
        self.line_from_bus = np.array([bus_index[ln.from_bus] for ln in feeder.lines], dtype=int)
        self.line_half_y_a = np.where(closed_line, np.r_[topo.half_y_a, 0][pos_of_line], 0)
        self.line_half_y_b = np.where(closed_line, np.r_[topo.half_y_b, 0][pos_of_line], 0)
        self.has_line_shunts = bool(np.any(self.line_half_y_a != 0) or np.any(self.line_half_y_b != 0))
