"""``phasetwin meter-voltages``, ``phasetwin scramble-phases`` and ``phasetwin identify``: phase identification.

- ``meter-voltages`` replays a feeder network-only and writes what its smart meters would report
  (``streams/meters/voltages.py`` format: customers' terminal voltages and powers, the transformer's per-phase
  references) under a meter model (``twin/smart_meter.py``: interval, accuracy class, quantisation, gaps).
- ``scramble-phases`` writes a feeder's phase records with a share of the single-phase customers moved to a
  wrong phase (what a DSO's records look like), and the true phases beside them.
- ``identify`` assigns each single-phase customer a phase with a confidence from a meter-voltage file, by
  voltage correlation and/or energy balance (``controllers/identification/``), flags the low-confidence ones
  instead of guessing, and writes ``identified.json`` (the re-phasing plan format: ``plan rephase --phases``
  and ``replay --rephase`` read it), ``phases.csv`` (recorded vs identified vs true per customer) and
  ``report.json`` (accuracy, confusion matrix, per method).
"""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import typer
from rich.table import Table

from controllers.errors import PlanningError
from controllers.identification import HIGH_CONFIDENCE, Assignment, Method
from controllers.identification.watch import LR_MARGIN, STEADY_LEVEL
from phasetwin.report.console import console
from phasetwin.report.console import fail as _fail
from phasetwin.report.json_file import write_json
from streams.errors import validation_problems
from twin.errors import StreamError, TwinError

if TYPE_CHECKING:
    from streams.meters.voltages import MeterVoltages

__all__ = ["register"]

PHASE_LETTERS = "ABC"


def register(app: typer.Typer) -> None:
    """Add the three commands to the ``phasetwin`` application."""
    app.command("meter-voltages")(meter_voltages)
    app.command("scramble-phases")(scramble_phases)
    app.command("identify")(identify)


def meter_voltages(
    out: Annotated[Path, typer.Option(help="the meter-voltage file to write (.csv or .parquet)")],
    feeder: Annotated[str, typer.Option(help="feeder name or file (as for replay)")] = "ieee-european-lv",
    data: Annotated[Path | None, typer.Option(help="meter data; default: the feeder's own")] = None,
    start: Annotated[str | None, typer.Option(help="first tick (ISO, UTC); default: the start of the data")] = None,
    end: Annotated[str | None, typer.Option(help="end (ISO, UTC); default: one day after the start")] = None,
    tick: Annotated[int, typer.Option(help="twin tick, s")] = 60,
    rephase: Annotated[Path | None, typer.Option(help="plan.json: the true phases, if not the feeder's")] = None,
    accuracy_class: Annotated[float, typer.Option("--class", help="meter accuracy class, %: 0.2, 0.5, 1.0, 2.0")]
    = 1.0,
    reference_class: Annotated[float, typer.Option(help="the transformer's LV meter: accuracy class, %")] = 0.2,
    resolution: Annotated[int, typer.Option(help="meter interval, s (a multiple of the tick)")] = 900,
    quantum: Annotated[float, typer.Option(help="voltage register resolution, V (0 = none)")] = 0.1,
    missing: Annotated[float, typer.Option(help="share of intervals missing per meter")] = 0.0,
    seed: Annotated[int, typer.Option(help="seed of the meter error and gap draws")] = 0,
    run_dir: Annotated[Path, typer.Option(help="the twin's run folder")] = Path("runs/meter-voltages"),
) -> None:
    """Replay a feeder network-only and write what its smart meters and the transformer's meter report."""
    from pydantic import ValidationError

    from phasetwin.run.meter_readings import simulate_meter_voltages
    from phasetwin.run.scenario import Scenario
    from twin.clock import parse_utc
    from twin.smart_meter import MeterModel

    try:
        model = MeterModel(accuracy_class=accuracy_class, reference_class=reference_class, resolution_s=resolution,
                           quantum_v=quantum, missing_share=missing, seed=seed)
        scenario = Scenario(feeder=feeder, data=data, start_utc=parse_utc(start) if start else None,
                            end_utc=parse_utc(end) if end else None, tick_s=tick, rephase=rephase, out=run_dir)
    except ValueError as err:
        if not isinstance(err, ValidationError):
            raise _fail(f"--start/--end: {err}") from None
        raise _fail(validation_problems(err, root="options")) from None
    try:
        path, n_intervals, n_customers = simulate_meter_voltages(scenario, model=model, out=out)
    except (TwinError, StreamError, ValueError) as err:
        raise _fail(str(err)) from None
    console.print(f"{n_customers} customer meters and the transformer's, {n_intervals} intervals of "
                  f"{resolution} s, class {accuracy_class}: {path}")


def scramble_phases(
    out: Annotated[Path, typer.Option(help="folder for recorded.json and true.json")],
    feeder: Annotated[str, typer.Option(help="feeder name or file")] = "ieee-european-lv",
    share: Annotated[float, typer.Option(help="share of single-phase customers recorded on a wrong phase")] = 0.2,
    seed: Annotated[int, typer.Option(help="seed of the draw")] = 0,
) -> None:
    """Write phase records with a share of the single-phase customers on a wrong phase (and the true phases)."""
    from controllers.planning.plan_file import write_plan
    from twin.feeders import open_feeder
    from twin.phase import Phase

    if not 0 <= share <= 1:
        raise _fail(f"--share {share} is outside 0..1")
    try:
        net = open_feeder(feeder).load_feeder()
    except TwinError as err:
        raise _fail(str(err)) from None
    single = [c for c in net.customers if c.n_phases == 1]
    rng = np.random.default_rng(seed)
    n_wrong = round(share * len(single))
    wrong = set(rng.choice(len(single), size=n_wrong, replace=False).tolist()) if n_wrong else set()
    true = {c.id: c.phases for c in net.customers}
    recorded = dict(true)
    for idx in sorted(wrong):
        c = single[idx]
        shift = int(rng.integers(1, 3))
        recorded[c.id] = (Phase((int(c.phases[0]) + shift) % 3),)
    out.mkdir(parents=True, exist_ok=True)
    write_plan(out / "recorded.json", feeder=net.name, configurations=recorded)
    write_plan(out / "true.json", feeder=net.name, configurations=true)
    console.print(f"{n_wrong} of {len(single)} single-phase customers recorded on a wrong phase: "
                  f"{out / 'recorded.json'} (true phases: {out / 'true.json'})")


def identify(
    meters: Annotated[Path, typer.Argument(help="meter-voltage file (see `phasetwin meter-voltages`)")],
    out: Annotated[Path, typer.Option(help="output folder")] = Path("runs/identify"),
    feeder: Annotated[str, typer.Option(help="feeder name or file: which customers there are, and the "
                                             "recorded phases unless --records is given")] = "ieee-european-lv",
    records: Annotated[Path | None, typer.Option(help="recorded phases (plan-file JSON), for the comparison")]
    = None,
    truth: Annotated[Path | None, typer.Option(help="true phases (plan-file JSON), to score the result")] = None,
    method: Annotated[Method, typer.Option(help="correlation, energy, or both (assigned where they agree)")]
    = Method.BOTH,
    min_confidence: Annotated[float, typer.Option(help="below this a customer is flagged, not assigned")]
    = HIGH_CONFIDENCE,
    time_limit: Annotated[float, typer.Option(help="energy-balance MILP time limit, s")] = 120.0,
    watch: Annotated[bool, typer.Option(help="identify on the first --baseline-days, then watch the rest over a "
                                             "rolling window for customers whose phase changed (moves.csv)")]
    = False,
    baseline_days: Annotated[float, typer.Option(help="--watch: days of the baseline identification")] = 7.0,
    window_hours: Annotated[float, typer.Option(help="--watch: rolling window, h")] = 24.0,
    step_hours: Annotated[float, typer.Option(help="--watch: the window's step, h")] = 1.0,
    steady_level: Annotated[float, typer.Option(help="--watch: a customer to whom a window of the baseline gives "
                                                     "another phase with this confidence is not watched (1: watch "
                                                     "every identified customer; --watch-test "
                                                     "correlation only)")] = STEADY_LEVEL,
    watch_test: Annotated[str, typer.Option(help="--watch: model (the likelihood-ratio test on the feeder's "
                                                 "voltage sensitivities) or correlation (the windowed vote)")]
    = "model",
    margin: Annotated[float, typer.Option(help="--watch-test model: the threshold over the baseline's largest "
                                               "statistic")] = LR_MARGIN,
) -> None:
    """Identify each single-phase customer's phase from its meter's voltages (and powers); with --watch, then
    report customers whose phase changed later in the file, with the time it was noticed."""
    from controllers.planning.plan_file import read_plan, write_plan
    from phasetwin.run.meter_readings import run_identification
    from streams.meters.voltages import read_meter_voltages
    from twin.feeders import open_feeder

    if watch_test not in ("model", "correlation"):
        raise _fail(f"--watch-test {watch_test!r}: expected model or correlation")
    try:
        net = open_feeder(feeder).load_feeder()
        data = read_meter_voltages(meters)
        recorded = read_plan(records) if records is not None else {c.id: c.phases for c in net.customers}
        true = read_plan(truth) if truth is not None else None
        full = data
        if watch:
            data = _first_days(data, baseline_days)
        result = run_identification(net, data, method=method, time_limit_s=time_limit)
    except (TwinError, StreamError, PlanningError, ValueError) as err:
        raise _fail(str(err)) from None
    chosen = result.assignments[method]
    ids = result.customer_ids
    flagged = chosen.flagged(min_confidence)
    identified = {cid: (int(chosen.phase[i]),) for i, cid in enumerate(ids) if not flagged[i]}
    rows: list[dict[str, Any]] = []
    for i, cid in enumerate(ids):
        rec = recorded.get(cid)
        tru = true.get(cid) if true is not None else None
        row: dict[str, Any] = {
            "customer_id": cid,
            "recorded": "".join(p.name for p in rec) if rec else "",
            "identified": "" if flagged[i] else PHASE_LETTERS[int(chosen.phase[i])],
            "confidence": round(float(chosen.confidence[i]), 6),
            "flagged": bool(flagged[i]),
            "reason": chosen.reason[i] or ("confidence below the threshold" if flagged[i] else ""),
        }
        for m, a in result.assignments.items():
            if m is not method:
                row[f"{m.value}"] = "" if a.phase[i] < 0 else PHASE_LETTERS[int(a.phase[i])]
                row[f"{m.value}_confidence"] = round(float(a.confidence[i]), 6)
        if tru is not None:
            row["true"] = "".join(p.name for p in tru)
        rows.append(row)
    out.mkdir(parents=True, exist_ok=True)
    from twin.phase import Phase

    configurations = {c.id: tuple(recorded.get(c.id, c.phases)) for c in net.customers}
    configurations.update({cid: (Phase(k[0]),) for cid, k in identified.items()})
    write_plan(out / "identified.json", feeder=net.name, configurations=configurations,
               initial={c.id: tuple(recorded.get(c.id, c.phases)) for c in net.customers})
    with (out / "phases.csv").open("w", newline="") as fh:
        fields = list(dict.fromkeys(k for r in rows for k in r))
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    report = result.report(true=true, min_confidence=min_confidence, recorded=recorded)
    write_json(out / "report.json", report)
    _print(report, chosen, ids, flagged, method)
    console.print(f"wrote {out / 'identified.json'}, {out / 'phases.csv'}, {out / 'report.json'}")
    if watch:
        try:
            sensitivity = None
            if watch_test == "model":
                from controllers.identification.sensitivity import voltage_sensitivities

                order = [next(k for k, c in enumerate(net.customers) if c.id == cid) for cid in ids]
                sensitivity = voltage_sensitivities(net)[order][:, :, order]
            _watch(full, ids, np.where(flagged, -1, chosen.phase), reference_phase=chosen.phase,
                   start=len(data.time_utc), out=out, window_hours=window_hours, step_hours=step_hours,
                   min_confidence=min_confidence, steady_level=steady_level, sensitivity=sensitivity, margin=margin)
        except (ValueError, TwinError) as err:
            raise _fail(f"--watch: {err}") from None


def _first_days(data: MeterVoltages, days: float) -> MeterVoltages:
    """The first ``days`` of ``data``; ValueError when that leaves nothing to watch or no baseline."""
    import pandas as pd

    n = int(np.searchsorted(data.time_utc, data.time_utc[0] + pd.Timedelta(days=days)))
    if n < 1 or n >= len(data.time_utc):
        raise ValueError(f"--baseline-days {days}: the file covers {data.time_utc[0]} to {data.time_utc[-1]}; "
                         "the baseline must leave intervals to watch")
    return replace(data, time_utc=data.time_utc[:n], v_v=data.v_v[:n], p_kw=data.p_kw[:n], ref_v_v=data.ref_v_v[:n],
                   ref_p_kw=data.ref_p_kw[:n])


def _watch(data: MeterVoltages, ids: tuple[str, ...], phase: np.ndarray, *, reference_phase: np.ndarray,
           start: int, out: Path, window_hours: float, step_hours: float, min_confidence: float,
           steady_level: float, sensitivity: np.ndarray | None = None, margin: float = LR_MARGIN) -> None:
    """Watch the single-phase customers ``ids`` (``phase``: their baseline, -1 = not watched; ``reference_phase``:
    the baseline's best guess, with which the unwatched ones join the references) from interval ``start`` on;
    with ``sensitivity`` (over ``ids``) by the modelled test, calibrated on the baseline, else by the correlation
    vote, except the customers whose evidence wavered in the baseline (``watch.wavering`` at ``steady_level``);
    write moves.csv and print the moves."""
    import pandas as pd

    from controllers.identification import watch_phases
    from controllers.identification.correlation import profile_groups
    from controllers.identification.watch import wavering

    interval_s = (data.time_utc[1] - data.time_utc[0]).total_seconds() if len(data.time_utc) > 1 else 1.0
    window = round(window_hours * 3600 / interval_s)
    step = max(round(step_hours * 3600 / interval_s), 1)
    column = {cid: i for i, cid in enumerate(data.customer_ids)}
    v = np.full((len(data.time_utc), len(ids)), np.nan)
    p = np.full_like(v, np.nan)
    for k, cid in enumerate(ids):
        if cid in column:
            v[:, k], p[:, k] = data.v_v[:, column[cid], 0], data.p_kw[:, column[cid], 0]
    if not 0 < steady_level <= 1:
        raise ValueError(f"--steady-level {steady_level}: expected a confidence in (0, 1]")
    unsteady = np.zeros(len(ids), dtype=bool)
    if sensitivity is None:
        unsteady = wavering(v_v=v[:start - 1], ref_v_v=data.ref_v_v[:start - 1], phase=phase, window=window,
                            step=step, group=profile_groups(p), others=reference_phase, level=steady_level)
    phase = np.where(unsteady, -1, phase)
    changes = watch_phases(v_v=v, ref_v_v=data.ref_v_v, phase=phase, reference_phase=reference_phase, window=window,
                           step=step, p_kw=p, threshold=min_confidence,
                           start=start if sensitivity is not None else max(start - window, 0), steady_level=None,
                           sensitivity=sensitivity, margin=margin, confirm=1 if sensitivity is not None else 2)
    with (out / "moves.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["customer_id", "from", "to", "noticed_utc", "confidence", "statistic_nats",
                         "threshold_nats"])
        for c in changes:
            noticed = data.time_utc[c.noticed_at - 1] + pd.Timedelta(seconds=interval_s)
            shown = (f"likelihood ratio {c.statistic_nats:.1f} nats over {c.threshold_nats:.1f}"
                     if c.statistic_nats is not None and c.threshold_nats is not None
                     else f"confidence {c.confidence:.4f}")
            writer.writerow([ids[c.customer], PHASE_LETTERS[c.from_phase], PHASE_LETTERS[c.to_phase],
                             noticed.isoformat(), "" if c.statistic_nats is not None else round(c.confidence, 6),
                             "" if c.statistic_nats is None else round(c.statistic_nats, 3),
                             "" if c.threshold_nats is None else round(c.threshold_nats, 3)])
            console.print(f"moved: {ids[c.customer]} {PHASE_LETTERS[c.from_phase]} → {PHASE_LETTERS[c.to_phase]}, "
                          f"noticed {noticed.isoformat()} ({shown})")
    if sensitivity is not None:
        from controllers.identification.change_test import calibrate, day_evidence_nats

        model_phase = np.where(phase >= 0, phase, reference_phase)
        fit, threshold = calibrate(v_v=v[:start], ref_v_v=data.ref_v_v[:start], p_kw=p[:start],
                                   sensitivity=sensitivity, phase=phase, model_phase=reference_phase, window=window,
                                   step=step, margin=margin)
        evidence = day_evidence_nats(v[:start], data.ref_v_v[:start], p[:start], sensitivity, model_phase, fit,
                                     window=window)
        slow = (phase >= 0) & (evidence < threshold)
        if slow.any():
            console.print(f"watched, but a move of theirs is not expected within {window_hours:g} h (a window of "
                          f"the baseline gives less evidence than the threshold, {threshold:.1f} nats: little "
                          "consumption, or close to the transformer): "
                          + ", ".join(f"{ids[i]} ({evidence[i]:.1f})" for i in np.flatnonzero(slow)))
    if unsteady.any():
        console.print(f"not watched, their phase evidence wavered in the baseline (another phase at confidence ≥ "
                      f"{steady_level}): " + ", ".join(ids[i] for i in np.flatnonzero(unsteady)))
    console.print(f"watched {int((phase >= 0).sum())} of {len(ids)} customers over "
                  f"{len(data.time_utc) - start} intervals (window {window}, step {step}): {len(changes)} move(s); "
                  f"{out / 'moves.csv'}")


def _print(report: dict[str, Any], chosen: Assignment, ids: tuple[str, ...], flagged: np.ndarray,
           method: Method) -> None:
    table = Table(title="phase identification", title_justify="left")
    for column in ("method", "high conf.", "flagged", "accuracy", "accuracy, high conf."):
        table.add_column(column, overflow="fold")
    for name, figures in report["methods"].items():
        score = figures.get("score", {})
        table.add_row(name, str(figures["high_confidence"]), str(figures["flagged"]),
                      f"{score['accuracy']:.1%}" if score else "—",
                      f"{score['accuracy_of_high_confidence']:.1%}" if score else "—")
    console.print(table)
    if report.get("recorded_wrong") is not None:
        console.print(f"records differ from the identified phase for {report['recorded_wrong']} customer(s)")
    few = [f"{cid} ({chosen.reason[i] or 'low confidence'})" for i, cid in enumerate(ids) if flagged[i]][:10]
    if few:
        console.print(f"flagged ({method.value}): " + ", ".join(few) + (" …" if flagged.sum() > 10 else ""))
