"""Phase identification: accuracy of each method vs meter class, resolution, days of data and share metered.

The twin replays the feeder once on its true phases (network-only); every case below then draws meter readings
(``twin/smart_meter.py``) with fixed seeds and identifies. Reported per case: the worst and mean accuracy over
the seeds (share of single-phase customers whose best phase is right), and calibration: the share flagged
high-confidence (≥ 0.99) and how many of those are right (pooled over seeds). At the end, the confusion matrix
of the worst case at class 1.0.

    .venv/bin/python benchmarks/phase_identification.py            # IEEE day, and the Liège month if present
    .venv/bin/python benchmarks/phase_identification.py --quick    # one seed, the IEEE day
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from controllers.identification import Method, confusion_matrix
from phasetwin.run.meter_readings import TrueReadings, meter_voltages, run_identification, true_readings
from phasetwin.run.scenario import Scenario
from twin.smart_meter import MeterModel

METHODS = (Method.CORRELATION, Method.ENERGY)


def _case(truth: TrueReadings, *, seeds: list[int], label: str, metered_share: float = 1.0,
          **model: float | int) -> tuple[str, dict[str, list[float]], dict[str, tuple[int, int]], dict]:
    true_phase = {c.id: int(c.phases[0]) for c in truth.feeder.customers if c.n_phases == 1}
    acc: dict[str, list[float]] = {m.value: [] for m in METHODS}
    high: dict[str, tuple[int, int]] = {m.value: (0, 0) for m in METHODS}
    worst: dict = {}
    for seed in seeds:
        metered = None
        if metered_share < 1.0:
            rng = np.random.default_rng(1000 + seed)
            metered = rng.random(len(truth.feeder.customers)) < metered_share
        data = meter_voltages(truth, model=MeterModel(seed=seed, **model), metered=metered)  # type: ignore[arg-type]
        result = run_identification(truth.feeder, data, method=Method.BOTH)
        ids = [cid for cid in result.customer_ids if cid not in result.without_data]
        rows = np.array([result.customer_ids.index(cid) for cid in ids])
        t = np.array([true_phase[cid] for cid in ids])
        for m in METHODS:
            a = result.assignments[m]
            right = a.phase[rows] == t
            acc[m.value].append(float(right.mean()))
            hi = ~a.flagged()[rows]
            n_hi, n_ok = high[m.value]
            high[m.value] = (n_hi + int(hi.sum()), n_ok + int(right[hi].sum()))
            if m.value not in worst or acc[m.value][-1] < worst[m.value][0]:
                worst[m.value] = (acc[m.value][-1], confusion_matrix(
                    type(a)(method=a.method, phase=a.phase[rows], confidence=a.confidence[rows],
                            scores=a.scores[rows], reason=tuple(a.reason[r] for r in rows)), t))
    return label, acc, high, worst


def _print(rows: list[tuple[str, dict[str, list[float]], dict[str, tuple[int, int]], dict]], title: str) -> None:
    print(f"\n{title}")
    print(f"{'case':<34} {'method':<12} {'worst':>7} {'mean':>7} {'high-conf.':>11} {'right of those':>15}")
    for label, acc, high, _ in rows:
        for m in METHODS:
            n_hi, n_ok = high[m.value]
            total = len(acc[m.value])
            print(f"{label:<34} {m.value:<12} {min(acc[m.value]):>7.1%} {np.mean(acc[m.value]):>7.1%} "
                  f"{n_hi:>5} runs·c {n_ok / n_hi if n_hi else 1.0:>14.1%}" if total else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 seed instead of 5, the IEEE day only")
    parser.add_argument("--feeders", default="ieee,liege", help="which feeders: ieee, liege or both (default)")
    args = parser.parse_args()
    seeds = [1] if args.quick else [1, 2, 3, 4, 5]
    if args.quick:
        args.feeders = "ieee"
    work = Path(tempfile.mkdtemp(prefix="phase-id-"))
    started = time.perf_counter()
    if "ieee" in args.feeders:
        _ieee(work, seeds)
    if "liege" in args.feeders:
        _liege(work, seeds)
    print(f"\n{time.perf_counter() - started:.0f} s in all")


def _ieee(work: Path, seeds: list[int]) -> None:
    ieee = true_readings(Scenario(out=work / "ieee"))
    rows = [_case(ieee, seeds=seeds, label=f"class {c}, 15 min", accuracy_class=c, resolution_s=900)
            for c in (0.2, 0.5, 1.0, 2.0)]
    _print(rows, f"IEEE European LV, 55 single-phase customers, 1 day, 1-minute twin; {len(seeds)} seeds")
    res = [_case(ieee, seeds=seeds, label=f"class 1.0, {r // 60} min", accuracy_class=1.0, resolution_s=r)
           for r in (300, 1800, 3600)]
    _print(res, "resolution (class 1.0)")
    cov = [_case(ieee, seeds=seeds, label=f"class 1.0, 15 min, {int(s * 100)} % metered", metered_share=s,
                 accuracy_class=1.0, resolution_s=900) for s in (0.75, 0.5)]
    _print(cov, "share of customers metered (accuracy among the metered; unmetered load is residual)")
    ref = [_case(ieee, seeds=seeds, label="class 1.0, reference class 1.0", accuracy_class=1.0,
                 reference_class=1.0, resolution_s=900)]
    _print(ref, "transformer meter as coarse as the customers' (default reference: class 0.2)")
    label, _, _, worst = rows[2]
    for m in METHODS:
        print(f"\nconfusion, {label}, {m.value}, worst seed ({worst[m.value][0]:.1%}); rows true A/B/C, "
              f"columns A/B/C/not assigned:\n{worst[m.value][1]}")


def _liege(work: Path, seeds: list[int]) -> None:
    try:
        liege = true_readings(Scenario(feeder="liege-lv", tick_s=900, start_utc=datetime(2016, 6, 1, tzinfo=UTC),
                                       end_utc=datetime(2016, 7, 1, tzinfo=UTC), out=work / "liege"))
    except Exception as err:
        print(f"\nLiège skipped: {err}")
    else:
        n = len(liege.time_utc)
        days = []
        for d in (1, 7, 30):
            part = TrueReadings(feeder=liege.feeder, time_utc=liege.time_utc[: d * 96], tick_s=900,
                                v_v=liege.v_v[: d * 96], ref_v_v=liege.ref_v_v[: d * 96],
                                ref_p_kw=liege.ref_p_kw[: d * 96], p_kw=liege.p_kw[: d * 96], p_step_s=900)
            days.append(_case(part, seeds=seeds[:3], label=f"class 0.5, {d} day(s)", accuracy_class=0.5,
                              resolution_s=900))
        days.append(_case(liege, seeds=seeds[:3], label="class 1.0, 30 days", accuracy_class=1.0,
                          resolution_s=900))
        _print(days, f"Liège LV, {sum(c.n_phases == 1 for c in liege.feeder.customers)} single-phase of "
                     f"{len(liege.feeder.customers)} customers, June 2016, 15-minute data ({n} intervals)")


if __name__ == "__main__":
    main()
