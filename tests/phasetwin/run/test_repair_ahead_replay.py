"""A replay prepares the LTUPF check one period ahead (``ControllerSettings.repair_ahead``) and every decision but
the first (which has no search ahead before it) takes the prepared one: the perfect forecast and the devices doing
what they are told make its inputs the predicted ones. Off, none is prepared. Likewise every decision but the first
takes the plan searched ahead for it (``start.same_problem``)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from controllers.online.settings import ControllerSettings, default_solver
from devices.fleet import FleetSpec
from phasetwin.run.replay import replay
from phasetwin.run.scenario import Scenario


@pytest.mark.slow
@pytest.mark.parametrize("ahead", [True, False])
def test_a_replay_takes_every_check_but_the_first_prepared_unless_told_not_to(tmp_path: Path, ahead: bool) -> None:
    scenario = Scenario(
        start_utc=datetime(2024, 1, 15, 17, tzinfo=UTC), end_utc=datetime(2024, 1, 15, 18, 15, tzinfo=UTC),
        fleet=FleetSpec(psd=10, pess=2), out=tmp_path,
        controller=ControllerSettings(repair_ahead=ahead, solver=default_solver(time_limit_s=0.05)),
    )
    summary = replay(scenario).summary.controller
    records = pd.read_parquet(tmp_path / "controller.parquet")
    checked = int(records["predicted_vm_min_pu"].notna().sum())
    assert checked >= 3
    assert summary["ltupf_prepared_taken"] == int(records["check_prepared"].sum()) == (checked - 1 if ahead else 0)
    # the same holds for the plan: every decision but the first takes the one searched ahead for its problem
    assert records["plan_ahead"].tolist() == [False] + [True] * (len(records) - 1)
