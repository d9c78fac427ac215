"""The grid role: batched solving must give exactly what tick-by-tick solving gives."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from support.small_feeders import ring_feeder

from streams import topics
from streams.bus import LocalBus
from streams.messages import GridState, Message
from streams.meters.replay import MeterReplay
from streams.meters.table import MeterTable
from twin import metrics
from twin.errors import PowerFlowError
from twin.grid.role import GridRole
from twin.grid.tick_metrics import TickMetrics
from twin.network import Feeder
from twin.phase import Phase
from twin.powerflow import Engine, PowerFlowResult, create_powerflow

T0 = datetime(2024, 1, 15, tzinfo=UTC)
N_TICKS = 40


def _run(feeder: Feeder, day: MeterTable, *, batch_ticks: int, move_at: int | None = None,
         skip: set[tuple[int, str]] | None = None, per_meter: bool = False) -> tuple[list[GridState], GridRole]:
    bus = LocalBus()
    meters = MeterReplay(bus=bus, feeder=feeder.name, table=day, n_terminals=[c.n_phases for c in feeder.customers],
                         start_utc=T0 + timedelta(hours=18), tick_s=60, n_ticks=N_TICKS,
                         per_meter=per_meter or bool(skip))
    if skip:
        inner = bus.publish

        def dropping_publish(topic: str, message: Message) -> None:
            if (getattr(message, "tick", -1), getattr(message, "meter_id", "")) not in skip:
                inner(topic, message)

        bus.publish = dropping_publish  # type: ignore[method-assign]
    grid = GridRole(bus=bus, feeder=feeder, name=feeder.name, powerflow=create_powerflow(feeder, engine=Engine.PGM),
                    lookahead=meters.lookahead, batch_ticks=batch_ticks)
    states: list[GridState] = []
    bus.subscribe(topics.grid_state(feeder.name), lambda t, m: states.append(m))  # type: ignore[arg-type]
    for tick in range(N_TICKS):
        if tick == move_at:
            grid.set_phase_map(grid.phase_map.with_connection(0, (Phase.C,)))
        time_utc = T0 + timedelta(minutes=tick)
        meters.on_tick(tick, time_utc)
        grid.on_tick(tick, time_utc)
    return states, grid


def _same(a: list[GridState], b: list[GridState]) -> None:
    assert len(a) == len(b) == N_TICKS
    for x, y in zip(a, b, strict=True):
        assert np.allclose(x.vm_pu, y.vm_pu, rtol=0, atol=1e-9)
        assert np.allclose(x.i_ka, y.i_ka, rtol=0, atol=1e-9)
        assert x.p_unb_kw.tolist() == y.p_unb_kw.tolist()


def test_batched_solving_equals_tick_by_tick(ieee_feeder: Feeder, ieee_day: MeterTable) -> None:
    batched, g1 = _run(ieee_feeder, ieee_day, batch_ticks=1440)
    single, g2 = _run(ieee_feeder, ieee_day, batch_ticks=1)
    _same(batched, single)
    assert (g1.counters.solves, g1.counters.cache_hits, g1.counters.resolves) == (1, N_TICKS - 1, 0)
    assert g2.counters.solves == N_TICKS and g2.counters.resolves == 0  # no pre-solved row: solves, not re-solves
    assert g1.counters.solve_cpu_s > 0 and g1.counters.resolve_cpu_s == 0


def test_per_meter_readings_equal_meter_frames(ieee_feeder: Feeder, ieee_day: MeterTable) -> None:
    frames, g1 = _run(ieee_feeder, ieee_day, batch_ticks=1440)
    readings, g2 = _run(ieee_feeder, ieee_day, batch_ticks=1440, per_meter=True)
    _same(frames, readings)
    assert g1.counters.cache_hits == g2.counters.cache_hits == N_TICKS - 1


def test_a_frame_row_with_power_on_a_missing_terminal_is_rejected(ieee_feeder: Feeder) -> None:
    from streams.messages import MeterFrame

    bus = LocalBus()
    grid = GridRole(bus=bus, feeder=ieee_feeder, name=ieee_feeder.name,
                    powerflow=create_powerflow(ieee_feeder, engine=Engine.PGM))
    ids = tuple(c.id for c in ieee_feeder.customers)
    p = np.zeros((len(ids), 3))
    p[:, 0] = 1.0
    p[3, 2] = 0.5  # LOAD4 is single-phase: its third terminal does not exist
    bus.publish(topics.meter_frame(ieee_feeder.name), MeterFrame(
        feeder=ieee_feeder.name, tick=0, time_utc=T0, meter_ids=ids, p_kw=p, q_kvar=p * 0.0))
    assert grid.counters.readings_rejected == 1
    grid.on_tick(0, T0)
    assert grid.counters.readings_missing == 1


def test_a_phase_change_invalidates_the_batch(ieee_feeder: Feeder, ieee_day: MeterTable) -> None:
    batched, g1 = _run(ieee_feeder, ieee_day, batch_ticks=1440, move_at=25)
    single, _ = _run(ieee_feeder, ieee_day, batch_ticks=1, move_at=25)
    _same(batched, single)
    assert g1.counters.solves == 2 and g1.counters.resolves == 1
    assert 0 < g1.counters.resolve_cpu_s <= g1.counters.solve_cpu_s
    # customer 0 (LOAD1, on A) moved to C at tick 25: phase A load drops and C rises by its reading
    p_before, p_after = batched[24].phase_load_kw[0], batched[25].phase_load_kw[0]
    moved = ieee_day.p_kw[18 * 60 + 25, 0, 0]
    others = ieee_day.p_kw[18 * 60 + 25, 1:, 0]
    on_a = [i for i, c in enumerate(ieee_feeder.customers[1:]) if c.phases[0] is Phase.A]
    assert p_after[0] == pytest.approx(others[on_a].sum())
    assert p_after[2] - p_before[2] == pytest.approx(
        moved + sum(ieee_day.p_kw[18 * 60 + 25, i + 1, 0] - ieee_day.p_kw[18 * 60 + 24, i + 1, 0]
                    for i, c in enumerate(ieee_feeder.customers[1:]) if c.phases[0] is Phase.C))


def test_missing_readings_hold_the_last_value_and_are_counted(ieee_feeder: Feeder, ieee_day: MeterTable) -> None:
    skip = {(10, "LOAD1"), (11, "LOAD1"), (12, "LOAD7")}
    states, grid = _run(ieee_feeder, ieee_day, batch_ticks=1440, skip=skip)
    assert grid.counters.readings_missing == 3
    # held values differ from the data at those ticks, so the batch was re-solved
    assert grid.counters.solves > 1
    reference, _ = _run(ieee_feeder, ieee_day, batch_ticks=1)
    assert np.allclose(states[20].vm_pu, reference[20].vm_pu, atol=1e-9)


def test_non_convergence_names_tick_and_time(ieee_feeder: Feeder, ieee_day: MeterTable) -> None:
    bus = LocalBus()
    grid = GridRole(bus=bus, feeder=ieee_feeder, name=ieee_feeder.name,
                    powerflow=create_powerflow(ieee_feeder, engine=Engine.PGM))
    from streams.messages import MeterReading

    for c in ieee_feeder.customers:
        bus.publish(topics.meter(ieee_feeder.name, c.id), MeterReading(
            feeder=ieee_feeder.name, tick=7, time_utc=T0, meter_id=c.id, p_kw=(5000.0,), q_kvar=(0.0,)))
    with pytest.raises(PowerFlowError, match=r"did not converge at tick 7 \(2024-01-15T00:00:00\+00:00\)"):
        grid.on_tick(7, T0)
    assert grid.counters.powerflow_failures == 1


def _reading(feeder: Feeder, meter_id: str, tick: int, p_kw: float) -> tuple[str, Message]:
    from streams.messages import MeterReading

    return topics.meter(feeder.name, meter_id), MeterReading(
        feeder=feeder.name, tick=tick, time_utc=T0 + timedelta(minutes=tick), meter_id=meter_id, p_kw=(p_kw,),
        q_kvar=(0.0,))


def test_meter_policy_late_duplicate_out_of_order_and_too_early(ieee_feeder: Feeder) -> None:
    """One customer's readings in a hostile order; the power flow must see exactly the policy's choice, checked
    against the transformer's phase power of a plain solve with that customer's load set by hand."""
    bus = LocalBus()
    grid = GridRole(bus=bus, feeder=ieee_feeder, name=ieee_feeder.name,
                    powerflow=create_powerflow(ieee_feeder, engine=Engine.PGM))
    states: list[GridState] = []
    bus.subscribe(topics.grid_state(ieee_feeder.name), lambda t, m: states.append(m))  # type: ignore[arg-type]
    c = ieee_feeder.customers[0]
    phase = c.phases[0]

    def send(tick: int, p_kw: float) -> None:
        bus.publish(*_reading(ieee_feeder, c.id, tick, p_kw))

    send(0, 3.0)
    send(0, 9.0)          # duplicate of tick 0: dropped, the first stands
    send(2, 5.0)          # out of order, within the window: held for tick 2
    send(9, 7.0)          # too far ahead: rejected
    grid.on_tick(0, T0)
    send(0, 8.0)          # late: recorded, not used
    grid.on_tick(1, T0 + timedelta(minutes=1))   # no reading: holds 3.0
    grid.on_tick(2, T0 + timedelta(minutes=2))   # the held 5.0

    assert grid.counters.readings_duplicate == 1
    assert grid.counters.readings_held == 1
    assert grid.counters.readings_rejected == 1
    assert grid.counters.readings_late == 1
    assert [(r.meter_id, r.tick, r.arrived_tick, r.p_kw) for r in grid.late] == [(c.id, 0, 1, (8.0,))]

    def trafo_kw(load_kw: float) -> float:
        p = np.zeros((1, len(ieee_feeder.customers), 3))
        p[0, 0, phase] = load_kw
        return float(create_powerflow(ieee_feeder, engine=Engine.PGM).solve(
            p_kw=p, q_kvar=np.zeros_like(p)).p_trafo_kw[0].sum())

    used = [sum(s.p_trafo_kw) for s in states]
    assert used == pytest.approx([trafo_kw(3.0), trafo_kw(3.0), trafo_kw(5.0)], abs=1e-9)


def test_tick_metrics_extremes_are_those_of_the_lv_buses_wherever_the_mv_bus_sits() -> None:
    """The MV bus in the middle of the bus list: the LV buses are two runs; extremes checked against a masked
    brute force, VUF against the polar formula."""
    base = ring_feeder()
    buses = list(base.buses)
    mv = next(i for i, b in enumerate(buses) if b.id == base.transformer.hv_bus)
    buses.insert(2, buses.pop(mv))
    feeder = base.model_copy(update={"buses": tuple(buses)})
    rng = np.random.default_rng(11)
    k, n = 5, len(buses)
    vm = 0.9 + 0.2 * rng.random((k, n, 3))
    va = np.array([0.0, -120.0, 120.0]) + 5 * rng.random((k, n, 3))
    vm[:, 2] = [2.0, 0.1, 1.0]  # the MV bus: extremes no LV bus has
    result = PowerFlowResult.empty(n_states=k, n_bus=n, n_line=len(feeder.lines))
    result.vm_pu[:], result.va_deg[:] = vm, va
    result.vuf_pct[:] = metrics.voltage_unbalance_factor_pct(vm, va)
    result.i_n_ka[:], result.p_trafo_kw[:], result.q_trafo_kvar[:] = 0.01, 5.0, 1.0
    block = TickMetrics(feeder).block(0, np.zeros((k, len(feeder.customers), 3)),
                                      np.zeros((k, len(feeder.customers), 3)), result, frozenset())
    lv = np.array([b.id != feeder.transformer.hv_bus for b in feeder.buses])
    assert not lv[2] and lv.sum() == n - 1
    np.testing.assert_array_equal(block.vm_min_pu, vm[:, lv].min(axis=1))
    np.testing.assert_array_equal(block.vm_max_pu, vm[:, lv].max(axis=1))
    polar = metrics.voltage_unbalance_factor_pct(vm[:, lv], va[:, lv])
    np.testing.assert_allclose(block.vuf_max_pct, polar.max(axis=1), rtol=1e-12)
