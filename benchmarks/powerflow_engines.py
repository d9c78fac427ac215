"""The power-flow engines on the IEEE European LV feeder's 1440 one-minute load states, in one run.

    .venv/bin/python benchmarks/powerflow_engines.py [--pandapower-states 50] [--repeat 3] [--compare-methods]
                                                     [--quick]

First, on the IEEE circuit written as .dss and imported: OpenDSS's daily solve (OpenDSSDirect.py), the zbus fixed
point alone, the zbus solve (what ``solve`` returns: converged voltages, transformer powers; the per-bus and
per-line arrays are computed on first access), the zbus solve with every array read, and the PGM solve, CPU time,
with ratios to OpenDSS, and zbus's agreement with OpenDSS snapshots and with PGM. The process allocates as a
replay does (``phasetwin/run/memory.py``: every array above 1 MiB its own mapping), except with ``--quick``.
Then zbus against power-grid-model on every bus of the Liège year at 15 minutes (35,040 states, fallbacks
included; ``--quick``: its first day). Then (not with ``--quick``, which runs an hour of IEEE states once):

Prints wall time and states/s of
- power-grid-model, the whole day as one batch (``solve`` with k = 1440, results included);
- power-grid-model, state by state (``solve`` with k = 1, 1440 calls), as the twin does each tick;
- pandapower ``runpp_3ph`` on an evenly spread sample of states, extrapolated to 1440;
and the speed ratios, plus the largest voltage disagreement on the sample. ``--compare-methods`` also times
every PGM calculation method and threading option that ``twin/powerflow/pgm.py`` chooses between.
Batch timings are the best of ``--repeat`` runs (the machine is shared; the minimum is the least disturbed).
"""

from __future__ import annotations

import argparse
import collections
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import numpy as np
from ieee_day import ieee_day_states, load_average, pandapower_sample
from opendss_day import daily_solve_cpu_s, write_circuit
from power_grid_model import CalculationMethod
from support.network_loads import network_loads
from support.opendss_snapshots import snapshot_load_vm_pu  # on the path by opendss_day

from phasetwin.run.inputs import load_inputs
from phasetwin.run.memory import return_large_blocks_to_the_system
from phasetwin.run.scenario import Scenario
from twin.loaders import ieee_european_lv, opendss
from twin.phasing import PhaseMap
from twin.powerflow import RESULT_ARRAYS, Engine, FallbackPowerFlow, PowerFlow, create_powerflow, default_rungs
from twin.powerflow.interface import PowerFlowResult
from twin.powerflow.pgm import PgmPowerFlow
from twin.powerflow.zbus import ZbusPowerFlow

METHODS = (CalculationMethod.newton_raphson, CalculationMethod.iterative_current)
THREADING = (-1, 0, 2)  # sequential, all hardware threads, two threads


def best_batch_s(pf: PowerFlow, p_kw: np.ndarray, q_kvar: np.ndarray, *, repeat: int) -> float:
    pf.solve(p_kw=p_kw[:2], q_kvar=q_kvar[:2])  # first-use costs out of the way
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        pf.solve(p_kw=p_kw, q_kvar=q_kvar)
        times.append(time.perf_counter() - t)
    return min(times)


def per_state_s(pf: PowerFlow, p_kw: np.ndarray, q_kvar: np.ndarray) -> float:
    """Total wall time of solving every state with its own k = 1 call."""
    pf.solve(p_kw=p_kw[:1], q_kvar=q_kvar[:1])
    t = time.perf_counter()
    for s in range(p_kw.shape[0]):
        pf.solve(p_kw=p_kw[s : s + 1], q_kvar=q_kvar[s : s + 1])
    return time.perf_counter() - t


def compare_methods(p_kw: np.ndarray, q_kvar: np.ndarray, *, repeat: int) -> None:
    feeder = ieee_european_lv.load_feeder()
    n = p_kw.shape[0]
    reference = PgmPowerFlow(feeder, calculation_method=CalculationMethod.newton_raphson).solve(
        p_kw=p_kw, q_kvar=q_kvar
    )
    print(f"\npower-grid-model options ({n} states; k=1 over the first 300 states)")
    print(f"{'method':18s} {'threading':>9s} {'batch s':>8s} {'states/s':>9s} {'k=1 ms':>7s} {'max|Δvm| vs NR':>15s}")
    for method in METHODS:
        single_ms = per_state_s(PgmPowerFlow(feeder, calculation_method=method), p_kw[:300], q_kvar[:300]) / 300e-3
        for threading in THREADING:
            pf = PgmPowerFlow(feeder, calculation_method=method, threading=threading)
            batch_s = best_batch_s(pf, p_kw, q_kvar, repeat=repeat)
            dv = np.abs(pf.solve(p_kw=p_kw, q_kvar=q_kvar).vm_pu - reference.vm_pu).max()
            print(f"{method.name:18s} {threading:9d} {batch_s:8.3f} {n / batch_s:9.0f} {single_ms:7.2f} {dv:15.1e}")


def cpu_s(fn: Callable[[], object], *, repeat: int) -> float:
    """Best CPU seconds of ``repeat`` calls (process time: the machine is shared)."""
    fn()
    best = float("inf")
    for _ in range(repeat):
        t = time.process_time()
        fn()
        best = min(best, time.process_time() - t)
    return best


def zbus_vs_opendss(quick: bool) -> None:
    """zbus, PGM and OpenDSS's daily solve on the imported IEEE .dss circuit, in one run, CPU time."""
    with tempfile.TemporaryDirectory() as tmp:
        master = write_circuit(Path(tmp))
        circuit = opendss.read_circuit(master)
        feeder, meter = circuit.feeder, circuit.meter
        assert meter is not None
        phases = PhaseMap.initial(feeder.customers)
        p_kw, q_kvar = phases.to_phases(meter.p_kw[:1440]), phases.to_phases(meter.q_kvar[:1440])
        steps = 60 if quick else 1440
        p_kw, q_kvar = p_kw[:steps], q_kvar[:steps]
        repeat = 1 if quick else 3
        dss_s = min(daily_solve_cpu_s(master, steps=steps) for _ in range(repeat))
        zbus = ZbusPowerFlow(feeder)
        pgm = create_powerflow(feeder, engine=Engine.PGM)
        topo = zbus._topology(zbus._normal_closed)
        s_va = (p_kw + 1j * q_kvar) * 1e3
        s_node = topo.load_power_va(s_va)
        fixed_s = cpu_s(lambda: zbus._fixed_point(topo, s_node), repeat=repeat)
        zbus_s = cpu_s(lambda: zbus.solve(p_kw=p_kw, q_kvar=q_kvar), repeat=repeat)
        zbus_all_s = cpu_s(lambda: read_every_array(zbus.solve(p_kw=p_kw, q_kvar=q_kvar)), repeat=repeat)
        pgm_s = cpu_s(lambda: pgm.solve(p_kw=p_kw, q_kvar=q_kvar), repeat=repeat)
        result = zbus.solve(p_kw=p_kw, q_kvar=q_kvar)
        sample = np.linspace(0, steps - 1, 3 if quick else 24).astype(int)
        snapshots = snapshot_load_vm_pu(master, feeder, p_kw[sample], q_kvar[sample], tolerance=1e-12)
        first_phase = [int(c.phases[0]) for c in feeder.customers]
        expected = snapshots[:, np.arange(len(feeder.customers)), first_phase]
        bus = {b.id: i for i, b in enumerate(feeder.buses)}
        ours = np.array([[result.vm_pu[s, bus[c.bus], int(c.phases[0])] for c in feeder.customers] for s in sample])
        dv_dss = float(np.abs(ours - expected).max())
        dv_pgm = float(np.abs(result.vm_pu - pgm.solve(p_kw=p_kw, q_kvar=q_kvar).vm_pu).max())
    print(f"\nimported IEEE .dss circuit, {steps} one-minute states, CPU seconds (best of {repeat})")
    print(f"{'what':52s} {'cpu s':>8s} {'/ OpenDSS':>10s}")
    for label, seconds in (("OpenDSS daily solve (mode=daily)", dss_s),
                           ("zbus fixed point alone (load voltages)", fixed_s),
                           ("zbus solve (arrays on first access)", zbus_s),
                           ("zbus solve + every array (buses, lines, losses, VUF)", zbus_all_s),
                           ("power-grid-model solve (batch + results)", pgm_s)):
        print(f"{label:52s} {seconds:8.3f} {seconds / dss_s:10.2f}")
    print(f"zbus solve / OpenDSS daily: {zbus_s / dss_s:.3f} (issue 31 target <= 0.1)")
    print(f"ratio PGM / zbus solve + every array: {pgm_s / zbus_all_s:.1f}; zbus builds {zbus.builds}, "
          f"rebuilds {zbus.rebuilds}")
    print(f"zbus vs OpenDSS snapshots, {len(sample)} states, every load phase: max |Δvm| {dv_dss:.1e} p.u.")
    print(f"zbus vs power-grid-model, every bus and state: max |Δvm| {dv_pgm:.1e} p.u.")


def read_every_array(result: PowerFlowResult) -> None:
    for name in RESULT_ARRAYS:
        getattr(result, name)


def liege_vs_pgm(quick: bool) -> None:
    """zbus (with its fallbacks) against power-grid-model (with its own) on every bus of the Liège year."""
    probe = Scenario(feeder="liege-lv", tick_s=900)
    _, table = load_inputs(probe)
    end = table.start_utc + timedelta(days=1) if quick else table.end_utc
    scenario = probe.model_copy(update={"start_utc": table.start_utc.to_pydatetime(), "end_utc": end.to_pydatetime()})
    feeder, p_kw, q_kvar = network_loads(scenario)
    engines = {engine: FallbackPowerFlow(create_powerflow(feeder, engine=engine),
                                         rungs=default_rungs(feeder, engine=engine))
               for engine in (Engine.ZBUS, Engine.PGM)}
    results, seconds = {}, {}
    for engine, flow in engines.items():
        t = time.process_time()
        results[engine] = result = flow.solve(p_kw=p_kw, q_kvar=q_kvar)
        read_every_array(result)
        seconds[engine] = time.process_time() - t
    ours, theirs = results[Engine.ZBUS], results[Engine.PGM]
    dv = float(np.abs(ours.vm_pu - theirs.vm_pu).max())
    di = float(np.abs(ours.i_ka - theirs.i_ka).max())
    print(f"\nLiège {scenario.start_utc:%Y-%m-%d} .. {scenario.end_utc:%Y-%m-%d}, {p_kw.shape[0]} states at 15 min, "
          f"{len(feeder.buses)} buses, CPU s: zbus {seconds[Engine.ZBUS]:.2f}, power-grid-model "
          f"{seconds[Engine.PGM]:.2f}")
    print(f"zbus vs power-grid-model, every bus and state: max |Δvm| {dv:.1e} p.u., max |Δi| {di * 1e3:.1e} A; "
          f"fallbacks zbus {fallback_counts(ours)}, power-grid-model {fallback_counts(theirs)}")


def fallback_counts(result: PowerFlowResult) -> dict[str, int]:
    return dict(sorted(collections.Counter(kind.value for kind in result.fallbacks.values()).items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pandapower-states", type=int, default=50,
                        help="sampled states for runpp_3ph (0 leaves pandapower out)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each batch timing; the best is shown")
    parser.add_argument("--compare-methods", action="store_true", help="also time every PGM method/threading")
    parser.add_argument("--quick", action="store_true", help="an hour of states, one run each, no pandapower")
    args = parser.parse_args()
    if args.pandapower_states < 0:
        parser.error(f"--pandapower-states is {args.pandapower_states}; expected 0 (leave pandapower out) or more")
    print(f"load average: {load_average()}")
    if not args.quick:
        return_large_blocks_to_the_system()  # as a replay does
    zbus_vs_opendss(args.quick)
    liege_vs_pgm(args.quick)
    print(f"load average: {load_average()}")
    if args.quick:
        return

    feeder, p_kw, q_kvar = ieee_day_states()
    n = p_kw.shape[0]

    pgm = create_powerflow(feeder, engine=Engine.PGM)
    batch_s = best_batch_s(pgm, p_kw, q_kvar, repeat=args.repeat)
    day_result = pgm.solve(p_kw=p_kw, q_kvar=q_kvar)
    single_s = per_state_s(pgm, p_kw, q_kvar)
    zbus = create_powerflow(feeder, engine=Engine.ZBUS)
    zbus_single_s = per_state_s(zbus, p_kw, q_kvar)

    pandapower = None
    if args.pandapower_states > 0:
        pp_s, pp_result, sample = pandapower_sample(feeder, p_kw, q_kvar, n_states=args.pandapower_states)
        dv = np.abs(pp_result.vm_pu - day_result.vm_pu[sample]).max()
        di = np.abs(pp_result.loading - day_result.loading[sample]).max()
        pandapower = (pp_s, len(sample), dv, di)

    pgm_engine = pgm if isinstance(pgm, PgmPowerFlow) else None
    options = f"{pgm_engine.calculation_method.name}, threading {pgm_engine.threading}" if pgm_engine else ""
    print(f"\nIEEE European LV feeder: {len(feeder.buses)} buses, {len(feeder.lines)} lines, "
          f"{len(feeder.customers)} customers; {n} one-minute states; PGM {options}; wall time")
    print(f"{'what':52s} {'wall s':>8s} {'states/s':>9s} {'ms/state':>9s}")
    rows = [
        (f"power-grid-model, one batch of {n}", batch_s),
        (f"power-grid-model, {n} calls with k = 1", single_s),
        (f"zbus, {n} calls with k = 1", zbus_single_s),
    ]
    if pandapower is not None:
        rows.append((f"pandapower runpp_3ph, {pandapower[1]} states scaled to {n}", pandapower[0]))
    for label, seconds in rows:
        print(f"{label:52s} {seconds:8.3f} {n / seconds:9.0f} {seconds / n * 1e3:9.3f}")
    print(f"ratio PGM k=1 loop / PGM batch:   {single_s / batch_s:7.1f}")
    print(f"ratio PGM k=1 loop / zbus k=1:    {single_s / zbus_single_s:7.1f}")
    if pandapower is not None:
        pp_s, _, dv, di = pandapower
        print(f"ratio pandapower / PGM batch:     {pp_s / batch_s:7.0f}")
        print(f"pandapower vs PGM on the sample: max |Δvm| {dv:.1e} p.u., max |Δloading| {di:.1e}")

    if args.compare_methods:
        compare_methods(p_kw, q_kvar, repeat=args.repeat)


if __name__ == "__main__":
    main()
