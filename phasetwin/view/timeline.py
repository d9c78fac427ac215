"""What the view shows, tick by tick: filled from a finished run folder at once (``phasetwin.view.runfolder``) or
from the MQTT bus as a live run publishes (``phasetwin.view.live``), read by every browser session.

Ticks are appended in order (a live tick that arrives after a later one is counted in ``late_dropped`` and
logged); every append evaluates the alarms at that tick. All methods are thread-safe: the MQTT network thread
appends while the Bokeh server's sessions read.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from phasetwin.view.alarms import CONTROLLER_SILENT_PERIODS, DEVICE_SILENT_TICKS, AlarmBook
from phasetwin.view.geometry import OneLine

log = logging.getLogger(__name__)
PHASES = ("A", "B", "C")


@dataclass(frozen=True)
class GridTick:
    """One tick of the grid as the view draws it."""

    tick: int
    time_utc: datetime
    vm_pu: np.ndarray
    """[bus, phase] in ``OneLine.bus_ids`` order."""
    i_max_ka: np.ndarray
    """[line] largest phase current."""
    p_trafo_kw: np.ndarray
    vm_min_pu: np.ndarray
    vm_max_pu: np.ndarray
    p_unb_kw: float
    i_n_max_a: float
    vuf_max_pct: float
    received_wall_s: float = float("nan")
    """Wall time (``time.time()``) the view received the tick (live only): the start of the tick-to-pixel time."""


@dataclass(frozen=True)
class DeviceSample:
    tick: int
    kind: str
    customer_id: str
    phase: str | None
    e_kwh: float | None


@dataclass(frozen=True)
class PlannedMove:
    device_id: str
    phase: str | None
    battery_kw: float | None


@dataclass(frozen=True)
class Decision:
    """One controller decision and its horizon."""

    tick: int
    step_start_utc: datetime
    step_s: float
    n_steps: int
    status: str
    p_unb_kwh: float
    predicted_vm_min_pu: float | None
    predicted_vm_max_pu: float | None
    moves: tuple[PlannedMove, ...] = ()


@dataclass(frozen=True)
class Reference:
    """The no-control run of a finished replay, aligned with the run's ticks."""

    p_trafo_kw: np.ndarray
    p_unb_kw: np.ndarray
    i_n_max_a: np.ndarray
    vm_min_pu: np.ndarray
    vm_max_pu: np.ndarray


@dataclass(frozen=True)
class Customer:
    id: str
    bus: str
    phases: str
    device_id: str


@dataclass
class Timeline:
    """The ticks seen so far of one run on one feeder, and its alarms."""

    title: str
    drawing: OneLine
    customers: tuple[Customer, ...]
    tick_s: float
    vm_limits_pu: tuple[float, float]
    alarms: AlarmBook
    control_period_s: float | None
    """None when the run has no controller (its silence is then no alarm)."""
    live: bool
    feeder_name: str = ""
    """The feeder's name, as in the MQTT topics."""
    ticks: list[GridTick] = field(default_factory=list)
    devices: dict[str, dict[int, DeviceSample]] = field(default_factory=dict)
    decisions: list[Decision] = field(default_factory=list)
    reference: Reference | None = None
    finished: bool = False
    late_dropped: int = 0
    _first_tick: dict[str, int] = field(default_factory=dict)
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def add_device(self, device_id: str, sample: DeviceSample) -> None:
        with self._lock:
            self.devices.setdefault(device_id, {})[sample.tick] = sample
            self._first_tick[device_id] = min(self._first_tick.get(device_id, sample.tick), sample.tick)

    def add_decision(self, decision: Decision) -> None:
        with self._lock:
            self.decisions.append(decision)

    def add_tick(self, tick: GridTick) -> None:
        """Append the tick and evaluate the alarms at it."""
        with self._lock:
            if self.ticks and tick.tick <= self.ticks[-1].tick:
                self.late_dropped += 1
                log.warning("view: grid state of tick %d after tick %d; dropped (%d so far)", tick.tick,
                            self.ticks[-1].tick, self.late_dropped)
                return
            self.ticks.append(tick)
            # A device is known from its first state on; silent when none came in the last ticks (a finished
            # run's states are all in ``devices`` before its ticks are appended, hence the window, not the last).
            known = {d for d, first in self._first_tick.items() if first <= tick.tick}
            window = range(tick.tick - DEVICE_SILENT_TICKS + 1, tick.tick + 1)
            silent = {d for d in known if not any(t in self.devices[d] for t in window)}
            self.alarms.evaluate(
                tick=tick.tick, time_utc=tick.time_utc,
                values={"vm_min_pu": float(np.nanmin(tick.vm_min_pu)), "vm_max_pu": float(np.nanmax(tick.vm_max_pu)),
                        "vuf_max_pct": tick.vuf_max_pct, "i_n_max_a": tick.i_n_max_a},
                silent_devices=silent, known_devices=known,
                controller_silent_s=self._controller_silent_s(tick))

    def _controller_silent_s(self, tick: GridTick) -> float | None:
        if self.control_period_s is None:
            return None
        last = self.decisions[-1].step_start_utc if self.decisions else self.ticks[0].time_utc
        quiet_s = (tick.time_utc - last).total_seconds()
        return max(0.0, quiet_s - CONTROLLER_SILENT_PERIODS * self.control_period_s)

    def count(self) -> int:
        with self._lock:
            return len(self.ticks)

    def at(self, index: int) -> GridTick:
        with self._lock:
            return self.ticks[index]

    def series(self, first: int = 0) -> dict[str, np.ndarray]:
        """The time series of the ticks from the ``first``-th on (for the charts)."""
        with self._lock:
            ticks = self.ticks[first:]
        n = len(ticks)
        out: dict[str, np.ndarray] = {
            "time_utc": np.array([t.time_utc.timestamp() * 1000.0 for t in ticks]),  # ms, as Bokeh's datetime axis
            "p_unb_kw": np.array([t.p_unb_kw for t in ticks]),
            "i_n_max_a": np.array([t.i_n_max_a for t in ticks]),
            "vuf_max_pct": np.array([t.vuf_max_pct for t in ticks]),
        }
        p = np.array([t.p_trafo_kw for t in ticks]).reshape(n, 3)
        lo = np.array([t.vm_min_pu for t in ticks]).reshape(n, 3)
        hi = np.array([t.vm_max_pu for t in ticks]).reshape(n, 3)
        for i, ph in enumerate(PHASES):
            out[f"p_{ph.lower()}_kw"] = p[:, i]
            out[f"vm_min_{ph.lower()}_pu"] = lo[:, i]
            out[f"vm_max_{ph.lower()}_pu"] = hi[:, i]
        return out

    def device_samples(self) -> dict[str, list[DeviceSample]]:
        with self._lock:
            return {d: [s[k] for k in sorted(s)] for d, s in sorted(self.devices.items())}

    def decision_at(self, tick: int) -> Decision | None:
        """The latest decision taken at or before ``tick``."""
        with self._lock:
            before = [d for d in self.decisions if d.tick <= tick]
        return before[-1] if before else None

    def decisions_so_far(self) -> list[Decision]:
        with self._lock:
            return list(self.decisions)
