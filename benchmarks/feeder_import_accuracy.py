"""Accuracy of the feeder imports (issue 17), raw figures of one run.

1. The IEEE European LV feeder written as a .dss from the bundled CSVs vs the bundled loader: largest voltage
   difference at three states of the bundled day (both on power-grid-model).
2. The twin (power-grid-model) vs OpenDSS's own snapshot solution of that circuit on every load's phase, with
   loads at constant power at every voltage (vminpu=0.5 vmaxpu=1.5) and with OpenDSS's default load band.

    PYTHONPATH=. .venv/bin/python benchmarks/feeder_import_accuracy.py
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import opendssdirect as dss

# the repository first: tests/ holds folders named like the packages (tests/phasetwin, ...), which would
# otherwise shadow them when the script runs from another folder
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.append(str(Path(__file__).resolve().parents[1] / "tests"))
from support.opendss_circuits import write_ieee_european_lv

from twin.loaders import ieee_european_lv, opendss
from twin.powerflow.factory import create_powerflow
from twin.powerflow.interface import Engine

TICKS = [0, 700, 1140]


def _phase(feeder, p_kw, q_kvar):  # type: ignore[no-untyped-def]
    p, q = np.zeros_like(p_kw), np.zeros_like(q_kvar)
    for i, c in enumerate(feeder.customers):
        for j, ph in enumerate(c.phases):
            p[:, i, int(ph)], q[:, i, int(ph)] = p_kw[:, i, j], q_kvar[:, i, j]
    return p, q


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="accepted for the smoke test; the run is small already")
    parser.parse_args()
    master = write_ieee_european_lv(Path(tempfile.mkdtemp()))
    circuit = opendss.read_circuit(master)
    assert circuit.meter is not None
    feeder = circuit.feeder
    p, q = _phase(feeder, circuit.meter.p_kw[TICKS], circuit.meter.q_kvar[TICKS])
    ours = create_powerflow(feeder, engine=Engine.PGM).solve(p_kw=p, q_kvar=q)
    bundled = ieee_european_lv.load_feeder()
    day = ieee_european_lv.load_day(bundled)
    bp, bq = _phase(bundled, day.p_kw[TICKS], day.q_kvar[TICKS])
    theirs = create_powerflow(bundled, engine=Engine.PGM).solve(p_kw=bp, q_kvar=bq)
    row = {b.id.lower(): k for k, b in enumerate(bundled.buses)}
    order = [row[b.id] for b in feeder.buses]
    print(f"dss import vs bundled loader: max |dV| = {np.abs(ours.vm_pu - theirs.vm_pu[:, order]).max():.2e} p.u.")
    bus = {b.id: k for k, b in enumerate(feeder.buses)}
    for label, band in (("constant power (vminpu=0.5 vmaxpu=1.5)", True), ("OpenDSS default load band", False)):
        dss.Text.Command("clear")
        dss.Text.Command(f'redirect "{master}"')
        for command in ("set mode=snapshot", "set tolerance=1e-10", "set maxiterations=100"):
            dss.Text.Command(command)
        if band:
            dss.Text.Command("batchedit load..* vminpu=0.5 vmaxpu=1.5")
        worst = []
        for s in range(len(TICKS)):
            for i, c in enumerate(feeder.customers):
                dss.Loads.Name(c.id)
                dss.Loads.kW(float(p[s, i].sum()))
                dss.Loads.kvar(float(q[s, i].sum()))
            dss.Solution.Solve()
            diff = 0.0
            for c in feeder.customers:
                dss.Circuit.SetActiveBus(c.bus)
                nodes, mags = list(dss.Bus.Nodes()), dss.Bus.puVmagAngle()[0::2]
                for ph in c.phases:
                    diff = max(diff, abs(mags[nodes.index(int(ph) + 1)] - ours.vm_pu[s, bus[c.bus], int(ph)]))
            worst.append(diff)
        print(f"twin vs OpenDSS, {label}: max |dV| per state = {', '.join(f'{w:.2e}' for w in worst)} p.u.")


if __name__ == "__main__":
    main()
