"""A live run followed from the MQTT bus: grid states, device states and controller plans of one feeder appended
to a ``Timeline`` as they arrive.

The bus dispatches in paho's network thread (``immediate``), so a tick is in the timeline the moment it is
received; the wall time of its arrival is kept with it, the start of the tick-to-pixel time the page measures.
Messages of another feeder or of the wrong shape are counted in ``ignored`` and logged.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from phasetwin.view.timeline import Decision, DeviceSample, GridTick, PlannedMove, Timeline
from streams import topics
from streams.messages import ControllerPlan, DeviceState, GridState, Message
from streams.mqtt.bus import MqttBus, MqttSettings

log = logging.getLogger(__name__)


class LiveFollower:
    """Subscribes ``timeline`` to feeder ``feeder`` on the broker at ``url``; ``close()`` ends the session."""

    def __init__(self, timeline: Timeline, *, url: str, feeder: str) -> None:
        self.timeline = timeline
        self.feeder = feeder
        self.ignored = 0
        self._start_tick: int | None = None
        self.bus = MqttBus(MqttSettings.from_url(url), name="view", immediate=True)
        self.bus.subscribe(topics.grid_state(feeder), self._on_grid)
        self.bus.subscribe(topics.device_states(feeder), self._on_device)
        self.bus.subscribe(topics.controller_plan(feeder), self._on_plan)

    def _ignore(self, topic: str, message: Message) -> None:
        self.ignored += 1
        log.warning("view: ignored %s on %s (%d so far)", type(message).__name__, topic, self.ignored)

    def _on_grid(self, topic: str, message: Message) -> None:
        received_s = time.time()
        if not isinstance(message, GridState):
            self._ignore(topic, message)
            return
        n_bus, n_line = len(self.timeline.drawing.bus_ids), len(self.timeline.drawing.line_ids)
        if message.vm_pu.shape != (n_bus, 3) or message.i_ka.shape[0] != n_line:
            self._ignore(topic, message)
            return
        self.timeline.add_tick(GridTick(
            tick=message.tick, time_utc=message.time_utc, vm_pu=message.vm_pu.astype(np.float32),
            i_max_ka=message.i_ka.max(axis=1).astype(np.float32), p_trafo_kw=np.asarray(message.p_trafo_kw),
            vm_min_pu=np.asarray(message.vm_min_pu), vm_max_pu=np.asarray(message.vm_max_pu),
            p_unb_kw=float(np.nansum(message.p_unb_kw)), i_n_max_a=message.i_n_max_a,
            vuf_max_pct=message.vuf_max_pct, received_wall_s=received_s))

    def _on_device(self, topic: str, message: Message) -> None:
        if not isinstance(message, DeviceState):
            self._ignore(topic, message)
            return
        battery = message.battery
        self.timeline.add_device(message.device_id, DeviceSample(
            tick=message.tick, kind=message.kind.value, customer_id=message.customer_id,
            phase=message.phase, e_kwh=battery.e_kwh if battery is not None else None))

    def _on_plan(self, topic: str, message: Message) -> None:
        if not isinstance(message, ControllerPlan):
            self._ignore(topic, message)
            return
        self.timeline.add_decision(Decision(
            tick=message.tick, step_start_utc=message.step_start_utc, step_s=message.step_s,
            n_steps=message.n_steps, status=message.status, p_unb_kwh=message.p_unb_kwh,
            predicted_vm_min_pu=message.predicted_vm_min_pu, predicted_vm_max_pu=message.predicted_vm_max_pu,
            moves=tuple(PlannedMove(device_id=c.device_id, phase=c.phase, battery_kw=c.battery_kw)
                        for c in message.commands)))

    def close(self) -> None:
        self.bus.close()
