"""What a run counted that degraded its inputs, as lines for the console: a lost broker session, readings that
missed their tick's reorder window, decisions taken on stale data. ``summary.json`` holds the same counters; a
person at the console should not have to open it to learn that the run was not clean."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["degraded_notes"]


def degraded_notes(*, ingest: Mapping[str, Any], bus: Mapping[str, Any], controller: Mapping[str, Any]) -> list[str]:
    """One line per kind of degradation the summary's ``ingest``, ``bus`` and ``controller`` sections count; none
    for a clean run."""
    notes: list[str] = []
    lost = int(bus.get("sessions_lost", 0))
    if lost:
        notes.append(f"the broker kept no session {lost} time(s) (restarted without persistence, or the session "
                     "expired): what it held for the twin then is lost; the log names when")
    missed = int(bus.get("ticks_missed", 0))
    if missed:
        notes.append(f"{missed} tick(s) of a watched per-tick stream never arrived, in {bus.get('tick_gaps', 0)} "
                     "gap(s); the log names them")
    incomplete = int(ingest.get("window_closed_incomplete", 0))
    if incomplete:
        notes.append(f"{incomplete} tick(s) solved when the {ingest.get('reorder_window_s', 0):g} s reorder window "
                     "closed with readings still missing (used later as late readings, not in their tick)")
    stale = int(controller.get("stale_decisions", 0))
    if stale:
        notes.append(f"{stale} control decision(s) taken while readings were stale (no real reading for more than "
                     f"{controller.get('stale_after_s', 0):g} s): the forecast stood in for "
                     f"{controller.get('stale_readings', 0)} customer-tick(s)")
    return notes
