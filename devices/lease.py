"""The watchdog lease: a device that hears from no live controller for ``lease_s`` goes to its safe state."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class Lease:
    """Never renewed = expired: a device starts in its safe state until a controller speaks to it."""

    lease_s: float
    renewed_s: float = -math.inf
    expiries: int = 0
    """How many times a held lease ran out (not counting the initial, never-renewed state)."""
    _held: bool = False

    @property
    def ever_renewed(self) -> bool:
        return self.renewed_s > -math.inf

    def renew(self, t_s: float) -> None:
        self.renewed_s = max(self.renewed_s, t_s)
        self._held = True

    def expired(self, t_s: float) -> bool:
        gone = t_s - self.renewed_s > self.lease_s
        if gone and self._held:
            self._held = False
            self.expiries += 1
        return gone
