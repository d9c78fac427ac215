"""Several controllers on the same scenario, side by side: each run is a full replay into its own folder."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from controllers.online.settings import Strategy
from phasetwin.run.replay import replay
from phasetwin.run.result import Progress, RunResult
from phasetwin.run.scenario import Scenario
from phasetwin.run.summary import run_kpis, worsened
from twin.metrics import KpiChange, Kpis, kpi_changes


@dataclass(frozen=True)
class StrategyFigures:
    """What `phasetwin compare` prints for one controller."""

    strategy: str
    mean_p_unb_kw: float
    p_unb_kwh: float
    reduction_pct: float | None
    vm_min_pu: tuple[float, float, float]
    vm_max_pu: tuple[float, float, float]
    losses_kwh: float
    peak_neutral_a: float
    max_kappa: float
    switch_operations: int
    battery_throughput_kwh: float
    commands_sent: int
    commands_applied: int
    rejections: int
    rejected_by_reason: dict[str, int]
    fallbacks: int
    solve_s_p50: float
    solve_s_p95: float
    solve_s_max: float
    wall_s: float
    powerflow_fallbacks: int
    """Ticks a power-flow fallback solved."""
    ticks_missing: int
    """Ticks no power-flow engine solved."""
    kpis: Kpis | None = None
    """Every KPI of the run (``phasetwin.run.summary.run_kpis``)."""
    changes: tuple[KpiChange, ...] = field(default=())
    """Every KPI against no control (empty for no control itself)."""

    @property
    def worsened(self) -> list[str]:
        """The KPIs this controller made worse than no control."""
        return worsened(list(self.changes))


def figures(result: RunResult, *, baseline_p_unb_kwh: float | None = None) -> StrategyFigures:
    """The comparison figures of one run (P_unb summed over LV feeders; reduction against a baseline run)."""
    s = result.summary
    p_unb = np.nansum(result.recorder.p_unb_kw, axis=1)
    p_unb_kwh = float(p_unb.sum() * s.tick_s / 3600.0)
    devices = s.devices.values()
    ctl = s.controller
    reduction = None
    if baseline_p_unb_kwh is not None and baseline_p_unb_kwh > 0:
        reduction = 100.0 * (1.0 - p_unb_kwh / baseline_p_unb_kwh)
    return StrategyFigures(
        strategy=str(ctl.get("strategy", Strategy.NONE.value)), mean_p_unb_kw=float(p_unb.mean()),
        p_unb_kwh=p_unb_kwh, reduction_pct=reduction,
        vm_min_pu=(s.vm_min_pu.a, s.vm_min_pu.b, s.vm_min_pu.c),
        vm_max_pu=(s.vm_max_pu.a, s.vm_max_pu.b, s.vm_max_pu.c),
        losses_kwh=s.losses_kwh, peak_neutral_a=s.peak_neutral_current_a, max_kappa=s.max_kappa_trafo,
        switch_operations=sum(int(d.get("operations", 0)) for d in devices),
        battery_throughput_kwh=sum(float(d.get("charged_kwh", 0.0)) + float(d.get("discharged_kwh", 0.0))
                                   for d in devices),
        commands_sent=int(s.commands.get("sent", 0)), commands_applied=int(s.commands.get("applied", 0)),
        rejections=int(s.commands.get("rejected", 0)),
        rejected_by_reason=dict(s.commands.get("rejected_by_reason", {})), fallbacks=int(ctl.get("fallbacks", 0)),
        solve_s_p50=float(ctl.get("solve_s_p50", 0.0)), solve_s_p95=float(ctl.get("solve_s_p95", 0.0)),
        solve_s_max=float(ctl.get("solve_s_max", 0.0)), wall_s=s.wall_s,
        powerflow_fallbacks=sum(int(n) for n in s.powerflow.get("fallbacks", {}).values()),
        ticks_missing=int(s.powerflow.get("ticks_skipped", 0)), kpis=run_kpis(result.folder),
    )


def against(fig: StrategyFigures, base: StrategyFigures, *, vm_min_limit_pu: float,
            vm_max_limit_pu: float) -> StrategyFigures:
    """``fig`` with its KPIs set against ``base`` (no control)."""
    if fig.kpis is None or base.kpis is None:
        return fig
    return replace(fig, changes=tuple(kpi_changes(fig.kpis, base.kpis, vm_min_limit_pu=vm_min_limit_pu,
                                                  vm_max_limit_pu=vm_max_limit_pu)))


def compare(
    scenario: Scenario, strategies: list[Strategy], *, out: Path, progress: Progress | None = None
) -> list[tuple[StrategyFigures, RunResult]]:
    """Replay ``scenario`` once per strategy into ``out/<strategy>``; reductions are against ``none``, which is
    run first (added when missing). The scenario of each run is ``compare_scenario(scenario, strategy, out)``."""
    order = [Strategy.NONE, *[s for s in strategies if s is not Strategy.NONE]]
    rows: list[tuple[StrategyFigures, RunResult]] = []
    baseline: float | None = None
    base_fig: StrategyFigures | None = None
    limits = scenario.controller.limits
    for strategy in order:
        result = replay(compare_scenario(scenario, strategy, out=out), progress=progress)
        fig = figures(result, baseline_p_unb_kwh=baseline)
        if strategy is Strategy.NONE:
            baseline = fig.p_unb_kwh
            fig = figures(result, baseline_p_unb_kwh=baseline)
            base_fig = fig
        elif base_fig is not None:
            fig = against(fig, base_fig, vm_min_limit_pu=limits.vm_min_pu, vm_max_limit_pu=limits.vm_max_pu)
        rows.append((fig, result))
    return rows


def compare_scenario(scenario: Scenario, strategy: Strategy, *, out: Path) -> Scenario:
    """The scenario of ``compare``'s run of ``strategy``."""
    settings = scenario.controller.model_copy(update={"strategy": strategy})
    return scenario.model_copy(update={"controller": settings, "out": out / strategy.value})
