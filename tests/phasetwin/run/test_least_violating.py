"""A plan whose first step the LTUPF check predicts outside the limits, with no PSD positions that fix it, must not go
out as it is when the batteries idle (or the devices held) would be less far outside. Liège, 2016-08-20 09:30 UTC:
the plan discharged both phase-C batteries into the midday PV export; the check predicted 1.129 p.u., the repair
(PSD moves only) found nothing, and the twin reached 1.129 p.u. where no control stays at 1.075.

The judge is the twin's own power flow (``actual_vm_max_pu`` of each step in controller.parquet), not the LTUPF
that chose: the same replay is run with the fallback switched off (the decision's ``_least_violating`` replaced by
one that keeps the plan) to show that the case needs it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from controllers.online.decision import ControllerDecision
from controllers.online.settings import ControllerSettings
from devices.fleet import FleetSpec
from phasetwin.run.replay import replay
from phasetwin.run.scenario import Scenario

V_MAX_PU = 1.1


def _run(out: Path) -> tuple[pd.DataFrame, dict[str, object]]:
    scenario = Scenario(feeder="liege-lv", start_utc=datetime(2016, 8, 20, 9, tzinfo=UTC),
                        end_utc=datetime(2016, 8, 20, 10, tzinfo=UTC), tick_s=900, fleet=FleetSpec(psd=10, pess=2),
                        controller=ControllerSettings(), out=out)  # the CLI's default controller and fleet
    folder = replay(scenario).folder
    summary = json.loads((folder / "summary.json").read_text())
    return pd.read_parquet(folder / "controller.parquet"), summary["controller"]


def test_a_first_step_beyond_repair_goes_out_in_its_least_violating_form(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kept, counters = _run(tmp_path / "with")
    with monkeypatch.context() as m:
        m.setattr(ControllerDecision, "_least_violating", lambda self, plan, problem, step, check: (plan, check))
        as_planned, counters_off = _run(tmp_path / "without")
    assert counters_off["ltupf_least_violating"] == 0
    beyond = as_planned.loc[as_planned["infeasible"], "step_start_utc"]
    assert len(beyond) >= 1  # the case: a first step no PSD positions bring inside the limits ...
    v_planned = as_planned.set_index("step_start_utc")["actual_vm_max_pu"]
    v_kept = kept.set_index("step_start_utc")["actual_vm_max_pu"]
    assert (v_planned[beyond] > V_MAX_PU).any()  # ... and the twin agrees: as planned, it breaks the limit
    assert counters["ltupf_least_violating"] == int(kept["least_violating"].sum()) >= 1
    assert (v_kept[beyond] <= V_MAX_PU).all()
    assert (v_kept[beyond] < v_planned[beyond] - 0.01).any()
