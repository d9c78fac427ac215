"""Where each bus of a feeder is drawn: its own coordinates (IEEE ``Buscoords``, pandapower geodata) or, for a
network without them, a breadth-first tree layout (``networkx.bfs_layout``) from the source bus down.

A bus without coordinates in a network that has them (the IEEE feeder's MV source bus) is put beside the
nearest drawn neighbour, so that every bus is on the diagram.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import numpy as np

from twin.network import Feeder


@dataclass(frozen=True)
class OneLine:
    """The drawing of a feeder: bus positions (in ``bus_ids`` order) and edges as bus index pairs."""

    bus_ids: tuple[str, ...]
    x: np.ndarray
    y: np.ndarray
    line_ids: tuple[str, ...]
    line_ends: np.ndarray
    """[n_line, 2] bus indices of each line's from and to bus."""
    line_max_i_ka: np.ndarray
    trafo_ends: tuple[int, int]
    from_coordinates: bool
    """True when the feeder's own coordinates were drawn, False for a tree layout."""

    def bus_index(self) -> dict[str, int]:
        return {b: i for i, b in enumerate(self.bus_ids)}


def _graph(feeder: Feeder) -> nx.Graph:
    g = nx.Graph()
    g.add_nodes_from(b.id for b in feeder.buses)
    g.add_edges_from((ln.from_bus, ln.to_bus) for ln in feeder.lines)
    g.add_edge(feeder.transformer.hv_bus, feeder.transformer.lv_bus)
    return g


def one_line(feeder: Feeder) -> OneLine:
    """Positions of every bus of ``feeder`` (``feeder.bus_ids()`` order)."""
    bus_ids = tuple(feeder.bus_ids())
    given = {b.id: (b.x, b.y) for b in feeder.buses if b.x is not None and b.y is not None}
    graph = _graph(feeder)
    from_coordinates = len(given) >= len(bus_ids) / 2
    if from_coordinates:
        pos: dict[str, tuple[float, float]] = {k: (float(v[0]), float(v[1])) for k, v in given.items()}
        xs = np.array([p[0] for p in pos.values()])
        ys = np.array([p[1] for p in pos.values()])
        step = 0.02 * max(float(np.ptp(xs)), float(np.ptp(ys)), 1e-6)
        # Breadth-first from the drawn buses: each missing bus goes one step beside a placed neighbour.
        for _ in range(len(bus_ids)):
            missing = [b for b in bus_ids if b not in pos]
            if not missing:
                break
            for b in missing:
                placed = [n for n in graph.neighbors(b) if n in pos]
                if placed:
                    x, y = pos[placed[0]]
                    pos[b] = (x - step, y + step)
            if len(missing) == sum(b not in pos for b in bus_ids):  # an island without any coordinates
                for k, b in enumerate(b for b in bus_ids if b not in pos):
                    pos[b] = (float(xs.min()) - step * (k + 2), float(ys.min()) - step)
    else:
        layout = nx.bfs_layout(graph, feeder.source.bus if feeder.source.bus in graph else bus_ids[0])
        # bfs_layout puts the layers along x; the one-line reads top (source) to bottom.
        pos = {b: (float(p[1]), -float(p[0])) for b, p in layout.items()}
    index = {b: i for i, b in enumerate(bus_ids)}
    return OneLine(
        bus_ids=bus_ids,
        x=np.array([pos[b][0] for b in bus_ids]),
        y=np.array([pos[b][1] for b in bus_ids]),
        line_ids=tuple(ln.id for ln in feeder.lines),
        line_ends=np.array([[index[ln.from_bus], index[ln.to_bus]] for ln in feeder.lines], dtype=np.int64)
        .reshape(-1, 2),
        line_max_i_ka=np.array([ln.max_i_ka for ln in feeder.lines]),
        trafo_ends=(index[feeder.transformer.hv_bus], index[feeder.transformer.lv_bus]),
        from_coordinates=from_coordinates,
    )
