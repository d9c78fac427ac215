"""Many replays in one process (a study worker, `compare`): a finished replay's objects go by reference
counting, so a worker's memory does not grow with the number of tasks it ran.

Before, the bus and its subscribers held each other: every replay's network, power-flow model and tables
waited for the next full collection, which Python runs rarely (a study worker grew by ~40 MB per task).
The test turns the cyclic collector off, so anything left after a replay returns is held by a cycle. Weak
references taken as the grid role and the power flow are built tell whether they are still alive."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from controllers.online.settings import ControllerSettings, Strategy
from devices.fleet import FleetSpec
from phasetwin.run.replay import replay
from phasetwin.run.scenario import Scenario
from twin.grid.role import GridRole
from twin.powerflow.pgm import PgmPowerFlow


def _watch(monkeypatch: pytest.MonkeyPatch, kind: type, refs: list[weakref.ref[Any]]) -> None:
    init: Callable[..., None] = kind.__init__  # type: ignore[misc]

    def watched(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        refs.append(weakref.ref(self))

    monkeypatch.setattr(kind, "__init__", watched)


@pytest.mark.parametrize("strategy", [Strategy.NONE, Strategy.GREEDY, Strategy.ROLLING_MILP])
def test_a_finished_replay_leaves_no_objects_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    strategy: Strategy) -> None:
    scenario = Scenario(start_utc=datetime(2024, 1, 15, 17, tzinfo=UTC), end_utc=datetime(2024, 1, 15, 18, tzinfo=UTC),
                        fleet=FleetSpec(psd=3), controller=ControllerSettings(strategy=strategy), out=tmp_path)
    refs: list[weakref.ref[Any]] = []
    _watch(monkeypatch, GridRole, refs)
    _watch(monkeypatch, PgmPowerFlow, refs)
    alive_at_the_end: list[int] = []

    def progress(tick: int, n_ticks: int) -> None:
        if tick == n_ticks:
            alive_at_the_end.append(sum(r() is not None for r in refs))

    gc.collect()
    gc.disable()
    try:
        result = replay(scenario, progress=progress)
        assert result.summary.ticks == 60
        assert alive_at_the_end == [2]  # the references see a running replay's objects
        del result
        assert [r() for r in refs] == [None, None]
    finally:
        gc.enable()
