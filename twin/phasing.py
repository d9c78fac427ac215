"""Which network phase each customer terminal is on, and the mapping of terminal data to phase injections."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from twin.network import Customer
from twin.phase import Phase


@dataclass(frozen=True)
class PhaseMap:
    """Immutable terminal → phase assignment of all customers, in feeder order.

    ``inverse[i, φ]`` is the terminal of customer i on phase φ; phases with no terminal point at an unused
    (all-zero) terminal column, so one gather maps a whole batch.
    """

    connections: tuple[tuple[Phase, ...], ...]
    inverse: np.ndarray
    flat: np.ndarray
    """``inverse`` as indices into the flattened [n_customers·3] terminal axis: one take per call."""

    @classmethod
    def of(cls, connections: list[tuple[Phase, ...]] | tuple[tuple[Phase, ...], ...]) -> PhaseMap:
        inverse = np.empty((len(connections), 3), dtype=np.intp)
        for i, phases in enumerate(connections):
            spare = [j for j in range(3) if j >= len(phases)]
            free = [p for p in Phase if p not in phases]
            for j, p in enumerate(phases):
                inverse[i, p] = j
            for j, p in zip(spare, free, strict=True):
                inverse[i, p] = j
        inverse.setflags(write=False)
        flat = (3 * np.arange(len(connections))[:, None] + inverse).ravel()
        flat.setflags(write=False)
        return cls(connections=tuple(tuple(c) for c in connections), inverse=inverse, flat=flat)

    @classmethod
    def initial(cls, customers: tuple[Customer, ...] | list[Customer]) -> PhaseMap:
        return cls.of([c.phases for c in customers])

    def to_phases(self, terminal: np.ndarray) -> np.ndarray:
        """[..., n_customers, 3] per terminal -> [..., n_customers, 3] per network phase (a new array)."""
        if terminal.shape[-2:] != self.inverse.shape:
            raise ValueError(f"terminal data of shape {list(terminal.shape)}: expected "
                             f"[..., {self.inverse.shape[0]}, 3] (customers in feeder order, terminals)")
        lead = terminal.shape[:-2]
        return np.take(terminal.reshape(*lead, -1), self.flat, axis=-1).reshape(terminal.shape)

    def with_connection(self, customer_index: int, phases: tuple[Phase, ...]) -> PhaseMap:
        if len(phases) != len(self.connections[customer_index]):
            raise ValueError(
                f"customer #{customer_index}: new connection has {len(phases)} phase(s), "
                f"expected {len(self.connections[customer_index])} (a customer keeps its number of phases)"
            )
        updated = list(self.connections)
        updated[customer_index] = tuple(phases)
        return PhaseMap.of(updated)
