"""OpenDSS's own daily solve of the IEEE European LV circuit (written from the bundled CSVs), the anchor the
power-flow benchmarks measure against (OpenDSS snapshots of chosen load states: tests/support/opendss_snapshots.py)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import opendssdirect as dss

# the repository first: tests/ holds folders named like the packages (tests/phasetwin, ...), which would
# otherwise shadow them when the script runs from another folder
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.append(str(Path(__file__).resolve().parents[1] / "tests"))
from support.opendss_circuits import write_ieee_european_lv


def write_circuit(folder: Path) -> Path:
    return write_ieee_european_lv(folder)


def daily_solve_cpu_s(master: Path, *, steps: int = 1440) -> float:
    """CPU seconds of ``mode=daily number=steps`` (1-minute steps) on the circuit, compile excluded."""
    dss.Text.Command("clear")
    dss.Text.Command(f'redirect "{master}"')
    dss.Text.Command(f"set mode=daily stepsize=1m number={steps}")
    t = time.process_time()
    dss.Solution.Solve()
    return time.process_time() - t
