"""Late meter data: a reading older than the newest tick a consumer has seen. The grid role records late
readings (``late_readings.parquet``); the controller and the devices ignore them."""

from __future__ import annotations


class NewestTick:
    """The newest meter-data tick seen so far; ``late(tick)`` says whether a reading is older than it."""

    def __init__(self) -> None:
        self.tick = -1

    def late(self, tick: int) -> bool:
        if tick < self.tick:
            return True
        self.tick = tick
        return False
