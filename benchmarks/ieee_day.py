"""The load states every benchmark uses: the bundled IEEE European LV day, mapped to network phases."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from twin.loaders import ieee_european_lv
from twin.network import Feeder
from twin.phasing import PhaseMap
from twin.powerflow import Engine, PowerFlowResult, create_powerflow


def ieee_day_states() -> tuple[Feeder, np.ndarray, np.ndarray]:
    """The feeder and its 1440 states as per-customer, per-phase p_kw and q_kvar [1440, 55, 3]."""
    feeder = ieee_european_lv.load_feeder()
    day = ieee_european_lv.load_day(feeder)
    phase_map = PhaseMap.initial(feeder.customers)
    return feeder, phase_map.to_phases(day.p_kw), phase_map.to_phases(day.q_kvar)


def pandapower_sample(
    feeder: Feeder, p_kw: np.ndarray, q_kvar: np.ndarray, *, n_states: int
) -> tuple[float, PowerFlowResult, np.ndarray]:
    """runpp_3ph on ``n_states`` states spread over the day: (seconds scaled to all states, result, indices)."""
    n = p_kw.shape[0]
    engine = create_powerflow(feeder, engine=Engine.PANDAPOWER)
    sample = np.linspace(0, n - 1, min(n_states, n)).astype(int)
    engine.solve(p_kw=p_kw[:1], q_kvar=q_kvar[:1])  # first-use costs out of the timing
    t = time.perf_counter()
    result = engine.solve(p_kw=p_kw[sample], q_kvar=q_kvar[sample])
    return (time.perf_counter() - t) * n / len(sample), result, sample


def load_average() -> str:
    """The machine's load average line, printed next to every figure (the machine is shared)."""
    return Path("/proc/loadavg").read_text().strip()
