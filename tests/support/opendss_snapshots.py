"""OpenDSS's own snapshot solutions of chosen load states: the reference the twin's engines are checked against
(tests) and measured against (benchmarks)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import opendssdirect as dss

if TYPE_CHECKING:
    from pathlib import Path

    from twin.network import Feeder


def snapshot_load_vm_pu(master: Path, feeder: Feeder, p_kw: np.ndarray, q_kvar: np.ndarray, *,
                        tolerance: float) -> np.ndarray:
    """|V| p.u. of every load's phase by an OpenDSS snapshot of each state: [state, customer, network phase], NaN
    on the phases a customer does not use. ``p_kw``/``q_kvar`` [state, customer, network phase]; each load takes
    its customer's total; the circuit at ``master`` names its loads by the customer ids. Fails when OpenDSS does
    not converge."""
    dss.Text.Command("clear")
    dss.Text.Command(f'redirect "{master}"')
    # constant power at every voltage, as the twin's loads (OpenDSS's default band 0.95–1.05 p.u. of load kV)
    for command in ("set mode=snapshot", f"set tolerance={tolerance:g}", "set maxiterations=100",
                    "batchedit load..* vminpu=0.5 vmaxpu=1.5"):
        dss.Text.Command(command)
    out = np.full(p_kw.shape, np.nan)
    for s in range(p_kw.shape[0]):
        for i, c in enumerate(feeder.customers):
            dss.Loads.Name(c.id)
            dss.Loads.kW(float(p_kw[s, i].sum()))
            dss.Loads.kvar(float(q_kvar[s, i].sum()))
        dss.Solution.Solve()
        assert dss.Solution.Converged()
        for i, c in enumerate(feeder.customers):
            dss.Circuit.SetActiveBus(c.bus)
            nodes, mags = list(dss.Bus.Nodes()), dss.Bus.puVmagAngle()[0::2]
            for ph in c.phases:
                out[s, i, int(ph)] = mags[nodes.index(int(ph) + 1)]
    return out
