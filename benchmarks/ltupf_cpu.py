"""A ``phasetwin replay`` that also reports what the controller's LTUPF check and its repair MILP cost in CPU.

    PHASETWIN_SHARED_DATA=/work/shared/data PYTHONPATH=$PWD .venv/bin/python benchmarks/ltupf_cpu.py OUT.json \\
        replay --feeder liege-lv --start 2016-01-12T00:00Z --end 2016-01-14T00:00Z --tick 900 --no-baseline --out DIR

    PYTHONPATH=$PWD .venv/bin/python benchmarks/ltupf_cpu.py --quick   # two hours of a Liège January day

Everything after OUT.json is ``phasetwin``'s command line. The replay runs as usual; the thread CPU of every
``LtupfGuard._check`` (the check, prepared ahead or at a decision, with its repair by moves and MILP) and of every
repair MILP (``find_feasible_phases``) is summed and written to OUT.json: ``check_cpu_s``, ``checks``,
``milp_cpu_s``, ``milps``. Run it with another checkout on PYTHONPATH (and as cwd) to measure that code the same way:
it wraps the two functions from outside, it changes nothing in them. Thread CPU, not process CPU: the controller's
search ahead runs in other threads at the same time. Used for docs/controller/README.md ("What the LTUPF check and
repair cost").
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _timed(fn: Callable[..., Any], totals: dict[str, float], cpu_key: str, count_key: str,
           lock: threading.Lock) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            with lock:
                totals[cpu_key] += time.thread_time() - start
                totals[count_key] += 1
    return wrapper


QUICK = ["replay", "--feeder", "liege-lv", "--start", "2016-01-12T16:00Z", "--end", "2016-01-12T18:00Z", "--tick",
         "900", "--no-baseline"]
"""``--quick``: the evening peak of a Liège January day, where the check repairs."""


def main() -> None:
    if sys.argv[1:] == ["--quick"]:
        with tempfile.TemporaryDirectory() as tmp:
            measure(Path(tmp) / "ltupf_cpu.json", [*QUICK, "--out", str(Path(tmp) / "run")])
        return
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    measure(Path(sys.argv[1]), sys.argv[2:])


def measure(out: Path, args: list[str]) -> None:
    """``phasetwin`` ``args`` with the check and the repair MILP timed; the totals written to ``out`` and printed."""
    import controllers.online.feasibility as feasibility
    from phasetwin.cli.main import app

    totals = {"check_cpu_s": 0.0, "checks": 0.0, "milp_cpu_s": 0.0, "milps": 0.0}
    lock = threading.Lock()
    guard = feasibility.LtupfGuard
    check, find = guard._check, feasibility.find_feasible_phases
    guard._check = _timed(check, totals, "check_cpu_s", "checks", lock)  # type: ignore[method-assign]
    feasibility.find_feasible_phases = _timed(find, totals, "milp_cpu_s", "milps", lock)
    argv = sys.argv
    sys.argv = ["phasetwin", *args]
    try:
        app(standalone_mode=False)
    finally:
        sys.argv = argv
        guard._check = check  # type: ignore[method-assign]
        feasibility.find_feasible_phases = find
        out.write_text(json.dumps(totals))
        print(json.dumps(totals))


if __name__ == "__main__":
    main()
