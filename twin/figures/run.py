"""The figures of a run folder, written into ``<run>/figures/``.

- ``transformer_load.png``: per-phase active power into the LV side (the reference run dashed, same colours);
- ``voltage_envelope.png``: per phase, the band between the lowest and highest LV-bus voltage, with the limits;
- ``p_unb.png``: P_unb (eq. 7, summed over the LV feeders) with control and, when it ran, without;
- ``neutral_current.png``: the highest neutral current over the lines;
- ``devices.png``: each switch's phase over time (phase colours) and each PESS's stored energy;
- ``loading.png``: transformer and most-loaded-line loading per phase, % of rating, with 100 %.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from twin.figures import style
from twin.figures.chart import Band, Drawn, Lanes, Panel, Series, write_figure

PHASES = ("A", "B", "C")
FIGURE_NAMES = ("transformer_load", "voltage_envelope", "p_unb", "neutral_current", "devices", "loading")


@dataclass(frozen=True)
class RunTables:
    """The tables of one run folder that the figures read."""

    folder: Path
    summary: dict[str, Any]
    transformer: pd.DataFrame
    metrics: pd.DataFrame
    devices: pd.DataFrame | None
    loading: pd.DataFrame | None
    limits: tuple[float, float]

    @property
    def time_utc(self) -> pd.DatetimeIndex:
        return pd.DatetimeIndex(self.transformer["time_utc"])

    @property
    def strategy(self) -> str:
        return str(self.summary.get("controller", {}).get("strategy", "none"))

    def p_unb_kw(self) -> np.ndarray:
        cols = [c for c in self.metrics.columns if c.startswith("p_unb_kw_f")]
        return np.asarray(self.metrics[cols].sum(axis=1, min_count=1), dtype=float)


def read_run(folder: Path) -> RunTables:
    """The run folder's tables; FileNotFoundError names the first missing file of a run folder."""
    for name in ("summary.json", "transformer.parquet", "metrics.parquet"):
        if not (folder / name).exists():  # a table is a folder of part files (streams/runfolder/parts.py)
            raise FileNotFoundError(f"{folder}: no {name}; expected a run folder written by phasetwin replay/run")
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    limits = (0.90, 1.10)
    options = folder / "scenario.json"
    if options.is_file():
        lim = json.loads(options.read_text(encoding="utf-8")).get("controller", {}).get("limits", {})
        limits = (float(lim.get("vm_min_pu", 0.90)), float(lim.get("vm_max_pu", 1.10)))
    devices = pd.read_parquet(folder / "devices.parquet") if (folder / "devices.parquet").exists() else None
    loading = pd.read_parquet(folder / "loading.parquet") if (folder / "loading.parquet").exists() else None
    return RunTables(folder=folder, summary=summary, transformer=pd.read_parquet(folder / "transformer.parquet"),
                     metrics=pd.read_parquet(folder / "metrics.parquet"),
                     devices=devices if devices is not None and len(devices) else None, loading=loading,
                     limits=limits)


def period_text(summary: dict[str, Any], tz: str = "UTC") -> str:
    start = pd.Timestamp(summary["start_utc"]).tz_convert(tz)
    end = pd.Timestamp(summary["end_utc"]).tz_convert(tz)
    return f"{start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M} {tz}, {summary['tick_s']} s ticks"


def write_run_figures(folder: Path, *, baseline: Path | None = None, tz: str = "UTC") -> list[Drawn]:
    """Every figure of the run in ``folder`` (``baseline``: the same run without control, drawn dashed)."""
    run = read_run(folder)
    base = read_run(baseline) if baseline is not None else None
    if base is not None and len(base.transformer) != len(run.transformer):
        base = None  # another period or tick: nothing to draw beside it
    out = folder / "figures"
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):
        old.unlink()
    subtitle = f"{run.summary['feeder']} · {period_text(run.summary, tz)} · {_strategy_text(run)}"
    x = run.time_utc
    drawn = [
        _transformer_load(run, base, out=out, subtitle=subtitle, tz=tz),
        _voltage_envelope(run, out=out, subtitle=subtitle, tz=tz),
        _p_unb(run, base, out=out, subtitle=subtitle, tz=tz),
        _neutral(run, base, out=out, subtitle=subtitle, tz=tz),
    ]
    if run.devices is not None:
        drawn.append(_devices(run, x, out=out, subtitle=subtitle, tz=tz))
    if run.loading is not None:
        drawn.append(_loading(run, out=out, subtitle=subtitle, tz=tz))
    return drawn


def _strategy_text(run: RunTables) -> str:
    s = run.strategy
    return "no controller" if s == "none" else f"controller {s}"


def _label(run: RunTables) -> str:
    return "no control" if run.strategy == "none" else f"with {run.strategy}"


def _ref(base: RunTables) -> str:
    """How the reference run is named in legends: by its folder (no-control/, no-plan/, before/)."""
    name = base.folder.name
    return {"no-plan": "no plan", "before": "before"}.get(name, "no control")


def _transformer_load(run: RunTables, base: RunTables | None, *, out: Path, subtitle: str, tz: str) -> Drawn:
    series = [Series(f"phase {p}", run.transformer[f"p_{p.lower()}_kw"].to_numpy(), phase=p) for p in PHASES]
    if base is not None:
        series += [Series(f"phase {p}, {_ref(base)}", base.transformer[f"p_{p.lower()}_kw"].to_numpy(), phase=p,
                          dashed=True) for p in PHASES]
    return write_figure(out / "transformer_load.png", [Panel("active power (kW)", series=tuple(series))],
                        title="Transformer load per phase (into the LV side)", subtitle=subtitle, x=run.time_utc,
                        tz=tz)


def _voltage_envelope(run: RunTables, *, out: Path, subtitle: str, tz: str) -> Drawn:
    bands = tuple(Band(f"phase {p}", run.metrics[f"vm_min_{p.lower()}_pu"].to_numpy(),
                       run.metrics[f"vm_max_{p.lower()}_pu"].to_numpy(), phase=p) for p in PHASES)
    lo, hi = run.limits
    panel = Panel("|V| (p.u.)", bands=bands, limits=((lo, f"limits {lo:.2f} / {hi:.2f} p.u."), (hi, "")))
    return write_figure(out / "voltage_envelope.png", [panel],
                        title="Voltage envelope per phase (lowest to highest over the LV buses)", subtitle=subtitle,
                        x=run.time_utc, tz=tz)


def _p_unb(run: RunTables, base: RunTables | None, *, out: Path, subtitle: str, tz: str) -> Drawn:
    series = [Series(_label(run), run.p_unb_kw(), colour=style.CONTROLLED_COLOUR)]
    if base is not None:
        series.append(Series(_ref(base), base.p_unb_kw(), colour=style.REFERENCE_COLOUR, dashed=True))
    n_f = sum(1 for c in run.metrics.columns if c.startswith("p_unb_kw_f"))
    what = "P_unb (eq. 7)" + (f", sum over {n_f} LV feeders" if n_f > 1 else "")
    return write_figure(out / "p_unb.png", [Panel("P_unb (kW)", series=tuple(series), y_min=0.0)],
                        title=what + (f", {_label(run)} and {_ref(base)}" if base is not None else ""),
                        subtitle=subtitle, x=run.time_utc, tz=tz)


def _neutral(run: RunTables, base: RunTables | None, *, out: Path, subtitle: str, tz: str) -> Drawn:
    series = [Series(_label(run), run.metrics["i_n_max_a"].to_numpy(), colour=style.CONTROLLED_COLOUR)]
    if base is not None:
        series.append(Series(_ref(base), base.metrics["i_n_max_a"].to_numpy(), colour=style.REFERENCE_COLOUR,
                             dashed=True))
    return write_figure(out / "neutral_current.png", [Panel("I_N (A)", series=tuple(series), y_min=0.0)],
                        title="Neutral current, highest over the lines", subtitle=subtitle, x=run.time_utc, tz=tz)


def _devices(run: RunTables, x: pd.DatetimeIndex, *, out: Path, subtitle: str, tz: str) -> Drawn:
    assert run.devices is not None
    d = run.devices
    tick_s = int(run.summary["tick_s"])
    start = x[0]
    tick = ((pd.DatetimeIndex(d["time_utc"]) - start).total_seconds() // tick_s).astype(int)
    panels = []
    switches = sorted(d.loc[d["kind"] != "pess", "device_id"].unique()) + \
        sorted(d.loc[(d["kind"] == "pess") & d["phase"].notna(), "device_id"].unique())
    if switches:
        rows: dict[str, list[str | None]] = {}
        for dev in switches:
            states: list[str | None] = [None] * len(x)
            sel = d["device_id"] == dev
            for t, phase in zip(tick[sel], d.loc[sel, "phase"], strict=True):
                if 0 <= t < len(x):
                    states[t] = f"phase {phase}" if isinstance(phase, str) and phase else None
            rows[dev] = states
        panels.append(Panel("phase in force", lanes=Lanes(
            rows=rows, colours={f"phase {p}": style.PHASE_COLOURS[p] for p in PHASES})))
    pess = sorted(d.loc[d["kind"] == "pess", "device_id"].unique())
    if pess:
        series = []
        for j, dev in enumerate(pess):
            e = np.full(len(x), np.nan)
            sel = d["device_id"] == dev
            t = tick[sel]
            ok = (t >= 0) & (t < len(x))
            e[t[ok]] = d.loc[sel, "e_kwh"].to_numpy()[ok]
            series.append(Series(dev, e, colour=style.OTHER_COLOURS[j]))
        panels.append(Panel("stored energy (kWh)", series=tuple(series), y_min=0.0))
    return write_figure(out / "devices.png", panels, title="Devices: phase of each switch, battery stored energy",
                        subtitle=subtitle, x=x, tz=tz)


def _loading(run: RunTables, *, out: Path, subtitle: str, tz: str) -> Drawn:
    assert run.loading is not None
    ld = run.loading
    trafo = tuple(Series(f"phase {p}", ld[f"trafo_{p.lower()}_pct"].to_numpy(), phase=p) for p in PHASES)
    lines = tuple(Series(f"phase {p}", ld[f"line_max_{p.lower()}_pct"].to_numpy(), phase=p) for p in PHASES)
    peak = run.summary.get("loading", {})
    where = f" (peak {peak['line_peak_pct']:.0f} % on {peak['line_peak_id']}, phase {peak['line_peak_phase']})" \
        if "line_peak_id" in peak else ""
    panels = [Panel("transformer (% of rating)", series=trafo, limits=((100.0, "rating"),), y_min=0.0),
              Panel("most loaded line (% of rating)", series=lines, limits=((100.0, "rating"),), y_min=0.0)]
    return write_figure(out / "loading.png", panels, title=f"Loading per phase{where}", subtitle=subtitle,
                        x=run.time_utc, tz=tz)
