"""The whole Liège year at 15-minute ticks, network only, with the default engine: it runs to its end and the
hard ticks are solved by a power-flow fallback.

    PHASETWIN_SHARED_DATA=../shared/data .venv/bin/python benchmarks/liege_year.py [--out runs/liege-year]

Prints the wall time, ticks per second, the fallbacks by kind and the ticks they solved, the ticks no engine
solved, and the peak resident memory of the process. Before the fallback ladder the run stopped at tick 33068
(2016-12-10T10:00Z): power-grid-model's 30 iterations do not reach its 0.55 p.u. solution.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

from twin.app.runner import load_inputs, replay
from twin.app.scenario import Scenario


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/liege-year"))
    args = parser.parse_args()
    probe = Scenario(feeder="liege-lv", tick_s=900)
    _, table = load_inputs(probe)
    scenario = probe.model_copy(update={"start_utc": table.start_utc.to_pydatetime(),
                                        "end_utc": table.end_utc.to_pydatetime(), "out": args.out})
    started = time.perf_counter()
    result = replay(scenario)
    wall_s = time.perf_counter() - started
    s = result.summary
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{s.feeder} {s.start_utc} .. {s.end_utc}: {s.ticks} ticks of {s.tick_s} s in {wall_s:.1f} s "
          f"({s.ticks / wall_s:.0f} ticks/s), peak RSS {peak_mb:.0f} MB")
    print(f"power-flow fallbacks by kind: {s.powerflow['fallbacks'] or 'none'}; ticks no engine solved: "
          f"{s.powerflow['ticks_skipped']}")
    for entry in s.powerflow["fallback_ticks"]:
        print(f"  tick {entry['tick']} {entry['time_utc']}: {entry['kind']}")
    print(f"lowest voltage: {min(s.vm_min_pu.a, s.vm_min_pu.b, s.vm_min_pu.c):.4f} p.u.")


if __name__ == "__main__":
    main()
