"""What the online controller's search costs and what it buys: search CPU against P_unb on Liège windows (issue 28).

    PHASETWIN_SHARED_DATA=/work/shared/data PYTHONPATH=.:benchmarks .venv/bin/python benchmarks/search_cost.py \
        [--windows Jan,Jun,Mar,Oct] [--config NAME=JSON ...] [--anchor-code DIR] [--jobs N] [--out DIR] [--quick]

Replays each window (2016-MM-12 00:00 – MM-14 00:00 UTC at 900 s, ``phasetwin replay --feeder liege-lv
--no-baseline``, the default fleet and objective) once per configuration, each in its own subprocess: ``this``
(this code's defaults), every ``--config NAME=JSON`` (this code with those ``SolverSettings`` values over
``default_solver``'s, e.g. ``K1='{"neighbourhood_max": 1}'``) and, with ``--anchor-code DIR``, ``anchor`` (the
code at DIR with its defaults, e.g. a checkout of main). The subprocess wraps ``improve.descend`` and
``improve.fix_and_optimise`` to count the CPU time of the thread that runs them (the search: descents, battery
LPs, local searches, neighbourhood MILPs). Printed per window and configuration: search CPU (MILP passes and
descents apart, and the passes run), decision CPU (``decide_cpu_s_total``), the replay's process CPU (``os.wait4``),
P_unb (kWh, the ``p_unb_kw_f*`` columns of ``metrics.parquet`` × tick) against the first configuration, and the
load average after the replay; then the sums over the windows. ``--jobs`` replays run at once: compare CPU
times, not wall times, on a loaded machine. ``--quick``: the first 3 hours of January only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _child(overrides: str, stats_path: str, cli_args: list[str]) -> None:
    """The replay in this process, with ``overrides`` (JSON) over ``default_solver`` and the search's CPU counted
    into ``stats_path`` (JSON) at exit. Runs under the PYTHONPATH of the code measured."""
    import atexit
    import runpy

    import controllers.online.improve as improve
    import controllers.online.settings as settings
    import controllers.online.solve as solve

    values = json.loads(overrides)
    if values:
        default_solver = settings.default_solver
        settings.default_solver = lambda **kw: default_solver(**(values | kw))  # type: ignore[assignment]
    stats = {"descent_s": 0.0, "descents": 0, "milp_passes_s": 0.0, "milp_passes": 0}

    def counted(fn: Callable[..., Any], seconds: str, calls: str) -> Callable[..., Any]:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            started = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                stats[seconds] += time.thread_time() - started
                stats[calls] += 1
        return wrapped

    improve.descend = solve.descend = counted(improve.descend, "descent_s", "descents")  # type: ignore[assignment]
    improve.fix_and_optimise = solve.fix_and_optimise = counted(  # type: ignore[assignment]
        improve.fix_and_optimise, "milp_passes_s", "milp_passes")
    atexit.register(lambda: Path(stats_path).write_text(json.dumps(stats)))
    sys.argv = ["phasetwin", *cli_args]
    runpy.run_module("phasetwin.cli.main", run_name="__main__")


def windows(names: list[str], quick: bool) -> list[tuple[str, list[str]]]:
    """``phasetwin replay`` arguments of each named month's window (2016-MM-12, two days; ``quick``: 3 hours)."""
    out = []
    for name in names:
        start = datetime(2016, _MONTHS.index(name) + 1, 12, tzinfo=UTC)
        end = start + (timedelta(hours=3) if quick else timedelta(days=2))
        out.append((name, ["replay", "--feeder", "liege-lv", "--start", start.strftime("%Y-%m-%dT%H:%MZ"),
                           "--end", end.strftime("%Y-%m-%dT%H:%MZ"), "--tick", "900", "--no-baseline"]))
    return out


def run(root: Path, overrides: str, cli_args: list[str], folder: Path) -> dict[str, float]:
    """One replay of the code at ``root`` in a subprocess: the search's CPU, decision CPU, process CPU, P_unb."""
    stats_path = folder.parent / f"{folder.name}.search.json"
    env = dict(os.environ, PHASETWIN_SHARED_DATA=os.environ.get("PHASETWIN_SHARED_DATA", "/work/shared/data"),
               PYTHONPATH=str(root))
    with (folder.parent / f"{folder.name}.stderr").open("w") as err:
        proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--child", overrides, str(stats_path),
                                 "--", *cli_args, "--out", str(folder)], cwd=root, env=env,
                                stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait for it again
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, proc.args)
    summary = json.loads((folder / "summary.json").read_text())
    stats = json.loads(stats_path.read_text())
    p_unb = float(np.nansum(pd.read_parquet(folder / "metrics.parquet").filter(like="p_unb_kw_f").to_numpy())
                  * summary["tick_s"] / 3600.0)
    return {"search": stats["descent_s"] + stats["milp_passes_s"], "milp": stats["milp_passes_s"],
            "descent": stats["descent_s"], "passes": stats["milp_passes"],
            "decide": float(summary["controller"].get("decide_cpu_s_total", float("nan"))),
            "process": usage.ru_utime + usage.ru_stime, "p_unb": p_unb, "load": os.getloadavg()[0]}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[3], sys.argv[5:])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--windows", default="Jan,Jun,Mar,Oct", help="months, comma-separated")
    parser.add_argument("--config", action="append", default=[], metavar="NAME=JSON",
                        help="this code with these SolverSettings values")
    parser.add_argument("--anchor-code", type=Path, default=None, help="another checkout, run with its defaults")
    parser.add_argument("--jobs", type=int, default=1, help="replays at once")
    parser.add_argument("--out", type=Path, default=None, help="keep the run folders here")
    parser.add_argument("--quick", action="store_true", help="the first 3 hours of January only")
    args = parser.parse_args()
    here = Path(__file__).resolve().parents[1]
    configs = [("this", here, "{}")] + [(c.split("=", 1)[0], here, c.split("=", 1)[1]) for c in args.config]
    if args.anchor_code is not None:
        configs.insert(0, ("anchor", args.anchor_code.resolve(), "{}"))
    wins = windows(["Jan"] if args.quick else args.windows.split(","), args.quick)
    out = args.out or Path(tempfile.mkdtemp(prefix="search-cost-"))
    out.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {(w, c): pool.submit(run, root, overrides, cli, out / f"{w}-{c}")
                   for w, cli in wins for c, root, overrides in configs}
        done = {key: future.result() for key, future in futures.items()}
    print(f"{'window':6s} {'config':8s} {'search s':>8s} {'MILPs s':>8s} {'descent s':>9s} {'passes':>6s} "
          f"{'decide s':>8s} {'process s':>9s} {'P_unb kWh':>9s} {'vs first':>8s}  load after")
    totals = {c: np.zeros(5) for c, _, _ in configs}
    for w, _ in wins:
        first = done[(w, configs[0][0])]
        for c, _, _ in configs:
            r = done[(w, c)]
            totals[c] += [r["search"], r["milp"], r["decide"], r["process"], r["p_unb"]]
            print(f"{w:6s} {c:8s} {r['search']:8.2f} {r['milp']:8.2f} {r['descent']:9.2f} {r['passes']:6.0f} "
                  f"{r['decide']:8.2f} {r['process']:9.1f} {r['p_unb']:9.2f} "
                  f"{100 * (r['p_unb'] / first['p_unb'] - 1):+7.2f}%  {r['load']:.1f}")
    base = totals[configs[0][0]]
    for c, _, _ in configs:
        t = totals[c]
        print(f"all    {c:8s} search {t[0]:7.2f} s ({base[0] / max(t[0], 1e-9):.2f}× less than {configs[0][0]}), "
              f"MILPs {t[1]:7.2f} s, decide {t[2]:7.2f} s, process {t[3]:7.1f} s, P_unb {t[4]:8.2f} kWh "
              f"({100 * (t[4] / base[4] - 1):+.2f} %)")
    print(f"run folders: {out}")


if __name__ == "__main__":
    main()
