"""The reorder window of a real-time run: how long a tick's power flow waits for readings still missing.

In real time a tick's meter readings come over the network: behind a burst of other messages, a little late, or
in another order than sent (an external meter feed). The grid role solves a tick once every meter's real reading
is in, or when the tick's window closes — ``window_s`` of simulated time after the tick's stages began, i.e.
``window_s / speed`` wall seconds — whichever comes first. Meanwhile the transport dispatches what arrives, so a
reading that arrives slightly out of order but within its tick's window is used in its tick; one that arrives
after it is late (recorded in ``late_readings.parquet``, counted in ``readings_late``, never used).

The window is a tick stage: put it first, so that it knows when the tick's work began. The twin does not import
a transport; the run gives ``pump_until(done, timeout_s)`` (``streams.mqtt.bus.MqttBus.pump_until``). In
virtual time there is no window: the bus settles every stage completely.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime

log = logging.getLogger(__name__)

PumpUntil = Callable[[Callable[[], bool], float], bool]


def default_window_s(tick_s: int) -> float:
    """A quarter of the tick: readings may straggle that long; the rest of the tick is the power flow's,
    the devices' and the controller's."""
    return tick_s / 4.0


class ReorderWindow:
    """Real time: waits, within the tick's window, for readings still missing (``wait``)."""

    def __init__(self, *, window_s: float, speed: float, pump_until: PumpUntil,
                 wall_clock: Callable[[], float] = time.monotonic) -> None:
        if speed <= 0:
            raise ValueError(f"a reorder window needs real time; speed {speed} is not > 0")
        self.window_s = window_s
        self._wall_window_s = window_s / speed
        self._pump_until, self._wall_clock = pump_until, wall_clock
        self._closes_s = 0.0
        self.waits = 0
        """Ticks whose power flow waited for a reading."""
        self.waited_s = 0.0
        """Wall seconds spent waiting, over the run."""
        self.closed_incomplete = 0
        """Ticks whose window closed with a meter's real reading still missing."""

    def on_tick(self, tick: int, time_utc: datetime) -> None:
        self._closes_s = self._wall_clock() + self._wall_window_s

    def wait(self, complete: Callable[[], bool]) -> bool:
        """Dispatch arrivals until ``complete()`` or the window closes; whether ``complete()``."""
        if complete():
            return True
        started = self._wall_clock()
        self.waits += 1
        done = self._pump_until(complete, max(0.0, self._closes_s - started))
        self.waited_s += self._wall_clock() - started
        if not done:
            self.closed_incomplete += 1
        return done
