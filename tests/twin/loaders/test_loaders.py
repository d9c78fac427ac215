"""Feeder and year loaders: Liège CSVs, pandapower JSON, and a deliberately broken IEEE-style CSV set.

The Liège data are read from the shared data folder (never copied into the repo), found by
``liege.default_folder()``: ``<repo>/../shared/data/liege_lv`` or ``$PHASETWIN_SHARED_DATA/liege_lv``.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pandapower as pp
import pandas as pd
import pytest

from streams.meters.table import MeterTable
from twin.errors import DataError, FeederError
from twin.loaders import ieee_european_lv, liege, pandapower_json
from twin.network import Feeder
from twin.phase import Phase

DATA = Path(__file__).resolve().parents[2] / "data"


@pytest.fixture(scope="module")
def liege_folder() -> Path:
    return liege.default_folder()


@pytest.fixture(scope="module")
def liege_feeder(liege_folder: Path) -> Feeder:
    return liege.load_feeder(liege_folder)


@pytest.fixture(scope="module")
def liege_year(liege_feeder: Feeder, liege_folder: Path) -> MeterTable:
    return liege.load_year(liege_feeder, liege_folder)


def _path_lengths_km(lines_csv: Path, root: str) -> dict[str, float]:
    """Independent check: depth-first walk over lines.csv from ``root``, summing length_km."""
    adjacent: dict[str, list[tuple[str, float]]] = {}
    with lines_csv.open(newline="") as fh:
        for row in csv.DictReader(fh):
            length = float(row["length_km"])
            adjacent.setdefault(row["from_bus"], []).append((row["to_bus"], length))
            adjacent.setdefault(row["to_bus"], []).append((row["from_bus"], length))
    distance = {root: 0.0}
    stack = [root]
    while stack:
        bus = stack.pop()
        for other, length in adjacent.get(bus, []):
            if other not in distance:
                distance[other] = distance[bus] + length
                stack.append(other)
    return distance


# --- Liège feeder ---------------------------------------------------------------------------------------------


def test_liege_feeder_counts(liege_feeder: Feeder) -> None:
    assert (len(liege_feeder.buses), len(liege_feeder.lines), len(liege_feeder.customers)) == (44, 42, 23)
    assert Counter(c.feeder for c in liege_feeder.customers) == {0: 19, 1: 4}
    phases = Counter((c.feeder, c.n_phases) for c in liege_feeder.customers)
    assert phases == {(0, 1): 11, (0, 3): 8, (1, 1): 3, (1, 3): 1}
    assert liege_feeder.lv_bus == "4"
    assert liege_feeder.transformer.hv_bus == liege_feeder.source.bus == "5"


def test_liege_feeder_elements(liege_feeder: Feeder) -> None:
    tr = liege_feeder.transformer
    assert (tr.sn_kva, tr.vn_hv_kv, tr.vn_lv_kv, tr.vk_percent, tr.vkr_percent) == (400.0, 10.0, 0.4, 4.0, 1.325)
    assert (tr.vector_group.value, tr.shift_deg) == ("Dyn", 150.0)
    src = liege_feeder.source
    assert (src.vn_kv, src.vm_pu, src.s_sc_mva, src.rx_ratio, src.x0x_ratio, src.r0x0_ratio) == (
        10.0, 1.0, 1000.0, 0.1, 0.1, 0.1)
    for ln in liege_feeder.lines:
        assert (ln.r1_ohm_per_km, ln.x1_ohm_per_km, ln.r0_ohm_per_km, ln.x0_ohm_per_km) == (0.642, 0.083, 1.0, 1.0)
        assert (ln.c1_nf_per_km, ln.c0_nf_per_km, ln.max_i_ka) == (210.0, 1.0, 0.142)
    assert sum(ln.length_km for ln in liege_feeder.lines) == pytest.approx(2.418, abs=5e-4)
    c111 = liege_feeder.customer("111")
    assert (c111.bus, c111.phases, c111.power_factor) == ("449", (Phase.C, Phase.A, Phase.B), 0.98)


def test_liege_distances_equal_path_lengths(liege_feeder: Feeder, liege_folder: Path) -> None:
    path_km = _path_lengths_km(liege_folder / "network" / "lines.csv", root="4")
    declared = pd.read_csv(liege_folder / "customers.csv", dtype={"customer_id": str, "bus": str})
    assert len(path_km) == 43  # every LV bus reached
    for c in liege_feeder.customers:
        assert c.distance_km == pytest.approx(path_km[c.bus], abs=1e-9), c.id
    for row in declared.itertuples():
        assert row.distance_km == pytest.approx(path_km[row.bus], abs=1e-9), row.customer_id


def test_liege_power_factor_choice() -> None:
    assert math.tan(math.acos(liege.AUTHORS_POWER_FACTOR)) == pytest.approx(0.98)
    assert math.tan(math.acos(liege.LIEGE_POWER_FACTOR)) == pytest.approx(0.2031, abs=1e-4)


def test_liege_default_folder_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, liege_folder: Path) -> None:
    monkeypatch.setenv(liege.ENV_VAR, str(liege_folder.parent))
    assert liege.default_folder() == liege_folder
    monkeypatch.setenv(liege.ENV_VAR, str(tmp_path))
    with pytest.raises(DataError, match=r"Liège data not found at .*liege_lv \(PHASETWIN_SHARED_DATA="):
        liege.default_folder()


def test_liege_declared_distance_contradicting_topology(tmp_path: Path, liege_folder: Path) -> None:
    (tmp_path / "network").mkdir()
    for name in ("buses.csv", "lines.csv", "transformer.csv", "ext_grid.csv"):
        (tmp_path / "network" / name).write_text((liege_folder / "network" / name).read_text())
    text = (liege_folder / "customers.csv").read_text()
    text = text.replace("110,448,0,1,C,0.44", "110,448,1,2,C,0.54", 1)  # feeder, n_phases, distance all wrong
    (tmp_path / "customers.csv").write_text(text)
    with pytest.raises(FeederError, match=r"customers.csv line 2: n_phases = '2'") as info:
        liege.load_feeder(tmp_path)
    assert len(info.value.problems) == 3
    assert "customer '110' declares feeder 1, but" in info.value.problems[1]
    assert "customer '110' declares distance_km 0.54" in info.value.problems[2]


# --- Liège year -----------------------------------------------------------------------------------------------


def test_liege_year_grid(liege_year: MeterTable, liege_feeder: Feeder) -> None:
    assert (liege_year.n_steps, liege_year.step_s) == (35_040, 900)
    assert liege_year.start_utc == pd.Timestamp("2015-12-31 23:00", tz="UTC")
    assert liege_year.end_utc == pd.Timestamp("2016-12-30 23:00", tz="UTC")
    assert liege_year.customer_ids == tuple(c.id for c in liege_feeder.customers)
    assert liege_year.quality.rows_read == 35_040
    assert np.isfinite(liege_year.p_kw).all()


def test_liege_year_energy_per_terminal(liege_year: MeterTable, liege_folder: Path) -> None:
    series = pd.read_parquet(liege_folder / "timeseries_net_kw.parquet")
    config = pd.read_csv(liege_folder / "customers.csv", dtype={"customer_id": str}).set_index("customer_id")
    for i, cid in enumerate(liege_year.customer_ids):
        initial = config.loc[cid, "initial_config"]
        for j, phase in enumerate(initial):
            expected_kwh = series[f"{cid}_{phase}"].sum() * 0.25
            assert liege_year.p_kw[:, i, j].sum() * 0.25 == pytest.approx(expected_kwh, rel=1e-12), (cid, j)
        assert not liege_year.p_kw[:, i, len(initial):].any()
    total_kwh = liege_year.p_kw.sum() * 0.25
    assert total_kwh == pytest.approx(series.to_numpy().sum() * 0.25, rel=1e-12)


def test_liege_year_q_from_power_factor(liege_year: MeterTable) -> None:
    np.testing.assert_allclose(liege_year.q_kvar, liege_year.p_kw * math.tan(math.acos(0.98)), rtol=1e-12)


def test_liege_year_follows_terminals_not_current_phases(
    liege_feeder: Feeder, liege_year: MeterTable, liege_folder: Path
) -> None:
    rephased = liege_feeder.model_copy(update={"customers": tuple(
        c.model_copy(update={"phases": tuple(reversed(c.phases))}) for c in liege_feeder.customers)})
    again = liege.load_year(rephased, liege_folder)
    np.testing.assert_array_equal(again.p_kw, liege_year.p_kw)


def test_liege_year_rejects_other_customers(liege_feeder: Feeder, liege_folder: Path) -> None:
    fewer = liege_feeder.model_copy(update={"customers": liege_feeder.customers[1:]})
    with pytest.raises(DataError, match=r"1 data customer\(s\) not expected: '110'$"):
        liege.load_year(fewer, liege_folder)


# --- pandapower JSON ------------------------------------------------------------------------------------------


def test_pandapower_json_matches_liege_csv(liege_feeder: Feeder, liege_folder: Path) -> None:
    """JSON floats keep 15 significant digits, the CSVs 17: compare with a relative tolerance."""
    net = pandapower_json.load_feeder(liege_folder / "network" / "pandapower_net.json", power_factor=0.98)
    assert net.buses == liege_feeder.buses
    assert net.transformer == liege_feeder.transformer
    assert net.source == liege_feeder.source
    for ours, theirs in ((net.lines, liege_feeder.lines), (net.customers, liege_feeder.customers)):
        assert len(ours) == len(theirs)
        for a, b in zip(ours, theirs, strict=True):
            numbers = {k for k, v in b.model_dump().items() if isinstance(v, float)}
            assert a.model_dump(exclude=numbers) == b.model_dump(exclude=numbers)
            assert a.model_dump(include=numbers) == pytest.approx(b.model_dump(include=numbers), rel=1e-13)


def _small_net() -> pp.pandapowerNet:
    r"""HV(0) =trafo= LV(1) --0.1 km-- 2 (asymmetric load on B) --0.2 km-- 3 (shop, three-phase)."""
    net = pp.create_empty_network()
    hv, lv, b2, b3 = (pp.create_bus(net, vn) for vn in (10.0, 0.4, 0.4, 0.4))
    pp.create_ext_grid(net, hv, s_sc_max_mva=100.0, rx_max=0.1, x0x_max=1.0, r0x0_max=0.1)
    pp.create_transformer_from_parameters(net, hv, lv, sn_mva=0.25, vn_hv_kv=10.0, vn_lv_kv=0.4, vkr_percent=1.2,
                                          vk_percent=4.0, pfe_kw=0.0, i0_percent=0.0, vector_group="Dyn",
                                          shift_degree=150.0)
    cable = {"r_ohm_per_km": 0.2, "x_ohm_per_km": 0.08, "c_nf_per_km": 200.0, "max_i_ka": 0.2,
             "r0_ohm_per_km": 0.8, "x0_ohm_per_km": 0.3, "c0_nf_per_km": 100.0}
    pp.create_line_from_parameters(net, lv, b2, length_km=0.1, **cable)
    pp.create_line_from_parameters(net, b2, b3, length_km=0.2, parallel=2, **cable)
    pp.create_asymmetric_load(net, b2, p_b_mw=0.002)
    pp.create_load(net, b3, p_mw=0.003, name="shop")
    pp.create_sgen(net, b3, p_mw=0.005)  # behind the shop's meter
    return net


def test_pandapower_json_small_net(tmp_path: Path) -> None:
    path = tmp_path / "small.json"
    pp.to_json(_small_net(), str(path))
    feeder = pandapower_json.load_feeder(path)
    assert [(c.id, c.bus, c.connection, c.feeder, c.power_factor) for c in feeder.customers] == [
        ("asymmetric_load-0", "2", "B", 0, 0.95), ("shop", "3", "ABC", 0, 0.95)]
    assert [c.distance_km for c in feeder.customers] == pytest.approx([0.1, 0.3])
    second = feeder.lines[1]
    assert (second.r1_ohm_per_km, second.x0_ohm_per_km, second.c1_nf_per_km, second.max_i_ka) == pytest.approx(
        (0.1, 0.15, 400.0, 0.4))


def test_pandapower_json_unsupported_elements(tmp_path: Path) -> None:
    net = _small_net()
    pp.create_sgen(net, 1, p_mw=0.01)
    pp.create_gen(net, 2, p_mw=0.01)
    pp.create_asymmetric_load(net, 2)
    pp.create_switch(net, 1, 0, et="t", closed=False)
    path = tmp_path / "bad.json"
    pp.to_json(net, str(path))
    with pytest.raises(FeederError, match=r"bad.json: 4 problem\(s\) in the feeder description") as info:
        pandapower_json.load_feeder(path)
    assert info.value.problems == [
        "net.switch[0]: open transformer switch (closed = False) at bus 1; a feeder's transformer must be "
        "connected, close it or remove the switch",
        "net.asymmetric_load[1]: no phase column (connection, phases, phase_load) and p/q are zero on every "
        "phase; cannot tell which phases the customer uses, add a 'phases' column such as 'CAB'",
        "net.gen: 1 element(s) 0; gen is not supported in an LV feeder, remove it",
        "net.sgen[1]: generator at bus 1, which has no customer; only behind-the-meter generation at a "
        "customer's bus is supported",
    ]


# --- broken IEEE-style CSV set --------------------------------------------------------------------------------


def test_bad_feeder_lists_every_planted_problem() -> None:
    """tests/data/bad_feeder: negative length, non-numeric length, phase letter D, LOAD1 twice, bus 99."""
    with pytest.raises(FeederError, match=r"ieee-european-lv: 5 problem\(s\) in the feeder description") as info:
        ieee_european_lv.load_feeder(DATA / "bad_feeder")
    assert info.value.problems == [
        "Lines.csv line 4: length_km = -0.005: Input should be greater than 0",
        "Lines.csv line 6: length_km = 'ten': Input should be a valid number, unable to parse string as a number",
        "Loads.csv line 5: phases = 'D': Value error, phase connection 'D' has unknown phase letter(s) D; "
        "expected A, B, C",
        "duplicate customer id 'LOAD1'",
        "line 'LINE3': to_bus '99' is not a known bus",
    ]
