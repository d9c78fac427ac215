"""The default one-day replay against the two engines on the same 1440 load states, all in one run.

    .venv/bin/python benchmarks/replay_day.py [--rounds R] [--pandapower-states N]

Replay and PGM batch are timed alternately for R rounds (the machine is noisy; alternating exposes both to the
same noise) and medians are reported. Prints wall times, steps/s and the ratios:
- replay (whole `phasetwin replay`: load feeder and data, 1440 ticks through bus, power flow, recorder, write
  the run folder) and its tick loop alone;
- power-grid-model's own batch solve of the 1440 states (calculate_power_flow only, same model and options);
- pandapower runpp_3ph state by state (all 1440, or a sample of N extrapolated to 1440).
Acceptance (issue 2): replay ≤ 2 × power-grid-model batch.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from ieee_day import ieee_day_states, pandapower_sample

from phasetwin.run.replay import replay
from phasetwin.run.scenario import Scenario
from twin.powerflow import Engine, create_powerflow


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="alternating replay / PGM batch timings")
    parser.add_argument("--pandapower-states", type=int, default=1440, help="states for runpp_3ph (sample)")
    args = parser.parse_args()

    feeder, p_kw, q_kvar = ieee_day_states()
    n = p_kw.shape[0]

    pgm = create_powerflow(feeder, engine=Engine.PGM)
    pgm.solve(p_kw=p_kw[:2], q_kvar=q_kvar[:2])
    replay_s, loop_s, raw_s, engine_s = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        replay(Scenario(out=Path(tmp) / "warm"))  # imports and first-use costs out of the way
        for _ in range(args.rounds):
            t = time.perf_counter()
            result = replay(Scenario(out=Path(tmp) / "run"))
            replay_s.append(time.perf_counter() - t)
            loop_s.append(result.summary.ticks / result.summary.ticks_per_s)
            raw_s.append(pgm_raw_batch_s(pgm, p_kw, q_kvar))
            t = time.perf_counter()
            engine_result = pgm.solve(p_kw=p_kw, q_kvar=q_kvar)
            engine_s.append(time.perf_counter() - t)
    replay_med, loop_med, raw, pgm_engine_s = (float(np.median(x)) for x in (replay_s, loop_s, raw_s, engine_s))
    ratios = np.array(replay_s) / np.array(raw_s)

    pp_s, pp_result, sample = pandapower_sample(feeder, p_kw, q_kvar, n_states=args.pandapower_states)
    dv = np.abs(pp_result.vm_pu - engine_result.vm_pu[sample]).max()

    print(f"IEEE European LV feeder, {n} one-minute load states, {args.rounds} alternating rounds, medians")
    print(f"{'what':48s} {'wall s':>9s} {'states/s':>10s}")
    rows = [
        ("phasetwin replay (load, 1440 ticks, write)", replay_med),
        ("  of which the tick loop", loop_med),
        ("power-grid-model batch (calculate_power_flow)", raw),
        ("power-grid-model engine solve (batch + results)", pgm_engine_s),
        (f"pandapower runpp_3ph ({len(sample)} states, scaled)", pp_s),
    ]
    for label, seconds in rows:
        print(f"{label:48s} {seconds:9.3f} {n / seconds:10.0f}")
    print(f"ratio replay / PGM batch, per round:  {' '.join(f'{r:.2f}' for r in ratios)}")
    print(f"ratio replay / PGM batch (medians):   {replay_med / raw:6.2f}  (target <= 2)")
    print(f"ratio replay tick loop / PGM batch:   {loop_med / raw:6.2f}")
    print(f"ratio pandapower / replay:            {pp_s / replay_med:6.1f}")
    print(f"max |Δvm| pandapower vs PGM on the sampled states: {dv:.2e} p.u.")


def pgm_raw_batch_s(pgm: object, p_kw: np.ndarray, q_kvar: np.ndarray) -> float:
    """Time PGM's own calculate_power_flow on the batch, with the engine's model and options."""
    from power_grid_model import ComponentType

    from twin import pf_pgm

    assert isinstance(pgm, pf_pgm.PgmPowerFlow)
    update = {ComponentType.asym_load: {"p_specified": p_kw * 1e3, "q_specified": q_kvar * 1e3}}
    t = time.perf_counter()
    pgm.model.calculate_power_flow(
        symmetric=False, error_tolerance=pf_pgm.ERROR_TOLERANCE_PU, max_iterations=pf_pgm.MAX_ITERATIONS,
        calculation_method=pgm.calculation_method, update_data=update, threading=pgm.threading,
        output_component_types=pf_pgm.OUTPUT_REQUEST,
    )
    return time.perf_counter() - t


if __name__ == "__main__":
    main()
