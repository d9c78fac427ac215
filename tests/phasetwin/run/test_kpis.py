"""Every KPI of a controlled run against no control (issue 28): the figures of ``run_kpis`` recomputed from the
run folder's tables with pandas, and the flags of the printed summary and of ``compare``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from controllers.online.settings import ControllerSettings, Strategy
from devices.fleet import FleetSpec
from phasetwin.run.compare import StrategyFigures, compare
from phasetwin.run.result import RunResult
from phasetwin.run.scenario import Scenario
from phasetwin.run.summary import kpis_against, run_kpis


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[StrategyFigures, RunResult]]:
    """IEEE European LV, 2024-01-15 06:00-08:00 UTC at 60 s, 10 PSD + 1 PESS: none and the rolling MILP."""
    out = tmp_path_factory.mktemp("kpis")
    scenario = Scenario(fleet=FleetSpec(psd=10, pess=1), controller=ControllerSettings(strategy=Strategy.NONE),
                        start_utc="2024-01-15T06:00:00Z",  # type: ignore[arg-type]
                        end_utc="2024-01-15T08:00:00Z")
    return {fig.strategy: (fig, result) for fig, result in compare(scenario, [Strategy.ROLLING_MILP], out=out)}


def _operations(folder: Path) -> int:
    states = pd.read_parquet(folder / "devices.parquet").sort_values("time_utc")
    total = 0
    for _, rows in states.groupby("device_id"):
        phase = rows["phase"].ffill()
        total += int((phase.ne(phase.shift()) & phase.shift().notna()).sum())
    return total


def test_the_kpis_are_those_of_the_run_folders_tables(runs: dict[str, tuple[StrategyFigures, RunResult]]) -> None:
    for _, result in runs.values():
        folder = result.folder
        k = run_kpis(folder)
        metrics = pd.read_parquet(folder / "metrics.parquet")
        p_unb = metrics.filter(regex=r"^p_unb_kw_f").to_numpy()
        assert k.p_unb_kwh == pytest.approx(np.nansum(p_unb) / 60.0)
        assert k.peak_neutral_a == pytest.approx(metrics["i_n_max_a"].max())
        assert k.mean_neutral_a == pytest.approx(metrics["i_n_max_a"].mean())
        assert k.vm_min_pu == pytest.approx(metrics.filter(regex=r"^vm_min_").to_numpy().min())
        assert k.vm_max_pu == pytest.approx(metrics.filter(regex=r"^vm_max_").to_numpy().max())
        assert k.max_vuf_pct == pytest.approx(metrics["vuf_max_pct"].max())
        trafo = pd.read_parquet(folder / "loading.parquet").filter(regex=r"^trafo_.*_pct$").to_numpy()
        assert trafo.shape[1] == 3 and k.peak_trafo_loading_pct == pytest.approx(np.nanmax(trafo))
        assert k.switch_operations == _operations(folder)


def test_compare_sets_every_kpi_of_a_controller_against_none(
        runs: dict[str, tuple[StrategyFigures, RunResult]]) -> None:
    milp, result = runs["rolling-milp"]
    none = runs["none"][1]
    assert [c.name for c in milp.changes] == [c.name for c in kpis_against(result.folder, none.folder)]
    by_name = {c.name: c for c in milp.changes}
    assert by_name["p_unb_kwh"].baseline == pytest.approx(run_kpis(none.folder).p_unb_kwh)
    assert by_name["switch_operations"].value == _operations(result.folder) and not by_name["switch_operations"].worse
    assert runs["none"][0].changes == ()
    # the flags are the KPIs whose change is worse, by the rule of twin.metrics.kpi_changes
    assert len(milp.worsened) == sum(c.worse for c in milp.changes)


def test_controller_parquet_records_an_lp_bound_below_every_plan(
        runs: dict[str, tuple[StrategyFigures, RunResult]]) -> None:
    table = pd.read_parquet(runs["rolling-milp"][1].folder / "controller.parquet")
    decided = table[table["status"] != "hold"]
    assert len(decided) and decided["lp_bound"].notna().all()
    assert (decided["lp_bound"] <= decided["objective"] + 1e-9).all()
    gap = (decided["objective"] - decided["lp_bound"]) / decided["objective"].abs()
    assert np.allclose(decided["bound_gap"], gap.clip(lower=0.0))
