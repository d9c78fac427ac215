"""What a run counted that degraded its inputs, as lines for the console: a lost broker session, readings that
missed their tick's reorder window, decisions taken on stale data. ``summary.json`` holds the same counters; a
person at the console should not have to open it to learn that the run was not clean."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["degraded_notes"]


def degraded_notes(*, ingest: Mapping[str, Any], bus: Mapping[str, Any], controller: Mapping[str, Any]) -> list[str]:
    """One line per kind of degradation the summary's ``ingest``, ``bus`` and ``controller`` sections count; none
    for a clean run."""
    counted: list[tuple[Mapping[str, Any], str, Callable[[int], str]]] = [
        (bus, "sessions_lost", lambda n: f"the broker kept no session {n} time(s) (restarted without persistence, or "
                                         "the session expired): what it held for the twin then is lost; the log "
                                         "names when"),
        (bus, "ticks_missed", lambda n: f"{n} tick(s) of a watched per-tick stream never arrived, in "
                                        f"{bus.get('tick_gaps', 0)} gap(s); the log names them"),
        (ingest, "window_closed_incomplete",
         lambda n: f"{n} tick(s) solved when the {ingest.get('reorder_window_s', 0):g} s reorder window closed with "
                   "readings still missing (used later as late readings, not in their tick)"),
        (controller, "stale_decisions",
         lambda n: f"{n} control decision(s) taken while readings were stale (no real reading for more than "
                   f"{controller.get('stale_after_s', 0):g} s): the forecast stood in for "
                   f"{controller.get('stale_readings', 0)} customer-tick(s)"),
        (controller, "ltupf_least_violating",
         lambda n: f"{n} control decision(s) whose first step the LTUPF predicted outside the voltage or thermal "
                   "limits whatever the PSD positions: sent with the batteries idle (or the devices held) instead, "
                   "which it predicted less far outside; the log names them"),
    ]
    return [text(n) for section, key, text in counted if (n := int(section.get(key, 0)))]
