"""Radial structure of an LV network: parent of each bus, path length from the root, and LV feeder index."""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RadialTree:
    """Breadth-first tree from ``root``. ``branch_of[bus]`` numbers the root's outgoing lines 0, 1, ..."""

    root: str
    parent: dict[str, str]
    distance_km: dict[str, float]
    branch_of: dict[str, int]
    order: list[str]
    loops: list[tuple[str, str]] = field(default_factory=list)

    def problems(self, *, expected: set[str]) -> list[str]:
        """Loops and islands: buses in ``expected`` that the root does not reach, and edges closing a loop."""
        out = [f"line {a!r}-{b!r} closes a loop; a feeder must be radial" for a, b in self.loops]
        unreached = sorted(expected - set(self.distance_km))
        if unreached:
            shown = ", ".join(repr(b) for b in unreached[:10])
            more = f" and {len(unreached) - 10} more" if len(unreached) > 10 else ""
            out.append(f"{len(unreached)} bus(es) not connected to the transformer LV bus: {shown}{more}")
        return out

    def path_to_root(self, bus: str) -> list[str]:
        path = [bus]
        while path[-1] != self.root:
            path.append(self.parent[path[-1]])
        return path


def radial_tree(*, root: str, edges: list[tuple[str, str, float]]) -> RadialTree:
    """Walk the graph of (from, to, length_km) edges from ``root``; report edges that close loops."""
    adjacent: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for a, b, length_km in edges:
        adjacent[a].append((b, length_km))
        adjacent[b].append((a, length_km))
    parent: dict[str, str] = {}
    distance = {root: 0.0}
    branch: dict[str, int] = {}
    order = [root]
    loops: list[tuple[str, str]] = []
    seen_edges: set[frozenset[str]] = set()
    queue = deque([root])
    next_branch = 0
    while queue:
        bus = queue.popleft()
        for other, length_km in adjacent[bus]:
            key = frozenset((bus, other))
            if key in seen_edges:
                continue
            seen_edges.add(key)
            if other in distance:
                loops.append((bus, other))
                continue
            parent[other] = bus
            distance[other] = distance[bus] + length_km
            if bus == root:
                branch[other] = next_branch
                next_branch += 1
            else:
                branch[other] = branch[bus]
            order.append(other)
            queue.append(other)
    return RadialTree(root=root, parent=parent, distance_km=distance, branch_of=branch, order=order, loops=loops)
