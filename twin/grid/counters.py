"""What the grid role counts: solves, readings by fate, device states, fallbacks."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class GridCounters:
    solves: int = 0
    states_solved: int = 0
    cache_hits: int = 0
    resolves: int = 0
    """Solves because a tick's inputs differed from its pre-solved row (a device moved or changed power)."""
    solve_cpu_s: float = 0.0
    """Process CPU seconds in the power flow and its block metrics, every solve (a measurement, not a budget)."""
    resolve_cpu_s: float = 0.0
    """... of which in re-solves."""
    readings_missing: int = 0
    readings_rejected: int = 0
    readings_late: int = 0
    readings_late_unrecorded: int = 0
    readings_estimated: int = 0
    readings_duplicate: int = 0
    readings_held: int = 0
    readings_used: int = 0
    """Real (not estimated) readings used in their own tick."""
    readings_in_window: int = 0
    """... of which arrived while the tick waited in its reorder window (real time)."""
    powerflow_failures: int = 0
    """Ticks that no engine (primary or fallback) solved."""
    fallbacks: Counter[str] = field(default_factory=Counter)
    """Ticks solved by a fallback of the power flow, by kind (``twin.powerflow.FallbackKind``)."""
    device_states: int = 0
    device_states_rejected: int = 0
    phase_changes: int = 0
