"""A replay's switching schedule: from which tick on which lines are open and how the customers are connected.

A schedule is a list of steps; each holds from its tick until the next step's. Building one checks every step at
once, independently of whoever made it: the lines it opens exist and have switches, the topology is radial and
supplies every bus (``Feeder.topology_problems``), and every customer keeps its number of phases. The grid role
applies a step at the start of its tick, before that tick's power flow (``twin.grid``).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from twin.clock import TickClock
from twin.errors import ListsProblems, ScenarioError
from twin.network import Feeder
from twin.phase import Phase, connection_text


class SwitchingError(ListsProblems, ScenarioError):
    """A switching schedule the feeder cannot take. ``problems`` holds every problem found, not only the first."""

    checked = "the switching schedule"


@dataclass(frozen=True)
class SwitchingStep:
    """From ``tick`` on: exactly ``open_lines`` are open, customer i (feeder order) is connected ``connections[i]``."""

    tick: int
    open_lines: frozenset[str]
    connections: tuple[tuple[Phase, ...], ...]
    label: str = ""
    """What the step stands for, e.g. the plan's scenario name; recorded with the run."""


class SwitchingSchedule:
    """Validated steps over a replay's ticks; raises SwitchingError listing every problem (with its time)."""

    def __init__(self, *, feeder: Feeder, clock: TickClock, steps: list[SwitchingStep], source: str) -> None:
        problems: list[str] = []
        if not steps or steps[0].tick != 0:
            problems.append("the first step must start at tick 0 (the start of the replay)")
        for before, after in pairwise(steps):
            if after.tick <= before.tick:
                problems.append(f"step at tick {after.tick} does not come after the step at tick {before.tick}")
        checked: dict[frozenset[str], list[str]] = {}
        for step in steps:
            label = f", {step.label}" if step.label else ""
            when = f"at {clock.time_of(step.tick).isoformat()} (tick {step.tick}{label})"
            if step.open_lines not in checked:
                checked[step.open_lines] = feeder.topology_problems(step.open_lines)
            if checked[step.open_lines]:
                shown = ", ".join(sorted(step.open_lines)) or "none"
                problems += [f"{when}, lines open {shown}: {p}" for p in checked[step.open_lines]]
            if len(step.connections) != len(feeder.customers):
                problems.append(f"{when}: {len(step.connections)} connection(s) for {len(feeder.customers)} customers")
                continue
            for c, phases in zip(feeder.customers, step.connections, strict=True):
                if len(phases) != c.n_phases or len(set(phases)) != len(phases):
                    problems.append(f"{when}: customer {c.id!r} connection {connection_text(phases)!r} is not "
                                    f"{c.n_phases} distinct phase(s)")
        if problems:
            raise SwitchingError(source, problems)
        self.feeder = feeder
        self.clock = clock
        self.steps = tuple(steps)
        self.source = source
        self._by_tick = {s.tick: s for s in steps}
        index = {ln.id: e for e, ln in enumerate(feeder.lines)}
        # closed state of every line per tick: one row per step, repeated over the step's ticks
        bounds = [s.tick for s in steps] + [max(clock.n_ticks, steps[-1].tick + 1)]
        rows = np.ones((len(steps), len(feeder.lines)), dtype=bool)
        for r, s in enumerate(steps):
            rows[r, [index[i] for i in s.open_lines]] = False
        self._closed = np.repeat(rows, np.diff(bounds), axis=0)

    def step_at(self, tick: int) -> SwitchingStep | None:
        """The step that starts at ``tick``, if one does."""
        return self._by_tick.get(tick)

    def line_closed(self, first_tick: int, n_ticks: int) -> np.ndarray:
        """[n_ticks, n_line] closed state of the lines from ``first_tick`` on (the last step holds beyond the end)."""
        rows = np.arange(first_tick, first_tick + n_ticks).clip(0, self._closed.shape[0] - 1)
        return self._closed[rows]
