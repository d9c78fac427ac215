"""A pandapower network's own data as meter data (issue 29, item 9): SimBench profiles checked against
``simbench.get_absolute_values``, a hand-made profile table checked by hand, and a network without profiles
replayed on its static loads with a note."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandapower as pp
import pandapower.networks as pn
import pandas as pd
import pytest
from typer.testing import CliRunner

from phasetwin.cli.main import app
from streams.meters.table import MeterTable
from twin.feeders import open_feeder

runner = CliRunner()
ASSUME = "zero-sequence=r0/r1=4,x0/x1=4;ext-grid=s_sc_max_mva=100,rx_max=0.1,x0x_max=1,r0x0_max=0.1"
PLAIN = ["--psd", "0", "--pess", "0", "--controller", "none", "--no-baseline"]


def _meter_data(path: Path, assumptions: str = ASSUME) -> MeterTable:
    """The meter data of the pandapower network at ``path``, as the feeder catalogue reads them."""
    entry = open_feeder(f"{path};{assumptions}")
    assert entry.load_data is not None
    return entry.load_data(entry.load_feeder())


def test_hand_made_profiles_become_meter_data(tmp_path: Path) -> None:
    """Two profiles on a Kerber network, four 15-minute steps: customer kW = factor × p_mw × 1000 × scaling,
    spread over the three terminals; a generator at a customer's bus is taken off that customer."""
    net = pn.create_kerber_landnetz_kabel_1()
    net.load["profile"] = ["H0"] * (len(net.load) - 1) + ["G1"]
    net.load.loc[net.load.index[0], "scaling"] = 2.0
    times = ["01.01.2016 00:00", "01.01.2016 00:15", "01.01.2016 00:30", "01.01.2016 00:45"]
    net.profiles = {"load": pd.DataFrame({"time": times, "H0_pload": [0.1, 0.2, 0.3, 0.4],
                                          "H0_qload": [0.0, 0.1, 0.0, 0.1], "G1_pload": [1.0, 1.0, 0.5, 0.5],
                                          "G1_qload": [0.0, 0.0, 0.0, 0.0]}),
                    "renewables": pd.DataFrame({"time": times, "PV1": [0.0, 0.5, 1.0, 0.0]})}
    pp.create_sgen(net, bus=net.load.bus.iloc[1], p_mw=0.006, profile="PV1")
    path = tmp_path / "net.json"
    pp.to_json(net, str(path))
    table = _meter_data(path)
    assert table.step_s == 900 and str(table.time_utc[0]) == "2016-01-01 00:00:00+00:00"
    p_mw = net.load.p_mw.to_numpy()
    first = table.p_kw[:, 0, :].sum(axis=1)
    np.testing.assert_allclose(first, np.array([0.1, 0.2, 0.3, 0.4]) * p_mw[0] * 1e3 * 2.0)
    second = table.p_kw[:, 1, :].sum(axis=1)  # the customer with the PV behind its meter
    np.testing.assert_allclose(second, np.array([0.1, 0.2, 0.3, 0.4]) * p_mw[1] * 1e3
                               - np.array([0.0, 0.5, 1.0, 0.0]) * 6.0)
    last = table.p_kw[:, -1, :].sum(axis=1)
    np.testing.assert_allclose(last, np.array([1.0, 1.0, 0.5, 0.5]) * p_mw[-1] * 1e3)
    assert "1 generator(s) netted behind the meter" in table.quality.notes[0]


def test_a_network_without_profiles_replays_its_static_loads_with_a_note(tmp_path: Path) -> None:
    net = pn.create_kerber_landnetz_kabel_1()
    path = tmp_path / "net.json"
    pp.to_json(net, str(path))
    result = runner.invoke(app, ["replay", "--feeder", str(path), "--assume", ASSUME.split(";")[0],
                                 "--assume", ASSUME.split(";")[1], "--tick", "900", "--out", str(tmp_path / "run"),
                                 *PLAIN])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["ticks"] == 96
    delivered_kwh = sum(summary["energy_kwh"][ph] for ph in "abc")
    assert 0 < delivered_kwh - net.load.p_mw.sum() * 1e3 * 24 < summary["losses_kwh"]
    assert "the network carries no profiles: its static loads" in " ".join(result.output.split())
    quality = json.loads((tmp_path / "run" / "data_quality.json").read_text())
    assert "static loads" in json.dumps(quality)
    table = _meter_data(path)
    np.testing.assert_allclose(table.p_kw.sum(axis=(1, 2)), net.load.p_mw.sum() * 1e3)


@pytest.mark.slow
def test_simbench_profiles_match_simbench_own_absolute_values(tmp_path: Path) -> None:
    sb = pytest.importorskip("simbench")
    net = sb.get_simbench_net("1-LV-rural1--0-sw")
    path = tmp_path / "rural1.json"
    pp.to_json(net, str(path))
    table = _meter_data(path, f"{ASSUME};vector-group=Dyn5")
    absolute = sb.get_absolute_values(net, profiles_instead_of_study_cases=True)
    load_kw = absolute[("load", "p_mw")].to_numpy() * 1e3
    sgen_kw = absolute[("sgen", "p_mw")].to_numpy() * 1e3
    expected = load_kw.copy()
    order = {bus: i for i, bus in reversed(list(enumerate(net.load.bus)))}  # the first load at each bus
    for j, bus in enumerate(net.sgen.bus):
        expected[:, order[bus]] -= sgen_kw[:, j]
    assert table.p_kw.shape == (35136, len(net.load), 3) and table.step_s == 900
    np.testing.assert_allclose(table.p_kw.sum(axis=2), expected, atol=1e-9)
    q_kvar = absolute[("load", "q_mvar")].to_numpy() * 1e3
    np.testing.assert_allclose(table.q_kvar.sum(axis=2), q_kvar, atol=1e-9)
