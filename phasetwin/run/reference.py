"""A replay and its no-control reference: the same fleet, the same period, no controller; and the resolved
scenario recorded in each run folder (``scenario.toml``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from controllers.online.settings import Strategy
from phasetwin.run.replay import replay
from phasetwin.run.result import RunResult
from phasetwin.run.scenario import Scenario
from phasetwin.run.scenario_file import ReplayOptions, record_scenario
from phasetwin.run.summary import RunSummary
from streams.bus import Bus
from streams.influx.settings import InfluxSettings

LabelledProgress = Callable[[str, int, int], None]
"""Called after every tick with (which run: "replay" or "no control", ticks done, ticks in the run)."""


@dataclass(frozen=True)
class ReplayPair:
    result: RunResult
    reference: RunResult | None


def reference_scenario(scenario: Scenario, *, run_id: str = "") -> Scenario | None:
    """The no-control run beside ``scenario``: None when there is nothing to compare (no controller, no devices,
    a real-time run). ``run_id``: its database tag (the run's own with ``-no-control``, drawn dashed)."""
    if scenario.controller.strategy is Strategy.NONE or scenario.fleet.empty or scenario.speed != 0:
        return None
    return scenario.model_copy(update={
        "controller": scenario.controller.model_copy(update={"strategy": Strategy.NONE}),
        "out": scenario.out / "no-control", "schedule": None, **({"run_id": run_id} if run_id else {})})


def replay_with_reference(scenario: Scenario, *, baseline: bool = True, progress: LabelledProgress | None = None,
                          bus: Bus | None = None, influx: InfluxSettings | None = None,
                          stop_requested: Callable[[], bool] | None = None) -> ReplayPair:
    """Replay ``scenario``, then (``baseline``) its no-control reference into ``out/no-control``, unless the
    run stopped early; both folders get their ``scenario.toml``."""
    result = replay(scenario, progress=_labelled(progress, "replay"), bus=bus, influx=influx,
                    stop_requested=stop_requested)
    reference = None
    other = None
    if baseline and not result.summary.stopped_early:
        # with a database, the reference is written beside the run under its own run tag
        other = reference_scenario(scenario, run_id=f"{result.summary.run_id}-no-control" if influx else "")
    if other is not None:
        reference = replay(other, progress=_labelled(progress, "no control"), influx=influx)
        record(other, reference.summary, baseline=False)
    record(scenario, result.summary, baseline=baseline)
    return ReplayPair(result=result, reference=reference)


def record(scenario: Scenario, summary: RunSummary, *, baseline: bool) -> None:
    """The resolved scenario into the run folder (bus and database URLs are not recorded: they may hold
    credentials, and a replay gives the same tables in process)."""
    record_scenario(scenario, start_utc=summary.start_utc, end_utc=summary.end_utc,
                    replay=ReplayOptions(baseline=baseline))


def _labelled(progress: LabelledProgress | None, label: str) -> Callable[[int, int], None] | None:
    if progress is None:
        return None
    return lambda done, total: progress(label, done, total)
