"""The LV networks of ``pandapower.networks`` as users have them: saved with ``pp.to_json`` and given to ``--feeder``.

Each family is loaded with the documented assumptions for what it lacks, solved by the twin's fast engine
(power-grid-model) at three random load states, and checked against pandapower's ``runpp_3ph`` on the *original*
network: the same assumptions written into its own tables, its loads replaced by per-phase wye loads of the same
state and its external grid given the twin's documented source model (an ideal EMF behind the series
impedance, ``twin.powerflow.interface``), which ``runpp_3ph`` otherwise leaves out of the positive sequence.
A replay of a day of synthetic hourly profiles runs each family end to end through the CLI.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandapower as pp
import pandapower.networks as pn
import pandas as pd
import pytest
from typer.testing import CliRunner

from phasetwin.cli.main import app
from twin.errors import FeederError, ScenarioError
from twin.loaders import pandapower_json
from twin.loaders.assumptions import FeederSpec, parse_feeder_spec
from twin.network import Feeder, LineSwitch, VectorGroup
from twin.powerflow.factory import create_powerflow
from twin.powerflow.interface import Engine, source_impedance_ohm

runner = CliRunner()
ASSUME = "zero-sequence=r0/r1=4,x0/x1=4,c0/c1=1;ext-grid=s_sc_max_mva=100,rx_max=0.1,x0x_max=1,r0x0_max=0.1"
PLAIN = ["--psd", "0", "--pess", "0", "--controller", "none"]
TOLERANCE_PU = 1e-4

NETWORKS: dict[str, tuple[Callable[[], pp.pandapowerNet], str]] = {
    "kerber-landnetz-freileitung-1": (pn.create_kerber_landnetz_freileitung_1, ASSUME),
    "kerber-dorfnetz": (pn.create_kerber_dorfnetz, ASSUME),
    "cigre-lv-trafo-0": (pn.create_cigre_network_lv, ASSUME + ";vector-group=Dyn1;transformer=0"),
    "cigre-lv-trafo-1": (pn.create_cigre_network_lv, ASSUME + ";vector-group=Dyn1;transformer=1"),
    "cigre-lv-trafo-2": (pn.create_cigre_network_lv, ASSUME + ";vector-group=Dyn1;transformer=2"),
    "ieee-european-lv-asymmetric": (pn.ieee_european_lv_asymmetric, ""),
    "four-loads-with-branches-out": (pn.four_loads_with_branches_out, ASSUME),
    "simple-four-bus-system": (pn.simple_four_bus_system, ASSUME),
    "panda-four-load-branch": (pn.panda_four_load_branch, ASSUME),
}


def _saved(make: Callable[[], pp.pandapowerNet], folder: Path) -> tuple[pp.pandapowerNet, Path]:
    net = make()
    path = folder / "net.json"
    pp.to_json(net, str(path))
    return net, path


def _states(feeder: Feeder, *, k: int, seed: int, max_kw: float) -> tuple[np.ndarray, np.ndarray]:
    """k random load states per network phase, zero on the phases a customer does not use."""
    rng = np.random.default_rng(seed)
    p_kw = rng.uniform(0.0, max_kw, (k, len(feeder.customers), 3))
    used = np.zeros((len(feeder.customers), 3), dtype=bool)
    for i, c in enumerate(feeder.customers):
        used[i, [int(ph) for ph in c.phases]] = True
    p_kw *= used[None]
    return p_kw, p_kw * rng.uniform(0.1, 0.4, p_kw.shape)


def _reference_vm_pu(net: pp.pandapowerNet, feeder: Feeder, spec: FeederSpec, p_kw: np.ndarray,
                     q_kvar: np.ndarray) -> pd.DataFrame:
    """runpp_3ph on the original net with the same assumptions; per-phase loads at the customers' buses."""
    net = copy.deepcopy(net)
    if spec.zero_sequence is not None:
        zs = spec.zero_sequence
        for column, base, ratio in (("r0_ohm_per_km", "r_ohm_per_km", zs.r0_r1),
                                    ("x0_ohm_per_km", "x_ohm_per_km", zs.x0_x1),
                                    ("c0_nf_per_km", "c_nf_per_km", zs.c0_c1)):
            assumed = net.line[base] * ratio
            net.line[column] = net.line[column].fillna(assumed) if column in net.line else assumed
    trafo = net.trafo
    group = trafo["vector_group"] if "vector_group" in trafo else pd.Series([None] * len(trafo), index=trafo.index)
    trafo["vector_group"] = group.fillna(spec.vector_group or "").str.replace(r"\d+$", "", regex=True)
    # the twin's transformer: zero-sequence = short-circuit impedance, no magnetising branch, no no-load losses
    trafo["vk0_percent"], trafo["vkr0_percent"] = trafo["vk_percent"], trafo["vkr_percent"]
    trafo["mag0_percent"], trafo["mag0_rx"], trafo["si0_hv_partial"] = 1e8, 0.0, 0.5
    trafo["pfe_kw"], trafo["i0_percent"] = 0.0, 0.0
    z1_ohm, z0_ohm = source_impedance_ohm(feeder)
    grid = net.ext_grid.index[0]
    bus = net.ext_grid.at[grid, "bus"]
    emf = pp.create_bus(net, vn_kv=net.bus.at[bus, "vn_kv"])
    pp.create_line_from_parameters(net, emf, bus, length_km=1.0, r_ohm_per_km=z1_ohm.real, x_ohm_per_km=z1_ohm.imag,
                                   c_nf_per_km=0.0, max_i_ka=1e6, r0_ohm_per_km=z0_ohm.real,
                                   x0_ohm_per_km=z0_ohm.imag, c0_nf_per_km=0.0)
    net.ext_grid.at[grid, "bus"] = emf
    for column, value in (("s_sc_max_mva", 1e9), ("rx_max", 0.1), ("x0x_max", 1.0), ("r0x0_max", 0.1)):
        net.ext_grid[column] = value
    for table in ("load", "asymmetric_load", "sgen"):
        net[table] = net[table].iloc[0:0]
    for i, c in enumerate(feeder.customers):
        pa, qa = p_kw[i] * 1e-3, q_kvar[i] * 1e-3
        pp.create_asymmetric_load(net, int(c.bus), p_a_mw=pa[0], p_b_mw=pa[1], p_c_mw=pa[2], q_a_mvar=qa[0],
                                  q_b_mvar=qa[1], q_c_mvar=qa[2])
    with np.errstate(divide="ignore", invalid="ignore"):  # pandapower divides by zero on open lines' results
        pp.runpp_3ph(net, numba=False, tolerance_mva=1e-10, max_iteration=100)
    return net.res_bus_3ph


@pytest.mark.parametrize("family", list(NETWORKS))
def test_network_matches_runpp_3ph_at_three_states(family: str, tmp_path: Path) -> None:
    make, assume = NETWORKS[family]
    net, path = _saved(make, tmp_path)
    spec = parse_feeder_spec(f"{path};{assume}")
    feeder = pandapower_json.load_feeder(path, spec=spec)
    p_kw, q_kvar = _states(feeder, k=3, seed=len(family), max_kw=2.0)
    result = create_powerflow(feeder, engine=Engine.PGM).solve(p_kw=p_kw, q_kvar=q_kvar)
    columns = ["vm_a_pu", "vm_b_pu", "vm_c_pu"]
    for s in range(3):
        reference = _reference_vm_pu(net, feeder, spec, p_kw[s], q_kvar[s])
        expected = reference.loc[[int(b.id) for b in feeder.buses], columns].to_numpy()
        assert np.abs(result.vm_pu[s] - expected).max() <= TOLERANCE_PU, family
    assert result.vm_pu.min() < feeder.source.vm_pu - 1e-3  # the states load the network: not a no-load check


def _synthetic_day(feeder: Feeder, path: Path) -> None:
    """A day of hourly per-terminal profiles (kW), wide form: an evening peak, seeded noise."""
    hours = np.arange(24)
    shape = 0.3 + 0.7 * np.exp(-((hours - 19) ** 2) / 6.0)
    rng = np.random.default_rng(7)
    columns: dict[str, object] = {"time": pd.date_range("2024-01-15", periods=24, freq="h", tz="UTC").strftime(
        "%Y-%m-%dT%H:%M:%SZ")}
    for c in feeder.customers:
        for terminal in range(1, c.n_phases + 1):
            columns[f"{c.id}_{terminal}"] = np.round(shape * rng.uniform(0.5, 1.5), 4)
    pd.DataFrame(columns).to_csv(path, index=False)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["kerber-landnetz-freileitung-1", "cigre-lv-trafo-1",
                                    "ieee-european-lv-asymmetric", "four-loads-with-branches-out"])
def test_network_replays_a_day_through_the_cli(family: str, tmp_path: Path) -> None:
    make, assume = NETWORKS[family]
    _, path = _saved(make, tmp_path)
    spec = f"{path};{assume}" if assume else str(path)
    feeder = pandapower_json.load_feeder(path, spec=parse_feeder_spec(spec))
    data = tmp_path / "day.csv"
    _synthetic_day(feeder, data)
    result = runner.invoke(app, ["replay", "--feeder", spec, "--data", str(data), "--tick", "3600",
                                 "--out", str(tmp_path / "run"), *PLAIN])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["ticks"] == 24 and summary["feeder"] == feeder.name
    energy = pd.read_csv(data).drop(columns="time").to_numpy().sum()
    delivered = sum(summary["energy_kwh"][ph] for ph in "abc")
    assert 0 < delivered - energy < summary["losses_kwh"] + 1e-9


def test_summary_grid_name_becomes_a_topic_segment(tmp_path: Path) -> None:
    """ieee_european_lv_asymmetric() is named "Summary Grid": once a traceback, now the feeder 'Summary-Grid'."""
    _, path = _saved(pn.ieee_european_lv_asymmetric, tmp_path)
    assert pandapower_json.load_feeder(path).name == "Summary-Grid"


# --- messages and bad input ------------------------------------------------------------------------------------


def test_missing_data_is_reported_once_per_network_naming_pandapower_columns(tmp_path: Path) -> None:
    _, path = _saved(pn.create_kerber_dorfnetz, tmp_path)
    with pytest.raises(FeederError) as info:
        pandapower_json.load_feeder(path)
    assert info.value.problems == [
        "net.line: 114 of 114 line(s) (0, 1, 2, 3, 4, 5, 6, 7, 8, 9 …) have no zero-sequence data in r0_ohm_per_km, "
        "x0_ohm_per_km; add them, or assume ratios with --feeder 'FILE;zero-sequence=r0/r1=…,x0/x1=…'",
        "net.ext_grid[0]: no short-circuit data in s_sc_max_mva, rx_max, x0x_max, r0x0_max; set them in "
        "net.ext_grid or assume them with --feeder 'FILE;ext-grid=s_sc_max_mva=…,rx_max=…,x0x_max=…,r0x0_max=…'",
    ]


def test_invalid_values_name_pandapower_columns(tmp_path: Path) -> None:
    net = pn.four_loads_with_branches_out()
    for column, base in (("r0_ohm_per_km", "r_ohm_per_km"), ("x0_ohm_per_km", "x_ohm_per_km")):
        net.line[column] = net.line[base] * 4
    net.ext_grid["s_sc_max_mva"] = -5.0
    net.line.loc[0, "r_ohm_per_km"] = -1.0
    path = tmp_path / "bad.json"
    pp.to_json(net, str(path))
    with pytest.raises(FeederError) as info:
        pandapower_json.load_feeder(path, spec=parse_feeder_spec(f"{path};{ASSUME}"))
    assert info.value.problems[:2] == [
        "net.line[0]: r_ohm_per_km = -1.0: Input should be greater than or equal to 0",
        "net.ext_grid[0]: s_sc_max_mva = -5.0: Input should be greater than 0",
    ]


def test_several_transformers_need_a_choice(tmp_path: Path) -> None:
    _, path = _saved(pn.create_cigre_network_lv, tmp_path)
    with pytest.raises(FeederError) as info:
        pandapower_json.load_feeder(path, spec=parse_feeder_spec(f"{path};{ASSUME};vector-group=Dyn1"))
    assert info.value.problems == [
        "net.trafo: 3 transformers 0 ('Trafo R0-R1'), 1 ('Trafo I0-I1'), 2 ('Trafo C0-C1'); each LV network is a "
        "feeder of its own: pick one with --feeder 'FILE;transformer=N'"]
    by_name = pandapower_json.load_feeder(path, spec=parse_feeder_spec(
        f"{path};{ASSUME};vector-group=Dyn1;transformer=Trafo I0-I1"))
    by_index = pandapower_json.load_feeder(path, spec=parse_feeder_spec(
        f"{path};{ASSUME};vector-group=Dyn1;transformer=1"))
    assert by_name == by_index
    assert by_index.name == "net-Trafo-I0-I1" and by_index.transformer.lv_bus == "21"
    # the three LV networks share the MV bus 0 (three closed bus-bus switches fused into it) and nothing else
    parts = [pandapower_json.load_feeder(path, spec=parse_feeder_spec(
        f"{path};{ASSUME};vector-group=Dyn1;transformer={i}")) for i in range(3)]
    lv_sets = [set(f.bus_ids()) - {"0"} for f in parts]
    assert all(f.transformer.hv_bus == "0" for f in parts)
    assert sum(len(s) for s in lv_sets) == len(set().union(*lv_sets)) == 44 - 4
    assert sorted(c.id for f in parts for c in f.customers) == sorted(
        name.replace(" ", "-") for name in pn.create_cigre_network_lv().load.name)


@pytest.mark.parametrize(("group", "shift", "expected"), [
    ("Dyn5", 150.0, (VectorGroup.DYN, 150.0)),
    ("Dyn11", None, (VectorGroup.DYN, 330.0)),
    ("YNyn0", 0.0, (VectorGroup.YNYN, 0.0)),
    ("Yyn6", 180.0, (VectorGroup.YYN, 180.0)),
    ("dyn1", None, (VectorGroup.DYN, 30.0)),
    ("Dyn", 150.0, (VectorGroup.DYN, 150.0)),
])
def test_vector_groups_with_any_clock_number(group: str, shift: float | None, expected: tuple[VectorGroup, float],
                                             tmp_path: Path) -> None:
    net = pn.panda_four_load_branch()
    net.trafo["vector_group"] = group
    net.trafo["shift_degree"] = np.nan if shift is None else shift
    path = tmp_path / "net.json"
    pp.to_json(net, str(path))
    tr = pandapower_json.load_feeder(path, spec=parse_feeder_spec(f"{path};{ASSUME}")).transformer
    assert (tr.vector_group, tr.shift_deg) == expected


def test_dyn11_matches_runpp_3ph(tmp_path: Path) -> None:
    net = pn.panda_four_load_branch()
    net.trafo["vector_group"], net.trafo["shift_degree"] = "Dyn11", 330.0
    path = tmp_path / "net.json"
    pp.to_json(net, str(path))
    spec = parse_feeder_spec(f"{path};{ASSUME}")
    feeder = pandapower_json.load_feeder(path, spec=spec)
    p_kw, q_kvar = _states(feeder, k=1, seed=3, max_kw=8.0)
    result = create_powerflow(feeder, engine=Engine.PGM).solve(p_kw=p_kw, q_kvar=q_kvar)
    reference = _reference_vm_pu(net, feeder, spec, p_kw[0], q_kvar[0])
    angles = reference.loc[[int(b.id) for b in feeder.buses], ["va_a_degree"]].to_numpy()[:, 0]
    np.testing.assert_allclose(result.va_deg[0, :, 0], angles, atol=1e-3)
    assert result.va_deg[0, 1, 0] == pytest.approx(30.0, abs=2.0)  # LV leads HV by 30° (clock 11)


@pytest.mark.parametrize("group", ["Dyn2", "YNyn1", "Dyn13", "Yzn11"])
def test_impossible_vector_groups_are_reported(group: str, tmp_path: Path) -> None:
    net = pn.panda_four_load_branch()
    net.trafo["vector_group"], net.trafo["shift_degree"] = group, np.nan
    path = tmp_path / "net.json"
    pp.to_json(net, str(path))
    with pytest.raises(FeederError) as info:
        pandapower_json.load_feeder(path, spec=parse_feeder_spec(f"{path};{ASSUME}"))
    assert info.value.problems == [f"net.trafo[0]: vector_group = {group!r}; " + (
        "expected Dyn, YNyn or Yyn with an optional clock number, e.g. Dyn5, YNyn0" if group == "Yzn11" else
        "clock numbers are 0-11, odd for Dyn and even for YNyn and Yyn")]


def test_vector_group_contradicting_shift_is_reported(tmp_path: Path) -> None:
    net = pn.panda_four_load_branch()
    net.trafo["vector_group"], net.trafo["shift_degree"] = "Dyn5", 30.0
    path = tmp_path / "net.json"
    pp.to_json(net, str(path))
    with pytest.raises(FeederError) as info:
        pandapower_json.load_feeder(path, spec=parse_feeder_spec(f"{path};{ASSUME}"))
    assert info.value.problems == ["net.trafo[0]: shift_degree = 30 contradicts vector_group = 'Dyn5' (clock 5 = "
                                   "150 degrees); expected them to agree"]


def test_bus_bus_switches_closed_fused_open_honoured(tmp_path: Path) -> None:
    r"""HV(0) =trafo= LV(1) --line 0-- 2 ==closed b-switch== 3 --line 1-- 4 (load); 4 ..open b-switch.. 1,
    and an open line switch on line 2 (1 -- 4), a normally open tie."""
    net = pp.create_empty_network()
    hv, lv, b2, b3, b4 = (pp.create_bus(net, vn) for vn in (10.0, 0.4, 0.4, 0.4, 0.4))
    pp.create_ext_grid(net, hv)
    pp.create_transformer_from_parameters(net, hv, lv, sn_mva=0.25, vn_hv_kv=10.0, vn_lv_kv=0.4, vkr_percent=1.2,
                                          vk_percent=4.0, pfe_kw=0.0, i0_percent=0.0, vector_group="Dyn5",
                                          shift_degree=150.0)
    cable = {"r_ohm_per_km": 0.2, "x_ohm_per_km": 0.08, "c_nf_per_km": 0.0, "max_i_ka": 0.2}
    pp.create_line_from_parameters(net, lv, b2, length_km=0.1, **cable)
    pp.create_line_from_parameters(net, b3, b4, length_km=0.2, **cable)
    tie = pp.create_line_from_parameters(net, lv, b4, length_km=0.3, **cable)
    pp.create_switch(net, b2, b3, et="b", closed=True)
    pp.create_switch(net, b4, lv, et="b", closed=False)
    pp.create_switch(net, lv, tie, et="l", closed=False)
    pp.create_load(net, b4, p_mw=0.01, name="shop 4")
    path = tmp_path / "net.json"
    pp.to_json(net, str(path))
    spec = parse_feeder_spec(f"{path};{ASSUME}")
    feeder = pandapower_json.load_feeder(path, spec=spec)
    assert str(b3) not in feeder.bus_ids() and str(b2) in feeder.bus_ids()
    assert [(ln.from_bus, ln.to_bus, ln.switch) for ln in feeder.lines] == [
        (str(lv), str(b2), LineSwitch.NONE), (str(b2), str(b4), LineSwitch.NONE),
        (str(lv), str(b4), LineSwitch.NORMALLY_OPEN)]
    assert [c.id for c in feeder.customers] == ["shop-4"]
    assert feeder.customers[0].distance_km == pytest.approx(0.3)
    p_kw, q_kvar = _states(feeder, k=1, seed=5, max_kw=10.0)
    result = create_powerflow(feeder, engine=Engine.PGM).solve(p_kw=p_kw, q_kvar=q_kvar)
    net.line.loc[tie, "in_service"] = False  # runpp_3ph does not open line switches itself in every version
    reference = _reference_vm_pu(net, feeder, spec, p_kw[0], q_kvar[0])
    expected = reference.loc[[int(b.id) for b in feeder.buses], ["vm_a_pu", "vm_b_pu", "vm_c_pu"]].to_numpy()
    assert np.abs(result.vm_pu[0] - expected).max() <= TOLERANCE_PU


@pytest.mark.parametrize(("suffix", "message"), [
    ("", "have no zero-sequence data in r0_ohm_per_km, x0_ohm_per_km"),
    (";zero-sequence=r0/r1=-1,x0/x1=4", "--feeder zero-sequence='r0/r1=-1,x0/x1=4': r0/r1: Input should be greater"),
    (";zero-sequence=r0/r1", "--feeder zero-sequence='r0/r1': 'r0/r1' is not name=value"),
    (";colour=blue", "unknown key 'colour'; expected zero-sequence, ext-grid, vector-group or transformer"),
    (f";{ASSUME};transformer=7", "net.trafo: no transformer '7' (index or name); expected one of 0"),
])
def test_bad_input_ends_in_one_message_and_exit_2(suffix: str, message: str, tmp_path: Path) -> None:
    _, path = _saved(pn.four_loads_with_branches_out, tmp_path)
    result = runner.invoke(app, ["replay", "--feeder", f"{path}{suffix}", "--out", str(tmp_path / "run"), *PLAIN])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_summary_grid_json_replays_without_a_traceback(tmp_path: Path) -> None:
    """The issue's case: ieee_european_lv_asymmetric() saved as JSON. Without data it replays its static loads
    (one day, constant) and says so (issue 29: once refused for lack of data)."""
    _, path = _saved(pn.ieee_european_lv_asymmetric, tmp_path)
    result = runner.invoke(app, ["replay", "--feeder", str(path), "--out", str(tmp_path / "run"), "--tick", "900",
                                 *PLAIN])
    assert result.exit_code == 0, result.output
    assert "the network carries no profiles: its static loads" in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_spec_parser_rejects_what_it_cannot_read() -> None:
    with pytest.raises(ScenarioError, match=r"'nothing' is not key=value"):
        parse_feeder_spec("net.json;nothing")
    spec = parse_feeder_spec("net.json;zero-sequence=r0/r1=3,x0/x1=2;transformer=1;vector-group=Dyn5")
    assert spec.zero_sequence is not None and (spec.zero_sequence.r0_r1, spec.zero_sequence.c0_c1) == (3.0, 1.0)
    assert (spec.transformer, spec.vector_group, spec.path) == ("1", "Dyn5", Path("net.json"))


def test_cigre_lv_without_assumptions_is_one_message_listing_what_to_state(tmp_path: Path) -> None:
    """The issue's case (118 problems before): now 6, naming pandapower's columns and the keys to state."""
    _, path = _saved(pn.create_cigre_network_lv, tmp_path)
    result = runner.invoke(app, ["replay", "--feeder", str(path), "--out", str(tmp_path / "run"), *PLAIN])
    assert result.exit_code == 2 and "Traceback" not in result.output
    text = " ".join(result.output.split())
    assert "6 problem(s) in the feeder description" in text
    assert text.count("vector_group is empty") == 3
    for part in ("FILE;vector-group=Dyn1", "FILE;transformer=N", "zero-sequence=r0/r1=…,x0/x1=…",
                 "ext-grid=x0x_max=…,r0x0_max=…"):
        assert part in text


def test_open_tie_between_two_lv_networks_is_left_out(tmp_path: Path) -> None:
    """CIGRE LV with an open tie line from the residential (R) to the industrial (I) LV network."""
    net = pn.create_cigre_network_lv()
    r_end, i_end = (int(net.bus.index[net.bus.name == name][0]) for name in ("Bus R18", "Bus I2"))
    tie = pp.create_line_from_parameters(net, r_end, i_end, length_km=0.2, r_ohm_per_km=0.2, x_ohm_per_km=0.08,
                                         c_nf_per_km=0.0, max_i_ka=0.2)
    pp.create_switch(net, r_end, tie, et="l", closed=False)
    path = tmp_path / "tie.json"
    pp.to_json(net, str(path))
    for i in (0, 1):
        feeder = pandapower_json.load_feeder(path, spec=parse_feeder_spec(
            f"{path};{ASSUME};vector-group=Dyn1;transformer={i}"))
        assert str(tie) not in {ln.id for ln in feeder.lines}
    net.switch.loc[net.switch.index[-1], "closed"] = True
    pp.to_json(net, str(path))
    with pytest.raises(FeederError, match=r"net.trafo\[1\]: its LV bus 21 is reached from transformer 0.s LV network"):
        pandapower_json.load_feeder(path, spec=parse_feeder_spec(f"{path};{ASSUME};vector-group=Dyn1;transformer=0"))


def test_the_vector_group_hint_follows_shift_degree(tmp_path: Path) -> None:
    """SimBench transformers carry shift_degree = 150 and no vector_group: the hint says Dyn5, not Dyn1."""
    net = pn.create_kerber_landnetz_kabel_1()
    net.trafo["vector_group"] = None
    net.trafo["shift_degree"] = 150.0
    path = tmp_path / "net.json"
    pp.to_json(net, str(path))
    with pytest.raises(FeederError, match=r"vector-group=Dyn5"):
        pandapower_json.load_feeder(path, spec=parse_feeder_spec(f"{path};{ASSUME}"))
