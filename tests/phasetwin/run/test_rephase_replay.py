"""`replay --rephase PLAN.json` runs the feeder with the plan's phase connections: moving one customer moves
exactly its load between the phase totals, tick by tick; a plan for another feeder or a bad plan is refused."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from controllers.planning.plan_file import write_plan
from phasetwin.run.replay import replay
from phasetwin.run.scenario import Scenario
from twin.errors import ScenarioError
from twin.feeders import open_feeder
from twin.phase import Phase

START = datetime(2024, 1, 15, 18, tzinfo=UTC)


def _scenario(out: Path, plan: Path | None = None) -> Scenario:
    return Scenario(start_utc=START, end_utc=START.replace(hour=19), out=out, rephase=plan)


def test_a_plan_moves_exactly_the_customers_load_to_its_new_phase(tmp_path: Path) -> None:
    entry = open_feeder("ieee-european-lv")
    feeder = entry.load_feeder()
    customer = feeder.customers[0]
    old = customer.phases[0]
    new = Phase((old + 1) % 3)
    plan = write_plan(tmp_path / "plan.json", feeder=feeder.name, configurations={customer.id: (new,)})
    before = pd.read_parquet(replay(_scenario(tmp_path / "before")).folder / "metrics.parquet")
    after = pd.read_parquet(replay(_scenario(tmp_path / "after", plan)).folder / "metrics.parquet")
    assert entry.load_data is not None
    table = entry.load_data(feeder)
    index = pd.DatetimeIndex(table.time_utc)
    rows = (index >= pd.Timestamp(START)) & (index < pd.Timestamp(START.replace(hour=19)))
    load_kw = table.p_kw[rows, 0, 0]  # 1-minute data, 1-minute ticks: the customer's load per tick
    assert load_kw.shape == (60,) and load_kw.max() > 0
    name = {Phase.A: "a", Phase.B: "b", Phase.C: "c"}
    np.testing.assert_allclose(after[f"load_{name[new]}_kw_f0"] - before[f"load_{name[new]}_kw_f0"], load_kw,
                               atol=1e-9)
    np.testing.assert_allclose(before[f"load_{name[old]}_kw_f0"] - after[f"load_{name[old]}_kw_f0"], load_kw,
                               atol=1e-9)


def test_a_plan_for_another_feeder_is_refused(tmp_path: Path) -> None:
    plan = write_plan(tmp_path / "plan.json", feeder="liege-lv", configurations={})
    with pytest.raises(ScenarioError, match="the plan is for feeder 'liege-lv', not 'ieee-european-lv'"):
        replay(_scenario(tmp_path / "run", plan))


def test_a_plan_naming_an_unknown_customer_is_refused(tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"format": "phasetwin-rephase-plan/1", "feeder": "ieee-european-lv",
                                "configurations": {"NOBODY": "A"}}))
    with pytest.raises(ScenarioError, match="NOBODY"):
        replay(_scenario(tmp_path / "run", plan))
