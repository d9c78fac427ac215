"""The radial tree of a Z-bus topology with its chains contracted: the sweep runs on the key buses only.

A key bus is the LV bus, a bus with an injection (customers, line shunts) or a bus that does not have exactly one
child (a branch point or a leaf). Every other bus lies on a chain: one parent, one child, nothing drawn, so the
same series current flows through every branch of the chain. Hence, with ``up(q)`` the nearest key ancestor of
``q``, ``down(q)`` the first key bus at or below it and ``Z_q`` the chain impedance from ``up(q)`` to ``q``:

    J_q = J_down(q)        V_q = V_up(q) − Z_q · J_q

The backward/forward sweep by level therefore runs over the contracted tree (the IEEE European LV feeder: 906
buses in 157 levels become about 130 key buses in far fewer levels), and every bus and line is then one gather
and one multiply-add over all states. The contraction is exact: the same circuit, the same equations.
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
        children = np.bincount(parent[1:], minlength=n)
        key = children != 1
        key[0] = True
        key[topo.node_pos] = True
        only_child = np.zeros(n, dtype=int)
        only_child[parent[1:]] = np.arange(1, n)  # the one child of a chain bus (others are overwritten, unused)
        up = np.zeros(n, dtype=int)
        z_a = np.zeros(n, complex)
        z_b = np.zeros(n, complex)
        for q in range(1, n):  # parents come first in breadth-first order
            p = int(parent[q])
            up[q] = p if key[p] else up[p]
            z_a[q] = topo.z_a[q] + (0.0 if key[p] else z_a[p])
            z_b[q] = topo.z_b[q] + (0.0 if key[p] else z_b[p])
        down = np.arange(n)
        for q in range(n - 1, -1, -1):  # children come later
            if not key[q]:
                down[q] = down[only_child[q]]

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
        self.bus_down = index[np.r_[down, n][bus_pos]]
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
