"""Feeder phase loads and P_unb of a set of configurations, computed by the twin's own metrics.

This is the independent path the planner's results are checked against: the meter data mapped to network
phases by ``twin.phasing.PhaseMap`` and aggregated by ``twin.metrics`` (eqs. 7-8), as a replay would record
them; it shares no arithmetic with the planner's option arrays.
"""

from __future__ import annotations

import numpy as np

from streams.meters.table import MeterTable
from twin.metrics import p_unb_kw, phase_loads_kw
from twin.network import Feeder
from twin.phase import Phase
from twin.phasing import PhaseMap

__all__ = ["feeder_phase_loads_kw", "p_unb_per_feeder_kw"]


def feeder_phase_loads_kw(feeder: Feeder, data: MeterTable, configurations: dict[str, tuple[Phase, ...]],
                          steps: np.ndarray | None = None) -> np.ndarray:
    """[k, n_feeders, 3] A_φ,f,t (eq. 8) with customers on ``configurations`` (the feeder's own connection for
    customers it does not name), for ``steps`` of ``data`` (all when None)."""
    data = data.select([c.id for c in feeder.customers])
    rows = np.arange(data.n_steps) if steps is None else np.asarray(steps)
    mapping = PhaseMap.of([tuple(configurations.get(c.id, c.phases)) for c in feeder.customers])
    of_customer = np.array([c.feeder for c in feeder.customers])
    return phase_loads_kw(mapping.to_phases(data.p_kw[rows]), of_customer, max(feeder.feeder_ids()) + 1)


def p_unb_per_feeder_kw(feeder: Feeder, data: MeterTable, configurations: dict[str, tuple[Phase, ...]],
                        steps: np.ndarray | None = None) -> np.ndarray:
    """[n_feeders] Σ_t P_unb (eq. 7) per LV feeder, kW summed over the steps."""
    return np.asarray(p_unb_kw(feeder_phase_loads_kw(feeder, data, configurations, steps)).sum(axis=0))
