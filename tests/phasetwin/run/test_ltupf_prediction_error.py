"""The LTUPF's prediction error is measured like for like: the twin's voltages of the same ticks, aggregated the
way the prediction was (issue 16: the predicted minimum over a period's ticks used to be compared with the
minimum of the period's mean voltages).

The actual figures are recomputed here from metrics.parquet and voltages_pu.parquet, independently of the
controller's own bookkeeping.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from controllers.online.feasibility import FirstStepCheck, PredictionBasis, prediction_error
from controllers.online.settings import ControllerSettings, ForecastKind, default_solver
from devices.fleet import FleetSpec
from phasetwin.run.replay import replay
from phasetwin.run.scenario import Scenario
from streams.runfolder.matrix import read_frame
from twin.phasing import PhaseMap

PERIOD_S = 900


def run(tmp_path: Path, forecast: ForecastKind) -> tuple[pd.DataFrame, Path, dict[str, object]]:
    scenario = Scenario(
        start_utc=datetime(2024, 1, 15, 16, tzinfo=UTC), end_utc=datetime(2024, 1, 15, 19, tzinfo=UTC),
        fleet=FleetSpec(psd=10, pess=2), out=tmp_path,
        controller=ControllerSettings(forecast=forecast, solver=default_solver(time_limit_s=0.05)),
    )
    result = replay(scenario)
    return pd.read_parquet(tmp_path / "controller.parquet"), tmp_path, result.summary.controller


@pytest.mark.slow
def test_perfect_foresight_is_compared_tick_by_tick_over_the_same_ticks(tmp_path: Path) -> None:
    records, folder, summary = run(tmp_path, ForecastKind.PERFECT)
    metrics = pd.read_parquet(folder / "metrics.parquet").set_index("time_utc")
    lows = metrics[[f"vm_min_{p}_pu" for p in "abc"]].min(axis=1)
    highs = metrics[[f"vm_max_{p}_pu" for p in "abc"]].max(axis=1)
    checked = records[records["predicted_vm_min_pu"].notna()]
    assert len(checked) == 11 and (checked["ltupf_basis"] == "ticks").all()
    for _, rec in checked.iterrows():
        step = (lows.index >= rec["step_start_utc"]) & (lows.index < rec["step_start_utc"] + pd.Timedelta(PERIOD_S,
                                                                                                          "s"))
        assert step.sum() == rec["ticks_compared"] == 15
        assert rec["actual_vm_min_pu"] == pytest.approx(lows[step].min(), abs=1e-12)
        assert rec["actual_vm_max_pu"] == pytest.approx(highs[step].max(), abs=1e-12)
        assert rec["error_vm_min_pu"] == pytest.approx(rec["predicted_vm_min_pu"] - lows[step].min(), abs=1e-12)
    assert summary["ltupf_basis"] == "ticks"
    assert summary["ltupf_max_abs_error_vm_min_pu"] == pytest.approx(checked["error_vm_min_pu"].abs().max())
    # the linearisation is good to a few thousandths of a p.u. on this feeder (0.0037 over the whole day)
    assert summary["ltupf_max_abs_error_vm_min_pu"] < 0.01


@pytest.mark.slow
def test_a_step_mean_forecast_is_compared_with_the_mean_voltages(tmp_path: Path) -> None:
    records, folder, summary = run(tmp_path, ForecastKind.PERSISTENCE)
    volts = read_frame(folder / "voltages_pu.parquet").set_index("time_utc")
    lv = volts.drop(columns=[c for c in volts.columns if c.startswith("SourceBus_")])
    checked = records[records["predicted_vm_min_pu"].notna()]
    assert len(checked) == 11 and (checked["ltupf_basis"] == "step_mean").all()
    for _, rec in checked.iterrows():
        step = (lv.index >= rec["step_start_utc"]) & (lv.index < rec["step_start_utc"] + pd.Timedelta(PERIOD_S, "s"))
        mean = lv[step].to_numpy(dtype=float).mean(axis=0)
        assert rec["actual_vm_min_pu"] == pytest.approx(mean.min(), abs=1e-6)  # float32 columns in the file
        assert rec["error_vm_min_pu"] == pytest.approx(rec["predicted_vm_min_pu"] - mean.min(), abs=1e-6)
    assert summary["ltupf_basis"] == "step_mean"


def test_a_tick_without_a_power_flow_is_left_out_of_both_sides() -> None:
    check = FirstStepCheck(
        predicted_vm_min_pu=0.90, predicted_vm_max_pu=1.06, predicted_vm_min_states_pu=(0.95, 0.90, 0.93),
        predicted_vm_max_states_pu=(1.05, 1.06, 1.04), violations=(), connections=PhaseMap.of([]), repaired=False,
        infeasible=False, note="",
    )
    # tick 11 (the predicted 0.90) was skipped by the twin; tick 9 belongs to the step before
    out = prediction_error(check, basis=PredictionBasis.TICKS, first_tick=10,
                           tick_extremes=[(9, 0.5, 1.2), (10, 0.96, 1.05), (12, 0.92, 1.045)],
                           mean_vm_min_pu=None, mean_vm_max_pu=None)
    assert out["ticks_compared"] == 2
    assert out["actual_vm_min_pu"] == 0.92 and out["error_vm_min_pu"] == pytest.approx(0.93 - 0.92)
    assert out["error_vm_max_pu"] == pytest.approx(1.05 - 1.05)
    assert out["max_abs_tick_error_vm_min_pu"] == pytest.approx(0.01)
    assert out["max_abs_tick_error_vm_max_pu"] == pytest.approx(0.005)
    assert np.isclose(float(out["actual_vm_max_pu"]), 1.05)  # type: ignore[arg-type]
