"""Figure and report overhead on the default replay (`./scripts/replay`: the IEEE day, 10 PSD + 2 PESS under the
rolling MILP, then the same fleet without a controller), all in one run.

    .venv/bin/python benchmarks/report.py [--rounds R]

Runs both replays once (as `phasetwin replay` does), then writes both runs' figures and reports (as the command
does at its end) R times; prints the wall times and the report share of the whole command. Acceptance (issue 19):
≤ 10 % of the default run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from controllers.online.settings import ControllerSettings, Strategy
from devices.fleet import FleetSpec
from phasetwin.report.html import write_report
from phasetwin.run.replay import replay
from phasetwin.run.scenario import Scenario

QUICK_DAY = datetime(2024, 1, 15, tzinfo=UTC)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a smoke run: one round of two-hour replays")
    args = parser.parse_args()
    if args.quick:
        args.rounds = 1
    period = {"start_utc": QUICK_DAY, "end_utc": QUICK_DAY + timedelta(hours=2)} if args.quick else {}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "latest"
        scenario = Scenario(fleet=FleetSpec(psd=10, pess=2), controller=ControllerSettings(
            strategy=Strategy.ROLLING_MILP), out=out, **period)
        t0 = time.perf_counter()
        replay(scenario)
        t1 = time.perf_counter()
        replay(scenario.model_copy(update={"controller": ControllerSettings(strategy=Strategy.NONE),
                                           "out": out / "no-control"}))
        t2 = time.perf_counter()
        report_s = []
        for _ in range(args.rounds):
            s = time.perf_counter()
            write_report(out / "no-control")
            write_report(out, baseline=out / "no-control")
            report_s.append(time.perf_counter() - s)
    runs_s = t2 - t0
    med = statistics.median(report_s)
    print(f"controlled replay {t1 - t0:.1f} s, no-control replay {t2 - t1:.1f} s, both {runs_s:.1f} s")
    print(f"figures + report of both runs: {', '.join(f'{r:.2f}' for r in report_s)} s (median {med:.2f} s; "
          "the first includes importing matplotlib)")
    print(f"report share of the command: first {report_s[0] / (runs_s + report_s[0]) * 100:.1f} %, "
          f"median {med / (runs_s + med) * 100:.1f} %")


if __name__ == "__main__":
    main()
