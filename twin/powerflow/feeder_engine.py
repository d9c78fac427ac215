"""What every power-flow engine keeps of its feeder, set once for the three engines."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from twin.network import Feeder


class FeederEngine:
    """What every engine keeps of its feeder: the counts, the lines' ratings and their normal states."""

    def __init__(self, feeder: Feeder) -> None:
        self.feeder = feeder
        self.n_bus = len(feeder.buses)
        self.n_line = len(feeder.lines)
        self.n_customers = len(feeder.customers)
        self.max_i_ka = np.array([ln.max_i_ka for ln in feeder.lines])
        self._normal_closed = np.array([ln.normally_closed for ln in feeder.lines], dtype=bool)
