"""``phasetwin report RUN_DIR``: the run's figures and one self-contained ``report.html``.

The page embeds every figure as a PNG data URI and carries no script, font or style sheet from elsewhere, so it
opens offline and can be mailed as one file. Sections: figures, the summary table, loading peaks, data quality,
commands and acknowledgements, the options of the run, customer → bus → phase.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

import pandas as pd

from twin.figures.chart import Drawn
from twin.figures.run import period_text, read_run, write_run_figures

BASELINE_FOLDERS = ("no-control", "before", "no-plan")


@dataclass(frozen=True)
class Report:
    path: Path
    figures: list[Drawn]
    baseline: Path | None


def find_baseline(folder: Path) -> Path | None:
    """The reference run written beside a replay (``no-control/``, ``before/``, ``no-plan/``), if any."""
    for name in BASELINE_FOLDERS:
        if (folder / name / "summary.json").is_file():
            return folder / name
    return None


def write_report(folder: Path, *, baseline: Path | None = None, tz: str = "UTC",
                 extra_figures: list[Path] | None = None) -> Report:
    """Write the figures into ``folder/figures/`` and ``folder/report.html``; ``baseline`` defaults to a
    reference run folder inside ``folder`` (see ``find_baseline``)."""
    baseline = baseline if baseline is not None else find_baseline(folder)
    drawn = write_run_figures(folder, baseline=baseline, tz=tz)
    run = read_run(folder)
    s = run.summary
    title = f"phasetwin run — {s['feeder']}, {period_text(s, tz)}"
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title>", f"<style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="meta">run <code>{escape(str(s.get("run_id", "")))}</code> · engine {escape(s["engine"])} · '
        f"controller {escape(run.strategy)} · {s['ticks']} ticks · folder <code>{escape(str(folder))}</code>"
        + (f" · reference without control: <code>{escape(baseline.name)}/</code>" if baseline else "") + "</p>",
        "<h2>Summary</h2>", _summary_table(s, baseline, folder),
        "<h2>Figures</h2>",
    ]
    for d in drawn:
        parts.append(_figure(d.path, d.title, folder))
    for path in extra_figures or []:
        parts.append(_figure(path, path.stem.replace("_", " "), folder))
    parts += ["<h2>Loading</h2>", _loading(s.get("loading", {}), tz),
              "<h2>Data quality</h2>", _data_quality(s, folder),
              "<h2>Commands and acknowledgements</h2>", _commands(s),
              "<h2>Options of the run</h2>", _options(folder),
              "<h2>Customers</h2>", _customers(folder),
              "</body></html>"]
    path = folder / "report.html"
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return Report(path=path, figures=drawn, baseline=baseline)


def _figure(path: Path, title: str, folder: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    mime = "image/svg+xml" if path.suffix == ".svg" else "image/png"
    where = path.relative_to(folder) if path.is_relative_to(folder) else path
    return (f'<figure id="fig-{escape(path.stem)}"><img src="data:{mime};base64,{data}" alt="{escape(title)}">'
            f"<figcaption>{escape(title)} (<code>{escape(str(where))}</code>)</figcaption></figure>")


def _table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _phases(v: dict[str, float], fmt: str) -> tuple[str, str, str]:
    return (format(v["a"], fmt), format(v["b"], fmt), format(v["c"], fmt))


def _summary_table(s: dict[str, Any], baseline: Path | None, folder: Path) -> str:
    rows = [
        ("energy (kWh)", *_phases(s["energy_kwh"], ".1f")),
        ("peak load (kW)", *_phases(s["peak_load_kw"], ".2f")),
        ("lowest voltage (p.u.)", *_phases(s["vm_min_pu"], ".4f")),
        ("highest voltage (p.u.)", *_phases(s["vm_max_pu"], ".4f")),
    ]
    if "transformer_peak_pct" in s.get("loading", {}):
        rows.append(("transformer peak loading (%)", *_phases(s["loading"]["transformer_peak_pct"], ".1f")))
    tables = [_table(rows, ("per phase", "A", "B", "C"))]
    unb = ", ".join(f"{v:.2f}" for v in s["max_p_unb_kw"])
    mean = ", ".join(f"{v:.2f}" for v in s["mean_p_unb_kw"])
    other = [("max P_unb per LV feeder (kW)", unb), ("mean P_unb per LV feeder (kW)", mean),
             ("max VUF (%)", f"{s['max_vuf_pct']:.3f}"), ("max κ of the transformer", f"{s['max_kappa_trafo']:.3f}"),
             ("peak neutral current (A)", f"{s['peak_neutral_current_a']:.1f}"),
             ("losses (kWh)", f"{s['losses_kwh']:.2f}"), ("wall time (s)", f"{s['wall_s']:.1f}")]
    if baseline is not None:
        ref = json.loads((baseline / "summary.json").read_text(encoding="utf-8"))
        hours = s["tick_s"] / 3600.0
        ctl, base = sum(s["mean_p_unb_kw"]) * s["ticks"] * hours, sum(ref["mean_p_unb_kw"]) * ref["ticks"] * hours
        gain = f" ({100.0 * (base - ctl) / base:.1f} % less)" if base > 0 else ""
        other.append(("P_unb over the period, with vs without control (kWh)", f"{ctl:.1f} vs {base:.1f}{gain}"))
    tables.append(_table(other, ("figure", "value")))
    if baseline is not None:
        tables.append(_kpi_table(folder, baseline))
    return "".join(tables)


def _kpi_table(folder: Path, baseline: Path) -> str:
    """Every KPI of the run against no control; a KPI the controller made worse is marked."""
    from phasetwin.run.summary import kpis_against, worsened

    changes = kpis_against(folder, baseline)
    rows = [(c.label, f"{c.value:.4g}", f"{c.baseline:.4g}", c.change_text(),
             " ".join(x for x in ("WORSE" if c.worse else "", c.note) if x)) for c in changes]
    bad = worsened(changes)
    note = (f"<p><strong>Worse than no control on {len(bad)} KPI(s):</strong> {escape('; '.join(bad))}.</p>" if bad
            else "<p>No worse than no control on any KPI.</p>")
    return _table(rows, ("KPI", "this run", "no control", "change", "")) + note


def _loading(loading: dict[str, Any], tz: str) -> str:
    if not loading:
        return "<p>No loading recorded (run folder without <code>loading.parquet</code>).</p>"
    def when(iso: str) -> str:
        return f"{pd.Timestamp(iso).tz_convert(tz):%Y-%m-%d %H:%M}"

    rows = [(f"transformer, phase {p.upper()}", f"{loading['transformer_peak_pct'][p]:.1f}",
             when(loading["transformer_peak_utc"][p])) for p in "abc"]
    if "line_peak_id" in loading:
        rows.append((f"line {loading['line_peak_id']}, phase {loading['line_peak_phase']}",
                     f"{loading['line_peak_pct']:.1f}", when(loading["line_peak_utc"])))
    over = loading.get("lines_over_rating", [])
    text = (f"<p>Lines above their rating at some tick: {escape(', '.join(over))}.</p>" if over
            else "<p>No line above its rating.</p>")
    return _table(rows, ("peak of", "% of rating", f"at ({tz})")) + text


def _data_quality(s: dict[str, Any], folder: Path) -> str:
    keys = ("readings_published", "readings_missing", "readings_rejected", "readings_late", "readings_duplicate",
            "powerflow_failures", "overruns", "max_lateness_s", "powerflow_solves", "states_solved", "cache_hits")
    rows = [(k.replace("_", " "), str(s[k])) for k in keys if k in s]
    if s.get("stopped_early"):
        rows.append(("stopped early", "yes (stop requested)"))
    rows += [(f"recorder: {k}", str(v)) for k, v in s.get("recorder", {}).items()]
    path = folder / "data_quality.json"
    if path.is_file():
        meter = json.loads(path.read_text(encoding="utf-8"))
        flat = {(sub if k == "quality" else f"{k} {sub}") if isinstance(v, dict) else k: w for k, v in meter.items()
                for sub, w in (v.items() if isinstance(v, dict) else [("", v)])}
        rows += [(f"meter data: {k.replace('_', ' ')}", "; ".join(map(str, v)) if isinstance(v, list) else str(v))
                 for k, v in flat.items()]
    return _table(rows, ("counter", "value"))


def _commands(s: dict[str, Any]) -> str:
    rows = [(f"acknowledgements {k}", str(v)) for k, v in sorted(s.get("acks", {}).items())]
    rows += [(f"{k}", str(v)) for k, v in sorted(s.get("commands", {}).items())] if isinstance(
        s.get("commands"), dict) else []
    for k in ("commands_unknown_device", "commands_malformed", "schedule_not_sent"):
        if k in s:
            rows.append((k.replace("_", " "), str(s[k])))
    ctl = s.get("controller", {})
    for k in ("commands_sent", "switch_commands", "fallbacks", "errors"):
        if k in ctl:
            rows.append((f"controller {k.replace('_', ' ')}", str(ctl[k])))
    rows += [(f"controller rejections: {k}", str(v)) for k, v in sorted(ctl.get("rejections", {}).items())]
    rejected = sum(v for k, v in s.get("acks", {}).items() if k.startswith("rejected"))
    note = f"<p>{rejected} command(s) rejected by the devices.</p>"
    return (_table(rows, ("what", "count")) if rows else "<p>No commands in this run.</p>") + note


def _options(folder: Path) -> str:
    path = folder / "scenario.json"
    if not path.is_file():
        return "<p>No <code>scenario.json</code> in the run folder.</p>"
    options = json.loads(path.read_text(encoding="utf-8"))
    rows = [(k, json.dumps(v) if not isinstance(v, str) else v) for k, v in _flatten(options)]
    return f"<details><summary>{len(rows)} settings</summary>{_table(rows, ('option', 'value'))}</details>"


def _flatten(d: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out += _flatten(v, f"{prefix}{k}.")
        else:
            out.append((f"{prefix}{k}", v))
    return out


def _customers(folder: Path) -> str:
    path = folder / "customers.csv"
    if not path.is_file():
        return "<p>No <code>customers.csv</code> in the run folder.</p>"
    table = pd.read_csv(path, keep_default_na=False, dtype=str)
    rows = [tuple(r) for r in table.itertuples(index=False)]
    return (f"<details><summary>{len(rows)} customers: bus, phases and the voltage columns of "
            f"<code>voltages_pu.parquet</code> (<code>customers.csv</code>)</summary>"
            f"{_table(rows, tuple(table.columns))}</details>")


_CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 1.5rem auto; max-width: 1000px;
       padding: 0 1rem; color: #1b1b1b; line-height: 1.4; }
h1 { font-size: 1.35rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.1rem; border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; margin-top: 1.6rem; }
p.meta { color: #555; font-size: 0.9rem; margin-top: 0; }
figure { margin: 0 0 1.2rem 0; }
figure img { width: 100%; height: auto; border: 1px solid #e4e4e4; }
figcaption { font-size: 0.85rem; color: #555; }
table { border-collapse: collapse; margin: 0.4rem 1.2rem 0.8rem 0; font-size: 0.9rem; display: inline-table;
        vertical-align: top; }
th, td { border: 1px solid #ddd; padding: 0.2rem 0.5rem; text-align: left; }
td:not(:first-child) { font-variant-numeric: tabular-nums; }
th { background: #f4f4f4; }
details summary { cursor: pointer; margin: 0.3rem 0; }
code { font-size: 0.85em; }
"""
