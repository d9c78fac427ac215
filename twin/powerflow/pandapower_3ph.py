"""Reference engine: pandapower's ``runpp_3ph`` (sequence-domain Newton-Raphson), one state at a time.

The pandapower net is built once from the Feeder; ``solve`` only rewrites the asymmetric_load power columns and
runs. It is slow (about a tenth of a second per state on the 906-bus IEEE feeder) and is here to check the fast
engine, not to run the twin.

pandapower quirks this module works around (see also twin/powerflow/):
- ``runpp_3ph`` treats the ext_grid as an ideal slack in the positive sequence and adds its short-circuit
  impedance only to the negative and zero sequences. The MV source impedance is therefore an explicit line from
  an auxiliary bus (the ideal EMF, with a near-infinite short-circuit power) to the feeder's MV bus.
- ``runpp_3ph`` only offers the T transformer model. Its zero-sequence magnetising impedance is
  ``mag0_percent`` of the short-circuit impedance; a huge value removes it, which leaves the Dyn zero-sequence
  impedance seen from LV equal to vk0 — what power-grid-model uses.
- ``numba`` is not a dependency; asking for it would only log a fallback warning on every run.
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandapower as pp
from pandapower.auxiliary import LoadflowNotConverged
from scipy.sparse.linalg import MatrixRankWarning

from twin.errors import PowerFlowError
from twin.metrics import voltage_unbalance_factor_pct
from twin.network import VectorGroup
from twin.powerflow.feeder_engine import FeederEngine
from twin.powerflow.interface import (
    Engine,
    PowerFlowNotConverged,
    PowerFlowResult,
    check_line_states,
    check_loads,
    source_impedance_ohm,
)

if TYPE_CHECKING:
    from twin.network import Feeder

# Short-circuit power of the ideal EMF behind the explicit source impedance; 1e9 MVA leaves a residual
# impedance ~1e-8 of the real one.
IDEAL_SOURCE_SC_MVA = 1e9
# mag0 as a percentage of the zero-sequence short-circuit impedance: 1e8 % makes the magnetising branch an
# open circuit to within ~1e-7 relative.
OPEN_MAG0_PERCENT = 1e8
# pandapower's runpp_3ph supports these groups only (it refuses Yyn).
VECTOR_GROUPS = {VectorGroup.DYN: "Dyn", VectorGroup.YNYN: "YNyn"}

PHASES = ("a", "b", "c")


class PandapowerPowerFlow(FeederEngine):
    """pandapower ``runpp_3ph`` model of a Feeder. Not thread-safe: ``solve`` mutates the one net."""

    engine = Engine.PANDAPOWER

    def __init__(self, feeder: Feeder) -> None:
        super().__init__(feeder)
        self._vn_ln_v = np.array([b.vn_kv for b in feeder.buses]) * 1e3 / math.sqrt(3)
        self.net = _build_net(feeder)
        self._net_closed = self._normal_closed.copy()
        self._load_cols_p = [f"p_{ph}_mw" for ph in PHASES]
        self._load_cols_q = [f"q_{ph}_mvar" for ph in PHASES]

    def solve(self, *, p_kw: np.ndarray, q_kvar: np.ndarray, line_closed: np.ndarray | None = None) -> PowerFlowResult:
        """See ``twin.powerflow.PowerFlow.solve``. States are solved one after the other."""
        k = check_loads(p_kw=p_kw, q_kvar=q_kvar, n_customers=self.n_customers)
        closed = check_line_states(line_closed, k=k, normal=self._normal_closed)
        out = PowerFlowResult.empty(n_states=k, n_bus=self.n_bus, n_line=self.n_line)
        reasons: list[str] = []
        loads = self.net.asymmetric_load
        for s in range(k):
            loads[self._load_cols_p] = p_kw[s] * 1e-3
            loads[self._load_cols_q] = q_kvar[s] * 1e-3
            if not np.array_equal(closed[s], self._net_closed):
                self.net.line.loc[: self.n_line - 1, "in_service"] = closed[s]
                self._net_closed = closed[s].copy()
            failure = self._run()
            if failure:
                reasons.append(failure)
                continue
            self._store(out, s)
        if not out.converged.all():
            raise PowerFlowNotConverged(engine=self.engine, failed_indices=out.failed_indices(), partial=out,
                                        reason=f"first failure: {reasons[0]}")
        return out

    def _run(self) -> str:
        """Run one state; return why it failed, or "" when it converged to finite voltages."""
        with warnings.catch_warnings():
            # On a singular Jacobian (voltage collapse) scipy only warns; pandapower then iterates on NaN, its
            # mismatch test (NaN > tol is False) ends the loop and it reports success. Make the warning an error
            # and check the voltages, so such a state counts as not converged.
            warnings.simplefilter("error", MatrixRankWarning)
            # A diverging state also overflows on its way out; it is then reported as not converged.
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                try:
                    pp.runpp_3ph(self.net, numba=False)
                except LoadflowNotConverged as err:
                    return str(err)
                except MatrixRankWarning as err:
                    return f"singular Jacobian ({err})"
        vm = self.net.res_bus_3ph[[f"vm_{ph}_pu" for ph in PHASES]].to_numpy()[: self.n_bus]
        if not np.isfinite(vm).all():
            return "pandapower reported convergence but returned non-finite voltages"
        return ""

    def _store(self, out: PowerFlowResult, s: int) -> None:
        net, nb, nl = self.net, self.n_bus, self.n_line
        bus = net.res_bus_3ph
        vm = bus[[f"vm_{ph}_pu" for ph in PHASES]].to_numpy()[:nb]
        out.vm_pu[s] = vm
        out.va_deg[s] = bus[[f"va_{ph}_degree" for ph in PHASES]].to_numpy()[:nb]
        out.vuf_pct[s] = voltage_unbalance_factor_pct(vm, out.va_deg[s])
        out.v_v[s] = vm * self._vn_ln_v[:, None]
        line = net.res_line_3ph
        # pandapower may leave NaN in the rows of out-of-service (open) lines; an open line carries nothing.
        closed = self._net_closed
        i_ka = np.where(closed[:, None], line[[f"i_{ph}_from_ka" for ph in PHASES]].to_numpy()[:nl], 0.0)
        out.i_ka[s] = i_ka
        out.loading[s] = i_ka / self.max_i_ka[:, None]
        out.i_n_ka[s] = np.where(closed, line["i_n_from_ka"].to_numpy()[:nl], 0.0)
        trafo = net.res_trafo_3ph
        # pandapower's branch powers flow into the branch at that end; the LV network receives the opposite.
        out.p_trafo_kw[s] = -trafo[[f"p_{ph}_lv_mw" for ph in PHASES]].to_numpy()[0] * 1e3
        out.q_trafo_kvar[s] = -trafo[[f"q_{ph}_lv_mvar" for ph in PHASES]].to_numpy()[0] * 1e3
        line_loss_mw = line[[f"pl_{ph}_mw" for ph in PHASES]].to_numpy()[:nl][closed].sum()
        trafo_loss_mw = trafo[[f"pl_{ph}_mw" for ph in PHASES]].to_numpy()[0].sum()
        out.loss_kw[s] = (line_loss_mw + trafo_loss_mw) * 1e3
        out.converged[s] = True


def _build_net(feeder: Feeder) -> pp.pandapowerNet:
    """The pandapower net: feeder buses 0..n-1 then the auxiliary EMF bus; feeder lines 0..m-1 then the source
    impedance line; one wye asymmetric_load per customer, in feeder order."""
    tr = feeder.transformer
    if tr.vector_group not in VECTOR_GROUPS:
        raise PowerFlowError(
            f"feeder {feeder.name!r}: transformer {tr.id!r} vector group {tr.vector_group.value!r} is not supported "
            f"by pandapower runpp_3ph; expected one of {', '.join(v.value for v in VECTOR_GROUPS)}"
        )
    net = pp.create_empty_network(name=feeder.name, f_hz=50.0, sn_mva=1.0, add_stdtypes=False)
    index = {b.id: i for i, b in enumerate(feeder.buses)}
    pp.create_buses(net, nr_buses=len(feeder.buses), vn_kv=[b.vn_kv for b in feeder.buses],
                    name=[b.id for b in feeder.buses], index=list(range(len(feeder.buses))))
    emf_bus = pp.create_bus(net, vn_kv=feeder.source.vn_kv, name="source EMF", index=len(feeder.buses))
    lines = feeder.lines
    pp.create_lines_from_parameters(
        net,
        from_buses=[index[ln.from_bus] for ln in lines],
        to_buses=[index[ln.to_bus] for ln in lines],
        length_km=[ln.length_km for ln in lines],
        r_ohm_per_km=[ln.r1_ohm_per_km for ln in lines],
        x_ohm_per_km=[ln.x1_ohm_per_km for ln in lines],
        c_nf_per_km=[ln.c1_nf_per_km for ln in lines],
        r0_ohm_per_km=[ln.r0_ohm_per_km for ln in lines],
        x0_ohm_per_km=[ln.x0_ohm_per_km for ln in lines],
        c0_nf_per_km=[ln.c0_nf_per_km for ln in lines],
        max_i_ka=[ln.max_i_ka for ln in lines],
        name=[ln.id for ln in lines],
        index=list(range(len(lines))),
        in_service=[ln.normally_closed for ln in lines],
    )
    z1_ohm, z0_ohm = source_impedance_ohm(feeder)
    pp.create_line_from_parameters(
        net, from_bus=emf_bus, to_bus=index[feeder.source.bus], length_km=1.0,
        r_ohm_per_km=z1_ohm.real, x_ohm_per_km=z1_ohm.imag, c_nf_per_km=0.0,
        r0_ohm_per_km=z0_ohm.real, x0_ohm_per_km=z0_ohm.imag, c0_nf_per_km=0.0,
        max_i_ka=1e6, name="source impedance", index=len(lines),
    )
    pp.create_ext_grid(
        net, bus=emf_bus, vm_pu=feeder.source.vm_pu, va_degree=0.0,
        s_sc_max_mva=IDEAL_SOURCE_SC_MVA, rx_max=feeder.source.rx_ratio,
        x0x_max=feeder.source.x0x_ratio, r0x0_max=feeder.source.r0x0_ratio,
    )
    pp.create_transformer_from_parameters(
        net, hv_bus=index[tr.hv_bus], lv_bus=index[tr.lv_bus], sn_mva=tr.sn_kva * 1e-3,
        vn_hv_kv=tr.vn_hv_kv, vn_lv_kv=tr.vn_lv_kv, vkr_percent=tr.vkr_percent, vk_percent=tr.vk_percent,
        pfe_kw=0.0, i0_percent=0.0, shift_degree=tr.shift_deg, vector_group=VECTOR_GROUPS[tr.vector_group],
        vk0_percent=tr.vk_percent, vkr0_percent=tr.vkr_percent, mag0_percent=OPEN_MAG0_PERCENT, mag0_rx=0.0,
        si0_hv_partial=0.5, name=tr.id,
    )
    for c in feeder.customers:
        pp.create_asymmetric_load(net, bus=index[c.bus], type="wye", name=c.id)
    return net
