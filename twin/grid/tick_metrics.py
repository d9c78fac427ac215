"""The per-tick figures a grid state carries, computed for a whole solved block at once."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from twin import metrics
from twin.network import Feeder
from twin.powerflow import PowerFlowResult
from twin.row_chunks import for_row_chunks


@dataclass
class Block:
    """Solved states from ``first_tick`` on, with their per-tick summary metrics computed in one go."""

    first_tick: int
    p_kw: np.ndarray
    q_kvar: np.ndarray
    result: PowerFlowResult
    failed: frozenset[int]
    phase_load_kw: np.ndarray
    p_unb_kw: np.ndarray
    vm_min_pu: list[list[float]]
    vm_max_pu: list[list[float]]
    vuf_max_pct: list[float]
    i_n_max_a: list[float]
    kappa_trafo: list[float]


class TickMetrics:
    """Phase loads and P_unb per LV feeder, LV voltage extremes, VUF, neutral current and transformer κ."""

    def __init__(self, feeder: Feeder) -> None:
        self._feeder_of = np.array([c.feeder for c in feeder.customers])
        self.n_lv_feeders = int(self._feeder_of.max()) + 1 if len(feeder.customers) else 1
        self._lv_bus = np.array([b.id != feeder.transformer.hv_bus for b in feeder.buses])
        self._trafo_lv_index = feeder.bus_ids().index(feeder.transformer.lv_bus)

    def block(
        self, tick: int, p: np.ndarray, q: np.ndarray, result: PowerFlowResult, failed: frozenset[int]
    ) -> Block:
        phase_load = metrics.phase_loads_kw(p, self._feeder_of, self.n_lv_feeders)
        vm_lv = result.vm_pu[:, self._lv_bus, :]
        va_lv = result.va_deg[:, self._lv_bus, :]
        vuf_max = np.empty(p.shape[0])

        def vuf_rows(a: int, b: int) -> None:
            vuf_max[a:b] = metrics.voltage_unbalance_factor_pct(vm_lv[a:b], va_lv[a:b]).max(axis=1)

        for_row_chunks(p.shape[0], vuf_rows)
        i_n = result.i_n_ka.max(axis=1) * 1000.0 if result.i_n_ka.shape[1] else np.zeros(p.shape[0])
        # phase currents of the transformer LV side are proportional to |S_φ| / |V_φ| at its LV bus
        i_trafo = np.hypot(result.p_trafo_kw, result.q_trafo_kvar) / result.vm_pu[:, self._trafo_lv_index, :]
        return Block(
            first_tick=tick, p_kw=p, q_kvar=q, result=result, failed=failed, phase_load_kw=phase_load,
            p_unb_kw=metrics.p_unb_kw(phase_load), vm_min_pu=vm_lv.min(axis=1).tolist(),
            vm_max_pu=vm_lv.max(axis=1).tolist(), vuf_max_pct=vuf_max.tolist(), i_n_max_a=i_n.tolist(),
            kappa_trafo=metrics.current_unbalance(i_trafo).tolist(),
        )
