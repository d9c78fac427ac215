"""Fixtures of the planning tests: a tiny two-feeder network with random per-terminal data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from streams.meters.table import MeterTable
from twin.network import Feeder, assemble_feeder


def _line(i: str, a: str, b: str) -> tuple[str, dict[str, object]]:
    return (f"line {i}", {"id": i, "from_bus": a, "to_bus": b, "length_km": 0.1, "r1_ohm_per_km": 0.2,
                          "x1_ohm_per_km": 0.08, "r0_ohm_per_km": 0.8, "x0_ohm_per_km": 0.3, "max_i_ka": 0.3})


@pytest.fixture(scope="session")
def two_feeder_network() -> Feeder:
    """MV - trafo - LV bus; feeder 0: L - a - b (customers c1 A, c2 B at a; c3 CAB, c4 C at b); feeder 1: L - d
    (c5 A, c6 BC)."""
    buses = [(b, {"id": b, "vn_kv": 10.0 if b == "mv" else 0.4}) for b in ("mv", "lv", "a", "b", "d")]
    customers = [(c, {"id": c, "bus": bus, "phases": ph}) for c, bus, ph in
                 (("c1", "a", "A"), ("c2", "a", "B"), ("c3", "b", "CAB"), ("c4", "b", "C"), ("c5", "d", "A"),
                  ("c6", "d", "BC"))]
    return assemble_feeder(
        name="tiny", buses=buses, lines=[_line("l1", "lv", "a"), _line("l2", "a", "b"), _line("l3", "lv", "d")],
        transformer=("trafo", {"id": "t", "hv_bus": "mv", "lv_bus": "lv", "sn_kva": 250, "vn_hv_kv": 10.0,
                               "vn_lv_kv": 0.4, "vk_percent": 4.0, "vkr_percent": 1.2}),
        source=("source", {"bus": "mv", "vn_kv": 10.0, "s_sc_mva": 100.0}), customers=customers)


@pytest.fixture(scope="session")
def two_feeder_data(two_feeder_network: Feeder) -> MeterTable:
    """48 quarter-hours of random net power per terminal (some negative: PV), zero on unused terminals."""
    rng = np.random.default_rng(7)
    n_t, customers = 48, two_feeder_network.customers
    p = rng.gamma(2.0, 1.0, size=(n_t, len(customers), 3)) - 0.6
    for i, c in enumerate(customers):
        p[:, i, c.n_phases:] = 0.0
    return MeterTable(time_utc=pd.date_range("2024-01-01", periods=n_t, freq="15min", tz="UTC"), step_s=900,
                      customer_ids=tuple(c.id for c in customers), p_kw=p, q_kvar=0.2 * p, source="random")
