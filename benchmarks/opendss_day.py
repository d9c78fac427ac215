"""OpenDSS's own daily solve of the IEEE European LV circuit (written from the bundled CSVs), the anchor the
power-flow benchmarks measure against, and OpenDSS snapshots of chosen load states for agreement checks."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import opendssdirect as dss

# the repository first: tests/ holds folders named like the packages (tests/phasetwin, ...), which would
# otherwise shadow them when the script runs from another folder
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.append(str(Path(__file__).resolve().parents[1] / "tests"))
from support.opendss_circuits import write_ieee_european_lv

from twin.network import Feeder


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


def snapshot_load_vm_pu(master: Path, feeder: Feeder, p_kw: np.ndarray, q_kvar: np.ndarray) -> np.ndarray:
    """|V| p.u. at each load's phase per state [k, customer] by OpenDSS snapshots (constant-power loads)."""
    dss.Text.Command("clear")
    dss.Text.Command(f'redirect "{master}"')
    for command in ("set mode=snapshot", "set tolerance=1e-12", "set maxiterations=100",
                    "batchedit load..* vminpu=0.5 vmaxpu=1.5"):
        dss.Text.Command(command)
    out = np.full((p_kw.shape[0], len(feeder.customers)), np.nan)
    for s in range(p_kw.shape[0]):
        for i, c in enumerate(feeder.customers):
            dss.Loads.Name(c.id)
            dss.Loads.kW(float(p_kw[s, i].sum()))
            dss.Loads.kvar(float(q_kvar[s, i].sum()))
        dss.Solution.Solve()
        for i, c in enumerate(feeder.customers):
            dss.Circuit.SetActiveBus(c.bus)
            nodes, mags = list(dss.Bus.Nodes()), dss.Bus.puVmagAngle()[0::2]
            out[s, i] = mags[nodes.index(int(c.phases[0]) + 1)]
    return out
