"""A ``phasetwin replay`` that also reports what the controller's LTUPF check and its repair MILP cost in CPU.

    PHASETWIN_SHARED_DATA=/work/shared/data PYTHONPATH=$PWD .venv/bin/python benchmarks/ltupf_cpu.py OUT.json \\
        replay --feeder liege-lv --start 2016-01-12T00:00Z --end 2016-01-14T00:00Z --tick 900 --no-baseline --out DIR

Everything after OUT.json is ``phasetwin``'s command line. The replay runs as usual; the thread CPU of every
``LtupfGuard._check`` (the check, prepared ahead or at a decision, with its repair by moves and MILP) and of every
repair MILP (``find_feasible_phases``) is summed and written to OUT.json: ``check_cpu_s``, ``checks``,
``milp_cpu_s``, ``milps``. Run it with another checkout on PYTHONPATH (and as cwd) to measure that code the same way:
it wraps the two functions from outside, it changes nothing in them. Thread CPU, not process CPU: the controller's
search ahead runs in other threads at the same time. Used for docs/controller/README.md ("What the LTUPF check and
repair cost").
"""

from __future__ import annotations

import atexit
import json
import sys
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


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    out = Path(sys.argv[1])
    import controllers.online.feasibility as feasibility
    from phasetwin.cli.main import app

    totals = {"check_cpu_s": 0.0, "checks": 0.0, "milp_cpu_s": 0.0, "milps": 0.0}
    lock = threading.Lock()
    guard = feasibility.LtupfGuard
    guard._check = _timed(guard._check, totals, "check_cpu_s", "checks", lock)  # type: ignore[method-assign]
    feasibility.find_feasible_phases = _timed(feasibility.find_feasible_phases, totals, "milp_cpu_s", "milps", lock)
    atexit.register(lambda: out.write_text(json.dumps(totals)))
    sys.argv = ["phasetwin", *sys.argv[2:]]
    app()


if __name__ == "__main__":
    main()
