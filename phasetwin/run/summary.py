"""The run summary: a few figures a person reads first, computed from the recorder's running totals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from controllers.ltupf import OperatingLimits
from streams.runfolder.recorder import SeriesTotals, finite_or_nan
from twin.metrics import KpiChange, Kpis, breaks_limit, kpi_changes


class PhaseFigures(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    a: float
    b: float
    c: float

    @classmethod
    def of(cls, values: np.ndarray) -> PhaseFigures:
        return cls(a=float(values[0]), b=float(values[1]), c=float(values[2]))


class RunSummary(BaseModel):
    """Physics of the run (from the transformer and bus series) and how the run went."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    feeder: str
    run_id: str = Field(default="", description="run tag of the time-series database")
    scenario: str = Field(default="", description="scenario tag of the time-series database")
    engine: str
    start_utc: str
    end_utc: str
    tick_s: int
    ticks: int
    energy_kwh: PhaseFigures
    peak_load_kw: PhaseFigures
    max_p_unb_kw: list[float]
    p_unb_kwh: float = Field(default=float("nan"), description="P_unb (paper 000 eq. 7) summed over the LV feeders "
                             "and integrated over the run, kWh")
    mean_p_unb_kw: list[float]
    vm_min_pu: PhaseFigures
    vm_max_pu: PhaseFigures
    max_vuf_pct: float
    max_kappa_trafo: float
    peak_neutral_current_a: float
    losses_kwh: float
    wall_s: float
    ticks_per_s: float
    powerflow_solves: int
    states_solved: int
    cache_hits: int
    readings_published: int
    readings_missing: int
    readings_rejected: int
    readings_late: int = 0
    readings_duplicate: int = 0
    readings_estimated: int = Field(default=0, description="meter values replaced by the last good value")
    auth: dict[str, Any] = Field(default_factory=dict, description="signed mode, refused commands and heartbeats "
                                 "per reason, audit log")
    ingest: dict[str, Any] = Field(default_factory=dict, description="ingest guard: readings checked, quarantined "
                                   "per reason code, estimated")
    powerflow_failures: int
    overruns: int
    max_lateness_s: float
    devices: dict[str, dict[str, Any]] = Field(default_factory=dict, description="final counters per device")
    acks: dict[str, int] = Field(default_factory=dict, description="acknowledgements by status (rejected:reason)")
    commands_unknown_device: int = 0
    commands_malformed: int = 0
    schedule_not_sent: int = 0
    commands: dict[str, Any] = Field(default_factory=dict, description="commands sent, applied, rejected by reason, "
                                     "pending at the end, and the warning when many were rejected")
    powerflow: dict[str, Any] = Field(default_factory=dict, description="power-flow fallbacks by kind and the ticks "
                                      "they solved; ticks no engine solved (recorded as missing)")
    controller: dict[str, Any] = Field(default_factory=dict, description="strategy, decisions, fallbacks, solve times")
    stopped_early: bool = Field(default=False, description="ended by a stop request (SIGTERM) before its last tick")
    bus: dict[str, Any] = Field(default_factory=dict, description="transport counters (MQTT: dead letters, reconnects)")
    hil: dict[str, Any] = Field(default_factory=dict, description="external parties: latencies, deadlines, silence")
    recorder: dict[str, Any] = Field(default_factory=dict, description="time-series database: points written etc.")
    metering: dict[str, Any] = Field(default_factory=dict, description="customers metered, unmetered (and policy), "
                                     "unknown meters (and policy); ids in data_quality.json")
    loading: dict[str, Any] = Field(default_factory=dict, description="peak transformer and line loading, % of rating")
    previous_run: dict[str, Any] = Field(default_factory=dict, description="an earlier run into the same folder "
                                         "that crashed: what it kept and lost (streams.runfolder.journal)")


def physics(totals: SeriesTotals, *, tick_s: int) -> dict[str, object]:
    """Energy, peaks, unbalance, voltage extremes, neutral current and losses over the recorded ticks (NaN cells
    skipped; a figure with no value at all is NaN)."""
    hours = tick_s / 3600.0
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p_unb = np.where(totals.p_unb_count > 0, totals.p_unb_sum_kw / np.maximum(totals.p_unb_count, 1), np.nan)
    return {
        "energy_kwh": PhaseFigures.of(totals.p_trafo_kwh_h * hours),
        "peak_load_kw": PhaseFigures.of(finite_or_nan(totals.p_trafo_max_kw)),
        "max_p_unb_kw": finite_or_nan(totals.p_unb_max_kw).tolist(),
        "p_unb_kwh": float(np.nansum(totals.p_unb_sum_kw) * hours),
        "mean_p_unb_kw": mean_p_unb.tolist(),
        "vm_min_pu": PhaseFigures.of(finite_or_nan(totals.vm_min_pu)),
        "vm_max_pu": PhaseFigures.of(finite_or_nan(totals.vm_max_pu)),
        "max_vuf_pct": float(finite_or_nan(totals.vuf_max_pct)),
        "max_kappa_trafo": float(finite_or_nan(totals.kappa_max)),
        "peak_neutral_current_a": float(finite_or_nan(totals.i_n_max_a)),
        "losses_kwh": totals.loss_sum_kw * hours,
    }


def run_kpis(folder: Path) -> Kpis:
    """The KPIs of the run folder ``folder`` (``summary.json`` and the ``metrics`` table; see ``twin.metrics.Kpis``):
    what the summary, ``compare``, studies and the report set against no control."""
    s = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    names = pq.ParquetDataset(folder / "metrics.parquet").schema.names
    p_unb = [n for n in names if n.startswith("p_unb_kw_f")]
    table = pq.read_table(folder / "metrics.parquet", columns=[*p_unb, "i_n_max_a"])
    p_unb_kw = np.column_stack([table.column(n).to_numpy(zero_copy_only=False) for n in p_unb]) if p_unb else \
        np.zeros((table.num_rows, 0))
    i_n_a = table.column("i_n_max_a").to_numpy(zero_copy_only=False).astype(float)
    peak_pct = s.get("loading", {}).get("transformer_peak_pct", {})
    with np.errstate(invalid="ignore"):
        mean_neutral = float(np.nanmean(i_n_a)) if np.isfinite(i_n_a).any() else float("nan")
    return Kpis(
        p_unb_kwh=float(np.nansum(p_unb_kw) * s["tick_s"] / 3600.0),
        peak_neutral_a=float(s["peak_neutral_current_a"]), mean_neutral_a=mean_neutral,
        peak_trafo_loading_pct=max(peak_pct.values()) if peak_pct else float("nan"),
        vm_min_pu=float(np.nanmin([s["vm_min_pu"][p] for p in "abc"])),
        vm_max_pu=float(np.nanmax([s["vm_max_pu"][p] for p in "abc"])),
        max_vuf_pct=float(s["max_vuf_pct"]),
        switch_operations=sum(int(d.get("operations", 0)) for d in s.get("devices", {}).values()),
    )


def kpis_against(folder: Path, baseline: Path, *, limits: OperatingLimits | None = None) -> list[KpiChange]:
    """Every KPI of the run in ``folder`` against the run without control in ``baseline``; voltages against
    ``limits`` (default ``OperatingLimits()``)."""
    lim = limits or OperatingLimits()
    return kpi_changes(run_kpis(folder), run_kpis(baseline), vm_min_limit_pu=lim.vm_min_pu,
                       vm_max_limit_pu=lim.vm_max_pu)


def worsened(changes: list[KpiChange]) -> list[str]:
    """The labels of the KPIs a controller made worse than no control (empty: none)."""
    return [c.label + (f" ({c.note})" if c.note else "") for c in changes if c.worse or breaks_limit(c)]
