"""The load states every benchmark uses: the bundled IEEE European LV day, mapped to network phases."""

from __future__ import annotations

import numpy as np

from twin.loaders import ieee_european_lv
from twin.network import Feeder
from twin.phasing import PhaseMap


def ieee_day_states() -> tuple[Feeder, np.ndarray, np.ndarray]:
    """The feeder and its 1440 states as per-customer, per-phase p_kw and q_kvar [1440, 55, 3]."""
    feeder = ieee_european_lv.load_feeder()
    day = ieee_european_lv.load_day(feeder)
    phase_map = PhaseMap.initial(feeder.customers)
    return feeder, phase_map.to_phases(day.p_kw), phase_map.to_phases(day.q_kvar)
