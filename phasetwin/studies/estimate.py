"""A rough cost estimate of study tasks, before running them (``phasetwin study plan``)."""

from __future__ import annotations

from controllers.online.settings import Strategy
from phasetwin.studies.grid import Task
from twin.powerflow import Engine

S_PER_BUS_STATE = {Engine.ZBUS: 2.0e-6, Engine.PGM: 2.0e-6, Engine.PANDAPOWER: 6.0e-5}
"""Replay cost per bus and tick (power flow, recording, bus traffic) on a 2-core VM: about 2 s for the IEEE day
(907 buses, 1440 ticks) on power-grid-model; pandapower ~30× slower."""
S_PER_DEVICE_TICK = 2.0e-5
"""Device agents and their states, per device and tick."""
S_PER_DECISION = {Strategy.NONE: 0.0, Strategy.STATIC: 0.02, Strategy.GREEDY: 0.02, Strategy.ROLLING_MILP: 0.08}
"""Controller cost per control period. Rolling-milp in virtual time ends on work limits: its decisions (solve and
LTUPF check) of the controlled Liège year took 0.08 s on average (2,760 s over 35,039; 0.07 s after the repair
bound and the neighbourhood threads); never more than its solver time limit plus the repair's in real time."""
S_START = 1.0
"""Per task: reading the feeder and its data, building the models, writing the run folder."""


def estimate_s(tasks: list[Task]) -> list[float]:
    """Seconds of replay per task (rough: rolling-milp's decisions vary with the feeder, the season and the fleet)."""
    from twin.feeders import open_feeder

    buses: dict[str, int] = {}
    out = []
    for task in tasks:
        s = task.scenario
        if s.feeder_spec not in buses:
            buses[s.feeder_spec] = len(open_feeder(s.feeder_spec).load_feeder().buses)
        fleet = s.fleet
        devices = len(fleet.explicit) or fleet.psd + fleet.sts + fleet.pess
        periods = task.ticks * s.tick_s // s.controller.period_s
        strategy = s.controller.strategy
        decision = S_PER_DECISION[strategy]
        n_buses = buses[s.feeder_spec]
        out.append(S_START + task.ticks * (n_buses * S_PER_BUS_STATE[s.engine] + devices * S_PER_DEVICE_TICK)
                   + (periods * decision if devices else 0.0))
    return out
