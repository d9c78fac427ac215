"""A scenario's loads as the power flow takes them, straight from its meter data (no twin run)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from phasetwin.run.inputs import load_inputs, plan_clock
from streams.bus import LocalBus
from streams.meters.replay import MeterReplay
from twin.phasing import PhaseMap

if TYPE_CHECKING:
    import numpy as np

    from phasetwin.run.scenario import Scenario
    from twin.network import Feeder


def network_loads(scenario: Scenario) -> tuple[Feeder, np.ndarray, np.ndarray]:
    """The scenario's feeder and its loads [ticks, n, 3] per network phase, straight from the meter data."""
    feeder, table = load_inputs(scenario)
    clock = plan_clock(scenario, table)
    meters = MeterReplay(bus=LocalBus(), feeder=feeder.name, table=table,
                         n_terminals=[c.n_phases for c in feeder.customers], start_utc=clock.start_utc,
                         tick_s=clock.tick_s, n_ticks=clock.n_ticks)
    terminal_p, terminal_q = meters.lookahead(0, clock.n_ticks)
    phases = PhaseMap.initial(feeder.customers)
    return feeder, phases.to_phases(terminal_p), phases.to_phases(terminal_q)
