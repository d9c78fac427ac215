"""The zbus engine against independent solutions: OpenDSS's own solver on the IEEE European LV circuit written
from its CSVs, power-grid-model on every bus of the IEEE day, a Kerber and a CIGRE LV network of pandapower (with
line capacitances), a small imported .dss circuit with matrix impedances and a switch, and Liège's hardest winter
quarter-hour (0.55-0.60 p.u.), which the fixed point leaves to the fallback chain.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandapower as pp
import pandapower.networks as pn
import pytest
from support.network_loads import network_loads
from support.opendss_circuits import SMALL, write_ieee_european_lv
from support.opendss_snapshots import snapshot_load_vm_pu
from support.small_feeders import ring_feeder, two_bus_feeder

from controllers.online.settings import ControllerSettings, Strategy
from devices.fleet import FleetSpec
from phasetwin.run.replay import replay
from phasetwin.run.scenario import Scenario
from streams.runfolder.matrix import read_frame
from twin.errors import PowerFlowError
from twin.loaders import ieee_european_lv, opendss, pandapower_json
from twin.loaders.assumptions import parse_feeder_spec
from twin.network import Feeder, VectorGroup
from twin.phasing import PhaseMap
from twin.powerflow import (
    Engine,
    FallbackKind,
    FallbackPowerFlow,
    PowerFlowNotConverged,
    PowerFlowResult,
    build_engine,
    create_powerflow,
    default_rungs,
    engine_summary,
)
from twin.powerflow.zbus import ZbusPowerFlow, zbus_unsupported_reason

OPENDSS_PU = 1e-6
AGREE_PU = 1e-6
AGREE_KA = 1e-6  # currents: 1 mA
AGREE_VUF_PCT = 2e-4  # what 1e-6 p.u. on the voltages allows
TICKS = (0, 700, 1140)  # midnight, midday, the evening peak
ASSUME = "zero-sequence=r0/r1=4,x0/x1=4,c0/c1=1;ext-grid=s_sc_max_mva=100,rx_max=0.1,x0x_max=1,r0x0_max=0.1"


def _phase_loads(feeder: Feeder, p_kw: np.ndarray, q_kvar: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Meter rows [t, customer, terminal] → power-flow states [t, customer, network phase]."""
    phases = PhaseMap.initial(feeder.customers)
    return phases.to_phases(p_kw), phases.to_phases(q_kvar)


def assert_agree(ours: PowerFlowResult, theirs: PowerFlowResult) -> None:
    np.testing.assert_allclose(ours.vm_pu, theirs.vm_pu, rtol=0, atol=AGREE_PU)
    np.testing.assert_allclose(ours.i_ka, theirs.i_ka, rtol=0, atol=AGREE_KA)
    np.testing.assert_allclose(ours.i_n_ka, theirs.i_n_ka, rtol=0, atol=AGREE_KA)
    np.testing.assert_allclose(ours.p_trafo_kw, theirs.p_trafo_kw, rtol=0, atol=1e-4)
    np.testing.assert_allclose(ours.q_trafo_kvar, theirs.q_trafo_kvar, rtol=0, atol=1e-4)
    np.testing.assert_allclose(ours.loss_kw, theirs.loss_kw, rtol=0, atol=1e-5)
    np.testing.assert_allclose(ours.vuf_pct, theirs.vuf_pct, rtol=0, atol=AGREE_VUF_PCT)
    angle = np.angle(np.exp(1j * np.radians(ours.va_deg - theirs.va_deg)), deg=True)
    assert np.abs(angle).max() < 1e-4


def random_states(feeder: Feeder, *, k: int, seed: int, max_kw: float) -> tuple[np.ndarray, np.ndarray]:
    """Each customer draws up to max_kw per phase it uses, a quarter of them inject instead; pf 0.95."""
    rng = np.random.default_rng(seed)
    p = np.zeros((k, len(feeder.customers), 3))
    for i, c in enumerate(feeder.customers):
        for ph in c.phases:
            p[:, i, int(ph)] = rng.uniform(0.0, max_kw, k)
    p[rng.random(p.shape) < 0.25] *= -1.0
    return p, p * 0.33


@pytest.fixture(scope="module")
def ieee() -> tuple[Feeder, np.ndarray, np.ndarray]:
    feeder = ieee_european_lv.load_feeder()
    day = ieee_european_lv.load_day(feeder)
    p, q = _phase_loads(feeder, day.p_kw, day.q_kvar)
    return feeder, p, q


def test_zbus_agrees_with_opendss_on_every_load_phase(tmp_path: Path) -> None:
    master = write_ieee_european_lv(tmp_path, with_shapes=False)
    feeder = opendss.read_circuit(master).feeder  # the imported .dss feeder
    bundled = ieee_european_lv.load_feeder()
    day = ieee_european_lv.load_day(bundled)
    cust = {c.id: i for i, c in enumerate(bundled.customers)}
    order = [cust[c.id] if c.id in cust else cust[c.id.upper()] for c in feeder.customers]
    p, q = _phase_loads(feeder, day.p_kw[list(TICKS)][:, order], day.q_kvar[list(TICKS)][:, order])
    expected = snapshot_load_vm_pu(master, feeder, p, q, tolerance=1e-12)
    ours = ZbusPowerFlow(feeder).solve(p_kw=p, q_kvar=q)
    bus = {b.id: k for k, b in enumerate(feeder.buses)}
    worst = 0.0
    for s in range(p.shape[0]):
        for i, c in enumerate(feeder.customers):
            ph = int(c.phases[0])
            worst = max(worst, abs(ours.vm_pu[s, bus[c.bus], ph] - expected[s, i, ph]))
    assert worst <= OPENDSS_PU
    assert ours.vm_pu[:, 1:].min() < 1.03  # loaded states, not the 1.05 p.u. of no load


def test_zbus_agrees_with_pgm_on_every_bus_of_ieee_minutes(ieee: tuple[Feeder, np.ndarray, np.ndarray]) -> None:
    feeder, p, q = ieee
    minutes = slice(1130, 1150)  # the evening peak
    ours = ZbusPowerFlow(feeder).solve(p_kw=p[minutes], q_kvar=q[minutes])
    theirs = create_powerflow(feeder, engine=Engine.PGM).solve(p_kw=p[minutes], q_kvar=q[minutes])
    assert_agree(ours, theirs)


def test_a_batch_is_its_states_solved_one_by_one(ieee: tuple[Feeder, np.ndarray, np.ndarray]) -> None:
    feeder, p, q = ieee
    engine = ZbusPowerFlow(feeder)
    batch = engine.solve(p_kw=p[1138:1142], q_kvar=q[1138:1142])
    for row, t in enumerate(range(1138, 1142)):
        one = engine.solve(p_kw=p[[t]], q_kvar=q[[t]])
        np.testing.assert_allclose(one.vm_pu[0], batch.vm_pu[row], rtol=0, atol=1e-9)


@pytest.mark.parametrize("family", ["kerber-landnetz-freileitung-1", "cigre-lv-trafo-1"])
def test_zbus_agrees_with_pgm_on_pandapower_lv_networks(family: str, tmp_path: Path) -> None:
    make = {"kerber-landnetz-freileitung-1": pn.create_kerber_landnetz_freileitung_1,
            "cigre-lv-trafo-1": pn.create_cigre_network_lv}[family]
    assume = ASSUME + (";vector-group=Dyn1;transformer=1" if family.startswith("cigre") else "")
    path = tmp_path / "net.json"
    pp.to_json(make(), str(path))
    feeder = pandapower_json.load_feeder(path, spec=parse_feeder_spec(f"{path};{assume}"))
    p, q = random_states(feeder, k=6, seed=3, max_kw=6.0)
    assert_agree(ZbusPowerFlow(feeder).solve(p_kw=p, q_kvar=q),
                 create_powerflow(feeder, engine=Engine.PGM).solve(p_kw=p, q_kvar=q))


SMALL_DSS = SMALL.replace("new line.l2 bus1=b1 bus2=b2", "new line.l2 bus1=b2 bus2=b1")  # a reversed line


def test_imported_dss_with_capacitance_a_reversed_line_and_a_switch_agrees_with_pgm(tmp_path: Path) -> None:
    path = tmp_path / "small.dss"
    path.write_text(SMALL_DSS)
    feeder = opendss.read_circuit(path).feeder
    assert any(ln.c1_nf_per_km > 0 for ln in feeder.lines)
    p, q = random_states(feeder, k=5, seed=7, max_kw=20.0)
    assert_agree(ZbusPowerFlow(feeder).solve(p_kw=p, q_kvar=q),
                 create_powerflow(feeder, engine=Engine.PGM).solve(p_kw=p, q_kvar=q))


def test_phase_moves_and_battery_power_change_the_right_hand_side_only(
    ieee: tuple[Feeder, np.ndarray, np.ndarray],
) -> None:
    feeder, p, q = ieee
    engine = ZbusPowerFlow(feeder)
    moved_p, moved_q = p[[1140]].copy(), q[[1140]].copy()
    moved_p[0, 0] = np.roll(moved_p[0, 0], 1)  # the first customer's load to the next phase (an STS move)
    moved_q[0, 0] = np.roll(moved_q[0, 0], 1)
    moved_p[0, 5, 0] -= 7.0  # a battery discharging 7 kW
    ours = engine.solve(p_kw=moved_p, q_kvar=moved_q)
    assert engine.rebuilds == 0 and engine.builds == 1
    assert_agree(ours, create_powerflow(feeder, engine=Engine.PGM).solve(p_kw=moved_p, q_kvar=moved_q))


def test_switching_builds_each_topology_once_and_agrees_with_pgm() -> None:
    feeder = ring_feeder()
    engine = ZbusPowerFlow(feeder)
    p, q = random_states(feeder, k=4, seed=5, max_kw=4.0)
    normal = np.array([ln.normally_closed for ln in feeder.lines])
    switched = normal.copy()
    switched[~normal] = True
    opened = next(i for i, ln in enumerate(feeder.lines) if ln.switch.value != "none" and ln.normally_closed)
    switched[opened] = False
    closed = np.array([normal, switched, normal, switched])
    ours = engine.solve(p_kw=p, q_kvar=q, line_closed=closed)
    engine.solve(p_kw=p, q_kvar=q, line_closed=closed)
    assert engine.rebuilds == 1
    assert_agree(ours, create_powerflow(feeder, engine=Engine.PGM).solve(p_kw=p, q_kvar=q, line_closed=closed))
    assert (ours.i_ka[1, opened] == 0).all()


def test_a_loop_is_refused_with_its_line_named() -> None:
    feeder = ring_feeder()
    engine = ZbusPowerFlow(feeder)
    closed = np.ones((1, len(feeder.lines)), dtype=bool)
    with pytest.raises(PowerFlowError, match="closes a loop"):
        engine.solve(p_kw=np.zeros((1, len(feeder.customers), 3)), q_kvar=np.zeros((1, len(feeder.customers), 3)),
                     line_closed=closed)
    assert zbus_unsupported_reason(feeder) is None


LIEGE_DAY = datetime(2016, 12, 10, tzinfo=UTC)
LIEGE_HARD = 40  # 2016-12-10 10:00 UTC, 0.55-0.59 p.u.


def test_liege_winter_ticks_agree_with_pgm_and_the_hard_one_goes_to_the_fallback() -> None:
    scenario = Scenario(feeder="liege-lv", start_utc=LIEGE_DAY, end_utc=LIEGE_DAY + timedelta(days=1), tick_s=900)
    feeder, day_p, day_q = network_loads(scenario)
    ticks = [0, 20, LIEGE_HARD - 1, LIEGE_HARD, LIEGE_HARD + 1, 70]
    p, q = day_p[ticks], day_q[ticks]
    with pytest.raises(PowerFlowNotConverged) as failed:
        ZbusPowerFlow(feeder).solve(p_kw=p, q_kvar=q)
    assert failed.value.failed_indices == [ticks.index(LIEGE_HARD)]
    flow = FallbackPowerFlow(ZbusPowerFlow(feeder), rungs=default_rungs(feeder, engine=Engine.ZBUS))
    ours = flow.solve(p_kw=p, q_kvar=q)
    assert set(ours.fallbacks) == {ticks.index(LIEGE_HARD)}
    assert ours.fallbacks[ticks.index(LIEGE_HARD)] in (FallbackKind.POWER_GRID_MODEL, FallbackKind.MORE_ITERATIONS)
    theirs = FallbackPowerFlow(create_powerflow(feeder, engine=Engine.PGM),
                               rungs=default_rungs(feeder, engine=Engine.PGM)).solve(p_kw=p, q_kvar=q)
    assert ours.vm_pu[ticks.index(LIEGE_HARD)].min() < 0.6
    assert_agree(ours, theirs)


def test_a_feeder_zbus_cannot_model_gets_power_grid_model_and_the_reason() -> None:
    yyn = two_bus_feeder().model_copy(update={
        "transformer": two_bus_feeder().transformer.model_copy(update={"vector_group": VectorGroup.YYN,
                                                                       "shift_deg": 0.0})})
    engine, note = build_engine(yyn, engine=Engine.ZBUS)
    assert engine.engine is Engine.PGM
    assert "Yyn" in note and "zbus not used" in note
    assert engine_summary(engine, note=note) == {"engine": "power-grid-model", "engine_note": note, "rebuilds": 0}
    radial, none = build_engine(two_bus_feeder(), engine=Engine.ZBUS)
    assert radial.engine is Engine.ZBUS and none == ""
    p = np.array([[[2.0, 1.0, 3.0]]])
    assert_agree(radial.solve(p_kw=p, q_kvar=p * 0.2),
                 create_powerflow(two_bus_feeder(), engine=Engine.PGM).solve(p_kw=p, q_kvar=p * 0.2))


IEEE_DAY = datetime(2024, 1, 15, tzinfo=UTC)


def test_a_replay_runs_zbus_by_default_with_no_rebuild_for_device_moves(tmp_path: Path) -> None:
    """Two hours of the IEEE day with 10 PSDs and 2 PESS under the greedy controller: zbus is the engine, the
    devices move (commands applied) and the network model is never rebuilt; the same period network-only
    records the same voltages as power-grid-model."""
    period = {"start_utc": IEEE_DAY + timedelta(hours=17), "end_utc": IEEE_DAY + timedelta(hours=19)}
    controlled = replay(Scenario(**period, fleet=FleetSpec(psd=10, pess=2), out=tmp_path / "controlled",
                                 controller=ControllerSettings(strategy=Strategy.GREEDY)))
    s = controlled.summary
    assert s.engine == "zbus" and s.powerflow["engine"] == "zbus" and s.powerflow["engine_note"] == ""
    assert s.commands["applied"] > 0
    assert s.powerflow["rebuilds"] == 0
    plain = {engine: replay(Scenario(**period, out=tmp_path / engine.value, engine=engine))
             for engine in (Engine.ZBUS, Engine.PGM)}
    ours, theirs = (read_frame(tmp_path / e.value / "voltages_pu.parquet") for e in (Engine.ZBUS, Engine.PGM))
    assert plain[Engine.PGM].summary.engine == "power-grid-model"
    np.testing.assert_allclose(ours.drop(columns="time_utc").to_numpy(), theirs.drop(columns="time_utc").to_numpy(),
                               rtol=0, atol=1e-6)
