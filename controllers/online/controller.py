"""The online controller on the bus: a thin agent around its decision (``controllers.online.decision``), as
``devices.agent`` is around the devices. It subscribes the decision to the feeder's meters, grid states, device
states and acks, and publishes what each tick of the decision gives."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from controllers.online.decision import ControllerCounters, ControllerDecision
from controllers.online.feasibility import LtupfGuard
from streams import topics
from streams.bus import Bus
from streams.messages import ControllerPlan


class OnlineController:
    """Tick stage after the grid; ``kwargs`` are the decision's (``ControllerDecision``)."""

    def __init__(self, *, bus: Bus, **kwargs: Any) -> None:
        self._bus = bus
        self.decision = ControllerDecision(**kwargs)
        name = self.decision.feeder
        bus.subscribe(topics.grid_state(name), self.decision.on_grid)
        bus.subscribe(topics.meter_frame(name), self.decision.on_frame)
        bus.subscribe(topics.meters(name), self.decision.on_reading)
        bus.subscribe(topics.device_states(name), self.decision.on_state)
        bus.subscribe(topics.device_acks(name), self.decision.on_ack)

    def on_tick(self, tick: int, time_utc: datetime) -> None:
        for topic, message in self.decision.step(tick, time_utc):
            self._bus.publish(topic, message)
        self.decision.after_publish()  # the search ahead and the LP bound, once the commands are out

    @property
    def counters(self) -> ControllerCounters:
        return self.decision.counters

    @property
    def records(self) -> list[dict[str, object]]:
        """Per control period: predicted (LTUPF) and actual (twin) voltage extremes of its first step."""
        return self.decision.records

    @property
    def plans(self) -> list[ControllerPlan]:
        return self.decision.plans

    @property
    def guard(self) -> LtupfGuard | None:
        """The LTUPF check and repair (its counters), None without the check."""
        return self.decision.guard
