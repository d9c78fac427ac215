"""The network-only one-day replay against OpenDSS's daily solve and the engines on the same load states, in one
run.

    .venv/bin/python benchmarks/replay_day.py [--rounds R] [--pandapower-states N] [--engine zbus] [--quick]

Replay (network only: no devices, no controller, no baseline; the default engine) and OpenDSS's daily solve of
the same circuit (``mode=daily number=1440``, OpenDSSDirect.py) are timed alternately for R rounds in CPU time
(the machine is noisy; alternating exposes both to the same noise), medians reported. Prints CPU s, steps/s and
the ratios:
- replay (whole ``phasetwin replay``: load feeder and data, 1440 ticks through bus, power flow, recorder, write
  the run folder; its ``wall_s``) and its tick loop alone;
- OpenDSS's daily solve; power-grid-model's own batch (calculate_power_flow only); the engine's solve;
- pandapower runpp_3ph on a sample of N states, extrapolated to 1440 (0: left out);
- the controlled default day (``--controlled``: 10 PSDs and 2 PESS under the default controller, once): the
  power-flow re-solves' share of the run's CPU (summary ``powerflow.resolve_cpu_s``; a re-solve is a tick whose
  inputs a device changed after it was solved ahead) and the engine's rebuilds.
- ``--tiled-days N`` (with ``--anchor-code DIR``): the day tiled to N days, network only, each replayed in a fresh
  process (``replay_length.py``) with this code and with the anchor code (an earlier checkout), alternately: CPU
  ratio of the two and peak RSS N days / 1 day.
Acceptance (issue 31): replay wall_s <= 1.0 x OpenDSS's daily solve; the zbus solve <= 0.1 x; re-solves <= 10 % of
the controlled run, 0 rebuilds; 28 days in <= 1/5 of the anchor code's CPU, peak RSS 28 d / 1 d <= 1.10.
``--quick``: one round of an hour (the controlled run too), no tiled days.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from ieee_day import ieee_day_states, load_average, pandapower_sample
from opendss_day import daily_solve_cpu_s, write_circuit
from replay_length import ROOT, replay_peak_rss, tiled_day

from phasetwin.run.options import ScenarioOptions
from phasetwin.run.replay import replay
from phasetwin.run.scenario import Scenario
from twin.powerflow import RESULT_ARRAYS, Engine, create_powerflow
from twin.powerflow.pgm import ERROR_TOLERANCE_PU, MAX_ITERATIONS, OUTPUT_REQUEST, PgmPowerFlow

DAY = datetime(2024, 1, 15, tzinfo=UTC)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="alternating replay / OpenDSS timings")
    parser.add_argument("--pandapower-states", type=int, default=20, help="states for runpp_3ph (sample; 0: none)")
    parser.add_argument("--engine", type=Engine, default=Engine.ZBUS, help="the replay's power-flow engine")
    parser.add_argument("--controlled", action=argparse.BooleanOptionalAction, default=True,
                        help="also the controlled default day's re-solve share")
    parser.add_argument("--tiled-days", type=int, default=0, help="also the day tiled to this many days (0: no)")
    parser.add_argument("--anchor-code", type=Path, default=None, help="earlier checkout to time the tiled run")
    parser.add_argument("--quick", action="store_true", help="one round of the first hour, no pandapower")
    args = parser.parse_args()
    rounds, pp_states = (1, 0) if args.quick else (args.rounds, args.pandapower_states)
    steps = 60 if args.quick else 1440
    print(f"load average: {load_average()}")

    feeder, p_kw, q_kvar = ieee_day_states()
    p_kw, q_kvar = p_kw[:steps], q_kvar[:steps]
    n = p_kw.shape[0]
    pgm = PgmPowerFlow(feeder)
    engine = create_powerflow(feeder, engine=args.engine)
    engine.solve(p_kw=p_kw[:2], q_kvar=q_kvar[:2])
    scenario = {"start_utc": DAY, "end_utc": DAY + timedelta(minutes=steps), "engine": args.engine}
    replay_cpu, replay_wall, loop_s, dss_s, raw_s, engine_s, arrays_s = [], [], [], [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        master = write_circuit(Path(tmp) / "dss")
        replay(Scenario(out=Path(tmp) / "warm", **scenario))  # imports and first-use costs out of the way
        for _ in range(rounds):
            t = time.process_time()
            result = replay(Scenario(out=Path(tmp) / "run", **scenario))
            replay_cpu.append(time.process_time() - t)
            replay_wall.append(result.summary.wall_s)
            loop_s.append(result.summary.ticks / result.summary.ticks_per_s)
            dss_s.append(daily_solve_cpu_s(master, steps=steps))
            raw_s.append(pgm_raw_batch_s(pgm, p_kw, q_kvar))
            t = time.process_time()
            solved = engine.solve(p_kw=p_kw, q_kvar=q_kvar)
            engine_s.append(time.process_time() - t)
            for name in RESULT_ARRAYS:  # arrays an engine may compute on first access
                getattr(solved, name)
            arrays_s.append(time.process_time() - t)
    med = {name: float(np.median(x)) for name, x in (("replay", replay_cpu), ("wall", replay_wall), ("loop", loop_s),
                                                   ("dss", dss_s), ("raw", raw_s), ("engine", engine_s),
                                                   ("arrays", arrays_s))}
    print(f"IEEE European LV feeder, {n} one-minute load states, network only, engine {args.engine}, "
          f"{rounds} alternating round(s), medians")
    print(f"{'what':52s} {'s':>9s} {'states/s':>10s} {'/ OpenDSS':>10s}")
    rows = [
        ("phasetwin replay, CPU (load, ticks, write)", med["replay"]),
        ("phasetwin replay, summary wall_s", med["wall"]),
        ("  of which the tick loop (wall)", med["loop"]),
        ("OpenDSS daily solve, CPU", med["dss"]),
        ("power-grid-model batch (calculate_power_flow), wall", med["raw"]),
        (f"{args.engine} engine solve (batch; arrays deferred), CPU", med["engine"]),
        (f"{args.engine} engine solve + every result array, CPU", med["arrays"]),
    ]
    if pp_states:
        pp_s, _, sample = pandapower_sample(feeder, p_kw, q_kvar, n_states=pp_states)
        rows.append((f"pandapower runpp_3ph ({len(sample)} states, scaled), wall", pp_s))
    for label, seconds in rows:
        print(f"{label:52s} {seconds:9.3f} {n / seconds:10.0f} {seconds / med['dss']:10.2f}")
    print(f"ratio replay wall_s / OpenDSS daily, per round: "
          f"{' '.join(f'{w / d:.2f}' for w, d in zip(replay_wall, dss_s, strict=True))}  (target <= 1.0)")
    print(f"ratio replay CPU / OpenDSS daily, per round: "
          f"{' '.join(f'{c / d:.2f}' for c, d in zip(replay_cpu, dss_s, strict=True))}")
    if args.controlled:
        controlled_share(steps=steps)
    if args.tiled_days and not args.quick:
        tiled(args.tiled_days, anchor=args.anchor_code)
    print(f"load average: {load_average()}")


def tiled(days: int, *, anchor: Path | None) -> None:
    """1 and ``days`` days network only, each in a fresh process, this code then the anchor code."""
    codes = [("this code", ROOT)] + ([("anchor code", anchor.resolve())] if anchor is not None else [])
    runs: dict[tuple[str, int], tuple[float, float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in (1, days):
            data = Path(tmp) / f"ieee_{n}d.parquet"
            end = tiled_day(n, data)
            for label, code in codes:
                out = Path(tmp) / f"{label[:4]}_{n}d"
                runs[label, n] = replay_peak_rss(data, end, out, flush_ticks=None, code=code)
                rss, wall, cpu = runs[label, n]
                print(f"  {n:3d} day(s), {label}: CPU {cpu:7.1f} s, wall {wall:7.1f} s, peak RSS {rss:7.1f} MB "
                      f"(load {load_average()})", flush=True)
    ours = runs["this code", days]
    print(f"tiled {days} days: peak RSS {days} d / 1 d = {ours[0] / runs['this code', 1][0]:.3f} (target <= 1.10)")
    if anchor is not None:
        print(f"tiled {days} days: CPU this code / anchor code = {ours[2] / runs['anchor code', days][2]:.3f} "
              f"(target <= 0.2); 1 day: {runs['this code', 1][2] / runs['anchor code', 1][2]:.3f}")


def controlled_share(*, steps: int) -> None:
    """The controlled default day (``phasetwin replay``'s defaults: 10 PSDs, 2 PESS, rolling MILP): what its
    power-flow solves and re-solves cost of the run's CPU."""
    with tempfile.TemporaryDirectory() as tmp:
        scenario = ScenarioOptions(start=DAY, end=DAY + timedelta(minutes=steps), out=Path(tmp) / "controlled")
        t = time.process_time()
        result = replay(scenario.scenario())
        run_cpu_s = time.process_time() - t
    s, pf = result.summary, result.summary.powerflow
    print(f"controlled day ({scenario.psd} PSD, {scenario.pess} PESS, {s.controller.get('strategy')}): "
          f"run CPU {run_cpu_s:.2f} s, "
          f"{s.powerflow_solves} solves of {s.states_solved} states, {pf['resolves']} re-solves, "
          f"{pf['rebuilds']} rebuilds")
    print(f"  power flow {pf['solve_cpu_s']:.3f} s CPU ({100 * pf['solve_cpu_s'] / run_cpu_s:.1f} % of the run), "
          f"re-solves {pf['resolve_cpu_s']:.3f} s ({100 * pf['resolve_cpu_s'] / run_cpu_s:.1f} %, target <= 10 %)")


def pgm_raw_batch_s(pgm: PgmPowerFlow, p_kw: np.ndarray, q_kvar: np.ndarray) -> float:
    """Time PGM's own calculate_power_flow on the batch, with the engine's model and options."""
    from power_grid_model import ComponentType

    update = {ComponentType.asym_load: {"p_specified": p_kw * 1e3, "q_specified": q_kvar * 1e3}}
    t = time.perf_counter()
    pgm.model.calculate_power_flow(
        symmetric=False, error_tolerance=ERROR_TOLERANCE_PU, max_iterations=MAX_ITERATIONS,
        calculation_method=pgm.calculation_method, update_data=update, threading=pgm.threading,
        output_component_types=OUTPUT_REQUEST,
    )
    return time.perf_counter() - t


if __name__ == "__main__":
    main()
