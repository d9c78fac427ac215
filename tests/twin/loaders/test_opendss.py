"""OpenDSS circuits as feeders: the IEEE European LV feeder written as a .dss from its bundled CSVs loads to the
bundled loader's feeder and day, and the twin agrees with OpenDSS's own solution of the same circuit."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import opendssdirect as dss
import pytest
from support.opendss_circuits import SMALL, write_ieee_european_lv
from support.opendss_snapshots import snapshot_load_vm_pu
from typer.testing import CliRunner

from phasetwin.cli.main import app
from twin.errors import DataError, FeederError
from twin.loaders import ieee_european_lv, opendss
from twin.network import Feeder, LineSwitch, VectorGroup
from twin.phasing import PhaseMap
from twin.powerflow.factory import create_powerflow
from twin.powerflow.interface import Engine, PowerFlowResult

runner = CliRunner()
PLAIN = ["--psd", "0", "--pess", "0", "--controller", "none"]
TICKS = (0, 700, 1140)  # midnight, midday, the evening peak
TOLERANCE_PU = 1e-4


@pytest.fixture(scope="module")
def master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_ieee_european_lv(tmp_path_factory.mktemp("ieee_dss"))


@pytest.fixture(scope="module")
def circuit(master: Path) -> opendss.Circuit:
    return opendss.read_circuit(master)


def _lower(feeder: Feeder) -> Feeder:
    """The bundled feeder with OpenDSS's lower-case names."""
    return Feeder.model_validate({
        "name": "ieee_european_lv",
        "buses": [b.model_copy(update={"id": b.id.lower()}) for b in feeder.buses],
        "lines": [ln.model_copy(update={"id": ln.id.lower(), "from_bus": ln.from_bus.lower(),
                                        "to_bus": ln.to_bus.lower()}) for ln in feeder.lines],
        "transformer": feeder.transformer.model_copy(update={"id": feeder.transformer.id.lower(),
                                                             "hv_bus": feeder.transformer.hv_bus.lower()}),
        "source": feeder.source.model_copy(update={"bus": feeder.source.bus.lower()}),
        "customers": [c.model_copy(update={"id": c.id.lower()}) for c in feeder.customers],
    })


def _by_id(items: tuple[object, ...]) -> dict[str, dict[str, object]]:
    return {getattr(x, "id"): x.model_dump() for x in items}  # type: ignore[attr-defined]  # noqa: B009


def test_ieee_circuit_loads_to_the_bundled_feeder(circuit: opendss.Circuit) -> None:
    bundled = _lower(ieee_european_lv.load_feeder())
    ours = circuit.feeder
    assert ours.name == bundled.name
    for mine, theirs in ((ours.buses, bundled.buses), (ours.lines, bundled.lines),
                         (ours.customers, bundled.customers)):
        a, b = _by_id(mine), _by_id(theirs)
        assert a.keys() == b.keys()
        for key in a:
            numbers = {k for k, v in b[key].items() if isinstance(v, float)}
            assert {k: v for k, v in a[key].items() if k not in numbers} == {
                k: v for k, v in b[key].items() if k not in numbers}, key
            assert {k: a[key][k] for k in numbers} == pytest.approx({k: b[key][k] for k in numbers}, rel=1e-12,
                                                                   abs=1e-15), key
    for mine_one, theirs_one in ((ours.transformer, bundled.transformer), (ours.source, bundled.source)):
        a1, b1 = mine_one.model_dump(), theirs_one.model_dump()
        numbers = {k for k, v in b1.items() if isinstance(v, float)}
        assert {k: v for k, v in a1.items() if k not in numbers} == {k: v for k, v in b1.items() if k not in numbers}
        assert {k: a1[k] for k in numbers} == pytest.approx({k: b1[k] for k in numbers}, rel=1e-12)
    assert ours.transformer.vector_group is VectorGroup.DYN and ours.transformer.shift_deg == 30.0


def test_ieee_load_shapes_are_the_bundled_day(circuit: opendss.Circuit) -> None:
    bundled = ieee_european_lv.load_day(ieee_european_lv.load_feeder())
    assert circuit.meter is not None
    assert circuit.meter.customer_ids == tuple(c.lower() for c in bundled.customer_ids)
    assert circuit.meter.step_s == 60 and circuit.meter.time_utc.equals(bundled.time_utc)
    np.testing.assert_array_equal(circuit.meter.p_kw, bundled.p_kw)
    np.testing.assert_allclose(circuit.meter.q_kvar, bundled.q_kvar, rtol=1e-12, atol=1e-15)


def _phase_loads(feeder: Feeder, p_kw: np.ndarray, q_kvar: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Meter rows [t, customer, terminal] → power-flow states [t, customer, network phase]."""
    phases = PhaseMap.initial(feeder.customers)
    return phases.to_phases(p_kw), phases.to_phases(q_kvar)


def test_ieee_circuit_gives_the_bundled_voltages(circuit: opendss.Circuit) -> None:
    bundled_feeder = ieee_european_lv.load_feeder()
    day = ieee_european_lv.load_day(bundled_feeder)
    p, q = _phase_loads(bundled_feeder, day.p_kw[list(TICKS)], day.q_kvar[list(TICKS)])
    theirs = create_powerflow(bundled_feeder, engine=Engine.PGM).solve(p_kw=p, q_kvar=q)
    assert circuit.meter is not None
    p2, q2 = _phase_loads(circuit.feeder, circuit.meter.p_kw[list(TICKS)], circuit.meter.q_kvar[list(TICKS)])
    ours = create_powerflow(circuit.feeder, engine=Engine.PGM).solve(p_kw=p2, q_kvar=q2)
    row = {b.id.lower(): k for k, b in enumerate(bundled_feeder.buses)}
    order = [row[b.id] for b in circuit.feeder.buses]
    assert np.abs(ours.vm_pu - theirs.vm_pu[:, order]).max() <= TOLERANCE_PU
    assert theirs.vm_pu.min() < 1.03  # loaded states, not the 1.05 p.u. of no load


def test_twin_agrees_with_opendss_at_three_load_states(master: Path, circuit: opendss.Circuit) -> None:
    feeder = circuit.feeder
    assert circuit.meter is not None
    p, q = _phase_loads(feeder, circuit.meter.p_kw[list(TICKS)], circuit.meter.q_kvar[list(TICKS)])
    expected = snapshot_load_vm_pu(master, feeder, p, q, tolerance=1e-10)
    twin = create_powerflow(feeder, engine=Engine.PGM).solve(p_kw=p, q_kvar=q)
    bus = {b.id: k for k, b in enumerate(feeder.buses)}
    checked = 0
    for i, c in enumerate(feeder.customers):
        for ph in c.phases:
            assert np.abs(twin.vm_pu[:, bus[c.bus], int(ph)] - expected[:, i, int(ph)]).max() <= TOLERANCE_PU, c.id
            checked += 1
    assert checked == 55
    assert expected[np.isfinite(expected)].min() < 1.03


def test_matrix_impedances_units_and_switches(tmp_path: Path) -> None:
    path = tmp_path / "small.dss"
    path.write_text(SMALL)
    feeder = opendss.read_circuit(path).feeder
    lines = {ln.id: ln for ln in feeder.lines}
    per_km = 1 / 0.3048  # kft → km
    assert lines["l1"].length_km == pytest.approx(300 * 0.3048e-3)
    assert (lines["l1"].r1_ohm_per_km, lines["l1"].r0_ohm_per_km) == pytest.approx((0.2 * per_km, 0.5 * per_km))
    assert (lines["l1"].x1_ohm_per_km, lines["l1"].x0_ohm_per_km) == pytest.approx((0.16 * per_km, 0.43 * per_km))
    assert (lines["l1"].c1_nf_per_km, lines["l1"].c0_nf_per_km) == pytest.approx((3.5 * per_km, 2.0 * per_km))
    assert lines["l1"].max_i_ka == pytest.approx(0.25)
    assert (lines["l2"].r1_ohm_per_km, lines["l2"].x0_ohm_per_km, lines["l2"].length_km) == pytest.approx(
        (0.2, 0.3, 0.25))
    assert lines["tie"].switch is LineSwitch.NORMALLY_OPEN
    tr = feeder.transformer
    assert (tr.vkr_percent, tr.vk_percent, tr.shift_deg) == pytest.approx((1.2, math.hypot(1.2, 4.5), 330.0))
    src = feeder.source
    assert (src.s_sc_mva, src.rx_ratio, src.vm_pu) == pytest.approx((100.0, 1 / 8, 1.02))
    assert [(c.id, c.bus, c.connection) for c in feeder.customers] == [("house", "b2", "B"), ("shop", "b1", "ABC")]
    assert feeder.customers[0].power_factor == pytest.approx(3 / math.hypot(3, 1))


def _small_state_agrees_with_opendss(path: Path, feeder: Feeder) -> PowerFlowResult:
    """The twin's solution of one load state of the SMALL circuit (``feeder``, read from ``path``), checked against
    OpenDSS's own solution of ``path`` at every bus but the source."""
    p = np.array([[[0.0, 3.0, 0.0], [3.0, 3.0, 3.0]]])
    q = np.array([[[0.0, 1.0, 0.0], [1.0, 1.0, 1.0]]])
    twin = create_powerflow(feeder, engine=Engine.PGM).solve(p_kw=p, q_kvar=q)
    dss.Text.Command("clear")
    dss.Text.Command(f'redirect "{path}"')
    dss.Text.Command("set tolerance=1e-10")
    dss.Solution.Solve()
    for k, b in enumerate(feeder.buses):
        if b.id == "sourcebus":
            continue
        dss.Circuit.SetActiveBus(b.id)
        mags = dss.Bus.puVmagAngle()[0::2]
        np.testing.assert_allclose(twin.vm_pu[0, k], mags[:3], atol=TOLERANCE_PU)
    return twin


def test_small_circuit_agrees_with_opendss(tmp_path: Path) -> None:
    path = tmp_path / "small.dss"
    path.write_text(SMALL)
    feeder = opendss.read_circuit(path).feeder
    twin = _small_state_agrees_with_opendss(path, feeder)
    assert twin.vm_pu[0, 1:].min() < feeder.source.vm_pu - 0.01  # loaded, not the no-load voltage


def test_unsupported_elements_are_reported_at_once_by_name(tmp_path: Path) -> None:
    path = tmp_path / "bad.dss"
    path.write_text(SMALL + "\n".join([
        "new capacitor.cap1 bus1=b1 kvar=10 kv=0.4",
        "new line.lat bus1=b1.1 bus2=b3.1 phases=1 r1=0.3 x1=0.1 length=0.1 units=km",
        "new load.motor bus1=b1 phases=3 kv=0.4 kw=5 model=2",
        "new load.welder bus1=b2.1.2 phases=1 kv=0.4 kw=2 conn=delta",
        "new pvsystem.pv1 bus1=b2 phases=3 kv=0.4 pmpp=5 kva=5",
        "new monitor.m1 element=line.l1 terminal=1",
    ]) + "\n")
    with pytest.raises(FeederError, match=r"bad.dss: 5 problem\(s\)") as info:
        opendss.read_circuit(path)
    expected = [
        "Capacitor.cap1: capacitor elements are not supported in an LV feeder; remove it (a shunt capacitor",
        "PVSystem.pv1: pvsystem elements are not supported in an LV feeder; remove it and give its customer's "
        "net meter data with --data",
        "Line.lat: phases = 1; only three-phase lines are supported",
        "Load.motor: model = 2; only constant-power loads (model=1) are supported",
        "Load.welder: conn = delta; only wye (phase-to-neutral) loads are supported",
    ]
    problems = info.value.problems
    assert len(problems) == len(expected) and all(p.startswith(e) for p, e in zip(problems, expected, strict=True))


def test_loads_without_shapes_need_data(tmp_path: Path) -> None:
    path = tmp_path / "small.dss"
    path.write_text(SMALL)
    cache = opendss.CircuitCache(path)
    with pytest.raises(DataError, match=r"small.dss: no load has a load shape \(yearly, daily or duty\); give meter "
                                        r"data with --data"):
        cache.meter_data(cache.feeder())


def test_a_year_of_hourly_shapes_starts_on_new_year(tmp_path: Path) -> None:
    """8760 hourly points from 2024-01-01 00:00 UTC; mult × kW without useactual; q from qmult × kvar."""
    mult = np.round(0.5 + 0.4 * np.sin(np.arange(8760) * 2 * np.pi / 24), 6)
    (tmp_path / "year.txt").write_text("\n".join(map(str, mult)) + "\n")
    (tmp_path / "q.txt").write_text("\n".join(map(str, mult / 2)) + "\n")
    path = tmp_path / "small.dss"
    path.write_text(SMALL.replace("set voltagebases", "new loadshape.year npts=8760 interval=1 mult=(file=year.txt) "
                                  "qmult=(file=q.txt)\nbatchedit load..* yearly=year\nset voltagebases"))
    meter = opendss.read_circuit(path).meter
    assert meter is not None and meter.step_s == 3600
    assert meter.time_utc[0].isoformat() == "2024-01-01T00:00:00+00:00" and len(meter.time_utc) == 8760
    np.testing.assert_allclose(meter.p_kw[:, 0, 0], mult * 3.0)  # house: 3 kW on one terminal
    np.testing.assert_allclose(meter.p_kw[:, 1], np.repeat(mult[:, None] * 3.0, 3, axis=1))  # shop: 9 kW / 3
    np.testing.assert_allclose(meter.q_kvar[:, 0, 0], mult / 2 * 1.0)


def test_replay_of_a_dss_circuit_uses_its_load_shapes(master: Path, tmp_path: Path) -> None:
    """The circuit's day replayed for two hours vs the bundled feeder's: the same energy and unbalance."""
    args = ["--end", "2024-01-15T02:00", *PLAIN]
    ours = runner.invoke(app, ["replay", "--feeder", str(master), "--out", str(tmp_path / "dss"), *args])
    assert ours.exit_code == 0, ours.output
    theirs = runner.invoke(app, ["replay", "--out", str(tmp_path / "csv"), *args])
    assert theirs.exit_code == 0, theirs.output
    a, b = (json.loads((tmp_path / run / "summary.json").read_text()) for run in ("dss", "csv"))
    assert a["feeder"] == "ieee_european_lv" and a["ticks"] == b["ticks"] == 120
    for ph in "abc":
        assert a["energy_kwh"][ph] == pytest.approx(b["energy_kwh"][ph], rel=1e-6)
    assert a["max_p_unb_kw"] == pytest.approx(b["max_p_unb_kw"], rel=1e-9)


@pytest.mark.parametrize(("text", "message"), [
    ("new circuit.x basekv=11\nnew line.l1 bus1=a bus2=b linecode=nosuchcode\n", "OpenDSS cannot compile the circuit"),
    ("clear\n", "no circuit defined"),
])
def test_bad_circuit_ends_in_one_message_and_exit_2(text: str, message: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.dss"
    path.write_text(text)
    result = runner.invoke(app, ["replay", "--feeder", str(path), "--out", str(tmp_path / "run"), *PLAIN])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_a_dss_circuit_takes_no_pandapower_assumptions(tmp_path: Path) -> None:
    path = tmp_path / "small.dss"
    path.write_text(SMALL)
    result = runner.invoke(app, ["replay", "--feeder", f"{path};transformer=1", "--out", str(tmp_path / "run"),
                                 *PLAIN])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "an OpenDSS circuit takes no assumptions" in " ".join(result.output.split())


def test_start_anchors_the_load_shapes(master: Path, tmp_path: Path) -> None:
    """Load shapes carry no date: a --start outside their default day starts them there (once refused: no data
    in the period); the replayed energy is that of the shapes' own first two hours."""
    args = [*PLAIN, "--no-baseline"]
    moved = runner.invoke(app, ["replay", "--feeder", str(master), "--start", "2023-07-03T00:00", "--end",
                                "2023-07-03T02:00", "--out", str(tmp_path / "moved"), *args])
    assert moved.exit_code == 0, moved.output
    own = runner.invoke(app, ["replay", "--feeder", str(master), "--end", "2024-01-15T02:00", "--out",
                              str(tmp_path / "own"), *args])
    assert own.exit_code == 0, own.output
    a, b = (json.loads((tmp_path / run / "summary.json").read_text()) for run in ("moved", "own"))
    assert a["start_utc"].startswith("2023-07-03T00:00") and a["ticks"] == b["ticks"] == 120
    for ph in "abc":
        assert a["energy_kwh"][ph] == pytest.approx(b["energy_kwh"][ph], rel=1e-9)
    quality = json.loads((tmp_path / "moved" / "data_quality.json").read_text())
    assert "load shapes anchored at --start 2023-07-03" in json.dumps(quality)


def test_single_phase_service_lines_fold_into_their_customers(tmp_path: Path) -> None:
    """A house behind a single-phase service line (b2 node 2 → b3 node 1, two segments): refused with the option
    to fold it; folded, the house sits at b2 on phase B, and the twin's voltages agree with OpenDSS's solution of
    the whole circuit (service cables of negligible impedance) at every three-phase bus."""
    path = tmp_path / "service.dss"
    path.write_text(SMALL.replace(
        "new load.house bus1=b2.2 phases=1",
        "new line.svc1 bus1=b2.2 bus2=b4.1 phases=1 r1=1e-6 x1=1e-6 r0=1e-6 x0=1e-6 c1=0 c0=0 units=km length=0.01\n"
        "new line.svc2 bus1=b4.1 bus2=b3.1 phases=1 r1=1e-6 x1=1e-6 r0=1e-6 x0=1e-6 c1=0 c0=0 units=km length=0.01\n"
        "new load.house bus1=b3.1 phases=1"))
    with pytest.raises(FeederError, match="--assume service-lines=fold"):
        opendss.read_circuit(path)
    feeder = opendss.read_circuit(path, fold_service_lines=True).feeder
    house = next(c for c in feeder.customers if c.id == "house")
    assert house.bus == "b2" and [p.name for p in house.phases] == ["B"]
    assert {b.id for b in feeder.buses} >= {"b1", "b2"} and not {"b3", "b4"} & {b.id for b in feeder.buses}
    _small_state_agrees_with_opendss(path, feeder)
    from phasetwin.run.scenario import Scenario
    from twin.feeders import open_feeder

    scenario = Scenario.model_validate({"feeder": str(path), "assumptions": {"service-lines": "fold"}})
    assert open_feeder(scenario.feeder_spec).load_feeder().customer("house").bus == "b2"
    with pytest.raises(ValueError, match="service-lines=fold is for OpenDSS circuits"):
        Scenario.model_validate({"feeder": "net.json", "assumptions": {"service-lines": "fold"}})


def test_default_tick_and_period_follow_a_weeks_shapes(tmp_path: Path) -> None:
    """A week of 15-minute shapes once replayed one day at 60 s by default: now the whole week at 900 s."""
    mult = np.round(0.5 + 0.4 * np.sin(np.arange(672) * 2 * np.pi / 96), 6)
    (tmp_path / "week.txt").write_text("\n".join(map(str, mult)) + "\n")
    path = tmp_path / "week.dss"
    path.write_text(SMALL.replace("set voltagebases", "new loadshape.week npts=672 minterval=15 mult=(file=week.txt)\n"
                                  "batchedit load..* yearly=week\nset voltagebases"))
    result = runner.invoke(app, ["replay", "--feeder", str(path), "--out", str(tmp_path / "run"), *PLAIN,
                                 "--no-baseline"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert (summary["tick_s"], summary["ticks"]) == (900, 672)
    assert "following the data: tick 900 s" in " ".join(result.output.split())
    chosen = runner.invoke(app, ["replay", "--feeder", str(path), "--tick", "300", "--end", "2024-01-01T06:00",
                                 "--out", str(tmp_path / "chosen"), *PLAIN, "--no-baseline"])
    assert chosen.exit_code == 0, chosen.output
    summary = json.loads((tmp_path / "chosen" / "summary.json").read_text())
    assert (summary["tick_s"], summary["ticks"]) == (300, 72)
