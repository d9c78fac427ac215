"""The study files in ``examples/`` lay out their task grids: a setting the code no longer knows (as
``command_ttl_s`` was once) fails here, not in a user's first ``phasetwin study run``."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from controllers.online.settings import Strategy
from phasetwin.studies.grid import task_grid
from phasetwin.studies.spec import RephaseChoice, read_study
from phasetwin.studies.static_plans import StaticPlans

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.toml")))
def test_every_example_study_lays_out_its_tasks(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from phasetwin.studies import grid
    from phasetwin.studies.static_plans import static_plans

    def cheap(choice: RephaseChoice, **kwargs: Any) -> StaticPlans:  # the layout, not the plan's quality
        return static_plans(choice.model_copy(update={"node_limit": 2, "starts": 0}), **kwargs)

    monkeypatch.setattr(grid, "static_plans", cheap)
    spec, _ = read_study(EXAMPLES / name)
    tasks = task_grid(spec, study_dir=tmp_path)
    assert tasks and all(t.scenario.out.is_relative_to(tmp_path) for t in tasks)
    assert any(t.scenario.controller.strategy is Strategy.NONE for t in tasks)


def test_the_year_study_covers_every_tick_of_the_liege_data_once(tmp_path: Path) -> None:
    from phasetwin.run.inputs import load_inputs

    spec, _ = read_study(EXAMPLES / "liege_year.toml")
    tasks = [t for t in task_grid(spec, study_dir=tmp_path) if t.scenario.controller.strategy is Strategy.ROLLING_MILP]
    _, table = load_inputs(tasks[0].scenario)
    spans = sorted((t.scenario.start_utc, t.scenario.end_utc) for t in tasks)
    assert spans[0][0] == table.start_utc and spans[-1][1] == table.end_utc
    assert all(a[1] == b[0] for a, b in pairwise(spans))  # no gap, no overlap
    assert sum(t.ticks for t in tasks) == len(table.time_utc) == 35040
