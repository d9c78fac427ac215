"""Meter readings from a twin run (for phase identification), and identification over a feeder's customers.

``simulate_meter_voltages`` replays a scenario network-only and turns the run folder into the meter-voltage file
(``streams/meters/voltages.py``) under a meter model (``twin/smart_meter.py``); ``run_identification`` matches a
meter-voltage file to a feeder's customers and runs the methods of ``controllers/identification``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from controllers.identification import Assignment, Method, confusion_matrix, identify_phases, score
from controllers.identification.assignment import NOT_ASSIGNED
from controllers.identification.sensitivity import voltage_sensitivities
from phasetwin.run.scenario import Scenario
from streams.errors import DataError
from streams.meters.voltages import MeterVoltages, read_meter_voltages, write_meter_voltages
from streams.runfolder.matrix import read_matrix
from twin.network import Feeder
from twin.phase import Phase
from twin.smart_meter import MeterModel, interval_means, measure

__all__ = [
    "IdentificationResult",
    "TrueReadings",
    "meter_voltages",
    "read_meter_voltages",
    "run_identification",
    "simulate_meter_voltages",
    "true_readings",
]


@dataclass(frozen=True)
class TrueReadings:
    """What the twin computed, per tick, at every meter: customers' terminal voltages ``v_v[t, i, j]`` (V, NaN
    beyond the customer's terminals) and powers ``p_kw`` at the data's step, the transformer's phase voltages
    and powers."""

    feeder: Feeder
    time_utc: pd.DatetimeIndex
    tick_s: int
    v_v: np.ndarray
    ref_v_v: np.ndarray
    ref_p_kw: np.ndarray
    p_kw: np.ndarray
    p_step_s: int


def true_readings(scenario: Scenario) -> TrueReadings:
    """Replay ``scenario`` (network-only unless it says otherwise) into its run folder and read back what every
    meter would see. Raises TwinError/StreamError on bad inputs."""
    from phasetwin.run.inputs import load_inputs
    from phasetwin.run.replay import replay

    replay(scenario)
    feeder, table = load_inputs(scenario)
    wanted = sorted({f"{c.bus}_{phase.name}" for c in feeder.customers for phase in c.phases}
                    | {f"{feeder.lv_bus}_{p.name}" for p in Phase})
    read = read_matrix(scenario.out / "voltages_pu.parquet", wanted)  # the meters' bus-phases only
    voltages = dict(zip(read.names, read.values.T, strict=True))
    transformer = pd.read_parquet(scenario.out / "transformer.parquet")
    time_utc = read.time_utc
    v_base_v = feeder.transformer.vn_lv_kv * 1000.0 / math.sqrt(3.0)
    v_v = np.full((len(time_utc), len(feeder.customers), 3), np.nan)
    for i, c in enumerate(feeder.customers):
        for j, phase in enumerate(c.phases):
            v_v[:, i, j] = voltages[f"{c.bus}_{phase.name}"] * v_base_v
    ref_v_v = np.stack([voltages[f"{feeder.lv_bus}_{p.name}"] for p in Phase], axis=1) * v_base_v
    period = table.between(time_utc[0], time_utc[-1] + pd.Timedelta(seconds=scenario.tick_s))
    n_terminals = np.array([c.n_phases for c in feeder.customers])
    p_kw = np.where((np.arange(3)[None, :] < n_terminals[:, None])[None], period.p_kw, np.nan)
    return TrueReadings(feeder=feeder, time_utc=time_utc, tick_s=scenario.tick_s, v_v=v_v, ref_v_v=ref_v_v,
                        ref_p_kw=transformer[["p_a_kw", "p_b_kw", "p_c_kw"]].to_numpy(), p_kw=p_kw,
                        p_step_s=period.step_s)


def meter_voltages(truth: TrueReadings, *, model: MeterModel, source: str = "twin",
                   metered: np.ndarray | None = None) -> MeterVoltages:
    """What the meters of ``model`` report of ``truth``: interval means, class error, quantisation, gaps;
    ``metered[i]`` False leaves customer i out (no meter). Raises ValueError when the period is shorter than an
    interval or the resolution is not a multiple of the tick and the data step."""
    v = interval_means(truth.v_v, step_s=truth.tick_s, resolution_s=model.resolution_s)
    ref_v = interval_means(truth.ref_v_v, step_s=truth.tick_s, resolution_s=model.resolution_s)
    ref_p = interval_means(truth.ref_p_kw, step_s=truth.tick_s, resolution_s=model.resolution_s)
    p = interval_means(truth.p_kw, step_s=truth.p_step_s, resolution_s=model.resolution_s)
    n = min(v.shape[0], p.shape[0])
    if n == 0:
        raise ValueError(f"the period ({len(truth.time_utc)} ticks of {truth.tick_s} s) is shorter than one meter "
                         f"interval of {model.resolution_s} s")
    keep = np.ones(len(truth.feeder.customers), dtype=bool) if metered is None else metered
    return MeterVoltages(
        source=source, time_utc=pd.date_range(truth.time_utc[0], periods=n, freq=f"{model.resolution_s}s"),
        customer_ids=tuple(c.id for c, k in zip(truth.feeder.customers, keep, strict=True) if k),
        n_terminals=np.array([c.n_phases for c in truth.feeder.customers])[keep],
        v_v=measure(v[:n], model=model, stream=0, voltage=True)[:, keep],
        p_kw=measure(p[:n], model=model, stream=1, voltage=False)[:, keep],
        ref_v_v=measure(ref_v[:n], model=model, stream=2, voltage=True, reference=True),
        ref_p_kw=measure(ref_p[:n], model=model, stream=3, voltage=False, reference=True),
    )


def simulate_meter_voltages(scenario: Scenario, *, model: MeterModel, out: Path) -> tuple[Path, int, int]:
    """Replay ``scenario`` and write what the customers' meters and the transformer's LV meter report to ``out``.
    Returns the path, the number of intervals and of customer meters."""
    data = meter_voltages(true_readings(scenario), model=model, source=str(out))
    return write_meter_voltages(out, data), len(data.time_utc), len(data.customer_ids)


@dataclass(frozen=True)
class IdentificationResult:
    """One assignment per method over ``customer_ids`` (the feeder's single-phase customers, in feeder order),
    and the customers set aside: three-phase meters, and customers without any meter data."""

    customer_ids: tuple[str, ...]
    assignments: dict[Method, Assignment]
    three_phase: tuple[str, ...]
    without_data: tuple[str, ...]

    def report(self, *, true: dict[str, tuple[Phase, ...]] | None, min_confidence: float,
               recorded: dict[str, tuple[Phase, ...]]) -> dict[str, Any]:
        """Per method: how many customers are high-confidence and how many flagged; with the true phases the
        score (accuracy of every customer's best phase; accuracy among the high-confidence ones) and the
        confusion matrix of the best phases."""
        truth = None
        if true is not None:
            missing = [cid for cid in self.customer_ids if cid not in true]
            if missing:
                raise DataError(f"the true phases lack customer(s) {', '.join(missing[:10])}")
            truth = np.array([int(true[cid][0]) for cid in self.customer_ids])
        methods: dict[str, Any] = {}
        for method, a in self.assignments.items():
            flagged = a.flagged(min_confidence)
            entry: dict[str, Any] = {"high_confidence": int((~flagged).sum()), "flagged": int(flagged.sum())}
            if truth is not None:
                entry["score"] = score(a, truth, threshold=min_confidence)
                entry["confusion"] = {"rows": "true A, B, C", "columns": "identified A, B, C, not assigned",
                                      "counts": confusion_matrix(a, truth).tolist()}
            methods[method.value] = entry
        recorded_phase = np.array([int(recorded[cid][0]) if cid in recorded and len(recorded[cid]) == 1
                                   else NOT_ASSIGNED for cid in self.customer_ids])
        last = list(self.assignments.values())[-1]
        assigned = ~last.flagged(min_confidence)
        return {
            "single_phase_customers": len(self.customer_ids),
            "three_phase_customers": list(self.three_phase),
            "customers_without_data": list(self.without_data),
            "min_confidence": min_confidence,
            "recorded_wrong": int((assigned & (recorded_phase != last.phase)).sum()),
            "recorded_wrong_true": (int((recorded_phase != truth).sum()) if truth is not None else None),
            "methods": methods,
        }


def run_identification(feeder: Feeder, data: MeterVoltages, *, method: Method,
                       time_limit_s: float = 120.0) -> IdentificationResult:
    """Match ``data`` to ``feeder``'s customers and identify the single-phase ones by ``method`` (both methods
    for ``Method.BOTH``, then their agreement). A customer whose meter reports three terminals is three-phase;
    one with no meter data is reported, not assigned. Raises DataError naming meters the feeder does not have."""
    known = {c.id for c in feeder.customers}
    unknown = [m for m in data.customer_ids if m not in known]
    if unknown:
        raise DataError(f"{data.source}: meter(s) {', '.join(unknown[:10])}{' …' if len(unknown) > 10 else ''} "
                        f"are not customers of feeder {feeder.name!r}; check --feeder or the file")
    column = {cid: i for i, cid in enumerate(data.customer_ids)}
    terminals = {c.id: (int(data.n_terminals[column[c.id]]) if c.id in column else c.n_phases)
                 for c in feeder.customers}
    single = tuple(c.id for c in feeder.customers if terminals[c.id] == 1)
    three = tuple(c.id for c in feeder.customers if terminals[c.id] > 1)
    without = tuple(c.id for c in feeder.customers if c.id not in column)
    n_t = len(data.time_utc)
    everyone = [c.id for c in feeder.customers]
    v = np.full((n_t, len(everyone), 3), np.nan)
    p = np.full((n_t, len(everyone), 3), np.nan)
    for k, cid in enumerate(everyone):
        if cid in column:
            v[:, k], p[:, k] = data.v_v[:, column[cid]], data.p_kw[:, column[cid]]
    full = identify_phases(v_v=v, p_kw=p, n_terminals=np.array([terminals[cid] for cid in everyone]),
                           ref_v_v=data.ref_v_v, ref_p_kw=data.ref_p_kw, method=method, load_complete=not without,
                           names=everyone, time_limit_s=time_limit_s,
                           sensitivity=voltage_sensitivities(feeder))
    rows = np.array([everyone.index(cid) for cid in single], dtype=int)
    results = {m: Assignment(method=a.method, phase=a.phase[rows], confidence=a.confidence[rows],
                             scores=a.scores[rows].reshape(-1, 3), reason=tuple(a.reason[r] for r in rows))
               for m, a in full.items()}
    for m, a in results.items():
        reasons = tuple("no meter data" if cid in without else r for cid, r in zip(single, a.reason, strict=True))
        results[m] = Assignment(method=a.method, phase=a.phase, confidence=a.confidence, scores=a.scores,
                                reason=reasons)
    return IdentificationResult(customer_ids=single, assignments=results, three_phase=three, without_data=without)
