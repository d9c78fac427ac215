"""The operator's alarms, defined once: the live view raises and clears them tick by tick, and
``docker/grafana/make_alerts.py`` writes the Grafana alert rules from the same definitions.

A rule on a grid quantity compares one per-tick value with a threshold (``GridRule``); two rules watch for
silence instead: a device whose state has not arrived for ``DEVICE_SILENT_TICKS`` ticks, and a controller that
has not decided for ``CONTROLLER_SILENT_PERIODS`` control periods. An alarm is raised at the first tick its
condition holds and cleared at the first tick it no longer does; acknowledging it does not clear it.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class AlarmKind(StrEnum):
    VOLTAGE_LOW = "voltage-low"
    VOLTAGE_HIGH = "voltage-high"
    VUF_HIGH = "vuf-high"
    NEUTRAL_HIGH = "neutral-current-high"
    DEVICE_SILENT = "device-silent"
    CONTROLLER_SILENT = "controller-silent"


class Comparison(StrEnum):
    BELOW = "lt"
    ABOVE = "gt"


@dataclass(frozen=True)
class GridRule:
    """``value <comparison> threshold`` on one per-tick grid quantity; ``measurement``/``field``/``reduce``
    name the same quantity in the InfluxDB schema (``streams.influx.points``) for the Grafana rule."""

    kind: AlarmKind
    title: str
    quantity: str
    comparison: Comparison
    threshold: float
    unit: str
    measurement: str
    field: str
    reduce: str

    def breached(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        return value < self.threshold if self.comparison is Comparison.BELOW else value > self.threshold


VUF_LIMIT_PCT = 2.0
"""EN 50160: the 10-minute VUF stays below 2 % in normal operation."""
NEUTRAL_LIMIT_A = 100.0
"""A default for the IEEE feeder's cables; give the feeder's own neutral rating with ``grid_rules``."""
DEVICE_SILENT_TICKS = 3
CONTROLLER_SILENT_PERIODS = 2


def grid_rules(*, vm_min_pu: float = 0.90, vm_max_pu: float = 1.10, vuf_max_pct: float = VUF_LIMIT_PCT,
               i_n_max_a: float = NEUTRAL_LIMIT_A) -> tuple[GridRule, ...]:
    """The rules on grid quantities, with the run's voltage limits."""
    return (
        GridRule(AlarmKind.VOLTAGE_LOW, f"Voltage below {vm_min_pu:.2f} p.u.", "vm_min_pu", Comparison.BELOW,
                 vm_min_pu, "p.u.", "voltage_band", "vm_min_pu", "min"),
        GridRule(AlarmKind.VOLTAGE_HIGH, f"Voltage above {vm_max_pu:.2f} p.u.", "vm_max_pu", Comparison.ABOVE,
                 vm_max_pu, "p.u.", "voltage_band", "vm_max_pu", "max"),
        GridRule(AlarmKind.VUF_HIGH, f"Voltage unbalance factor above {vuf_max_pct:g} %", "vuf_max_pct",
                 Comparison.ABOVE, vuf_max_pct, "%", "network", "vuf_max_pct", "max"),
        GridRule(AlarmKind.NEUTRAL_HIGH, f"Neutral current above {i_n_max_a:g} A", "i_n_max_a", Comparison.ABOVE,
                 i_n_max_a, "A", "network", "i_n_max_a", "max"),
    )


@dataclass
class Alarm:
    id: int
    kind: AlarmKind
    subject: str
    text: str
    raised_tick: int
    raised_utc: datetime
    cleared_tick: int | None = None
    cleared_utc: datetime | None = None
    acknowledged: bool = False

    def active_at(self, tick: int) -> bool:
        return self.raised_tick <= tick and (self.cleared_tick is None or tick < self.cleared_tick)


@dataclass
class AlarmBook:
    """Every alarm of a run, raised and cleared as ticks are evaluated (in tick order); thread-safe."""

    rules: tuple[GridRule, ...]
    alarms: list[Alarm] = field(default_factory=list)
    _open: dict[tuple[AlarmKind, str], Alarm] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def evaluate(self, *, tick: int, time_utc: datetime, values: dict[str, float],
                 silent_devices: set[str], known_devices: set[str], controller_silent_s: float | None) -> None:
        """Raise or clear each rule at ``tick``: ``values`` by quantity name, the devices silent now out of
        those known, and how long the controller has not decided (None: no controller)."""
        with self._lock:
            for rule in self.rules:
                value = values.get(rule.quantity, math.nan)
                self._set(rule.kind, "feeder", rule.breached(value), tick, time_utc,
                          f"{rule.title}: {value:.3f} {rule.unit}")
            for device in sorted(known_devices):
                self._set(AlarmKind.DEVICE_SILENT, device, device in silent_devices, tick, time_utc,
                          f"{device}: no state for {DEVICE_SILENT_TICKS} ticks")
            if controller_silent_s is not None:
                self._set(AlarmKind.CONTROLLER_SILENT, "controller", controller_silent_s > 0, tick, time_utc,
                          f"controller: no decision for {controller_silent_s / 60:.0f} min past its period")

    def _set(self, kind: AlarmKind, subject: str, on: bool, tick: int, time_utc: datetime, text: str) -> None:
        key = (kind, subject)
        current = self._open.get(key)
        if on and current is None:
            alarm = Alarm(id=len(self.alarms), kind=kind, subject=subject, text=text, raised_tick=tick,
                          raised_utc=time_utc)
            self.alarms.append(alarm)
            self._open[key] = alarm
        elif not on and current is not None:
            current.cleared_tick, current.cleared_utc = tick, time_utc
            del self._open[key]

    def acknowledge(self, alarm_ids: list[int]) -> int:
        """Mark the alarms acknowledged; returns how many were newly acknowledged. Unknown ids raise KeyError."""
        with self._lock:
            unknown = [i for i in alarm_ids if not 0 <= i < len(self.alarms)]
            if unknown:
                raise KeyError(f"alarm id(s) {unknown} unknown; {len(self.alarms)} alarms so far")
            fresh = [i for i in alarm_ids if not self.alarms[i].acknowledged]
            for i in fresh:
                self.alarms[i].acknowledged = True
            return len(fresh)

    def snapshot(self) -> list[Alarm]:
        with self._lock:
            return [Alarm(**{k: getattr(a, k) for k in Alarm.__dataclass_fields__}) for a in self.alarms]
