"""A run from its scenario: ``assemble`` wires the roles onto a bus and a clock, ``execute`` runs the ticks and
writes the tables as it goes, ``summarise`` writes summary.json and the files beside the tables.

Within a tick the order is fixed: clock message → meter readings → device states → power flow and grid state
(recorded) → (every control period) controller plan and commands → twin status.
"""

from __future__ import annotations

from collections.abc import Callable

from phasetwin.run.assemble import assemble
from phasetwin.run.execute import execute
from phasetwin.run.result import Progress, RunResult
from phasetwin.run.scenario import Scenario
from phasetwin.run.summarise import summarise
from streams.bus import Bus
from streams.influx.settings import InfluxSettings
from streams.meters.record import DataRecord
from streams.meters.table import MeterTable
from twin.network import Feeder


def replay(
    scenario: Scenario, *, progress: Progress | None = None, bus: Bus | None = None,
    stop_requested: Callable[[], bool] | None = None, influx: InfluxSettings | None = None,
    threads: int | None = None, inputs: tuple[Feeder, MeterTable, DataRecord] | None = None,
) -> RunResult:
    """Run a scenario to the end (or until ``stop_requested()``) and write its run folder.

    With ``influx``, every state is also recorded live to that database (``streams.influx.recorder``), flushed at the
    end. ``threads`` caps the power flow's own threads (a study's workers); ``inputs``: the feeder and meter data
    already loaded for this scenario by ``load_run_inputs`` (a study worker keeps them across tasks). Raises
    TwinError/StreamError on user errors. The bus is closed at the end (an MQTT bus flushes first).
    """
    run = assemble(scenario, bus=bus, influx=influx, threads=threads, inputs=inputs)
    return summarise(run, execute(run, progress=progress, stop_requested=stop_requested, tick_blocks=bus is None))
