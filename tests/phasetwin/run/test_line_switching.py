"""Switchable lines: the radial check on the normal state, topologies a schedule may apply, and both engines on
batches whose states differ in topology (see ``ring_feeder`` in tests/support/small_feeders.py for the diagram)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from support.small_feeders import ring_feeder

from twin.clock import TickClock
from twin.errors import FeederError
from twin.line_switching import SwitchingError, SwitchingSchedule, SwitchingStep
from twin.network import Feeder, LineSwitch
from twin.powerflow import Engine, create_powerflow

NORMAL = frozenset({"TIE"})
VIA_TIE = frozenset({"S1"})  # LV1 and LV2 fed through S2 and the tie


def test_normally_open_tie_is_left_out_of_the_radial_check() -> None:
    feeder = ring_feeder()
    assert feeder.normal_open_lines() == NORMAL
    assert feeder.tree().loops == []
    lines = tuple(ln.model_copy(update={"switch": LineSwitch.NORMALLY_CLOSED}) if ln.id == "TIE" else ln
                  for ln in feeder.lines)
    with pytest.raises(FeederError, match="closes a loop; a feeder must be radial"):
        Feeder.model_validate(feeder.model_dump() | {"lines": [ln.model_dump() for ln in lines]})


def test_topology_problems_name_loops_islands_and_lines_without_switch() -> None:
    feeder = ring_feeder()
    assert feeder.topology_problems(NORMAL) == []
    assert feeder.topology_problems(VIA_TIE) == []
    assert any("closes a loop" in p for p in feeder.topology_problems(frozenset()))
    assert feeder.topology_problems(frozenset({"S1", "TIE"})) == [
        "2 bus(es) not connected to the transformer LV bus: 'LV1', 'LV2'"]
    assert feeder.topology_problems(frozenset({"L2", "TIE"})) == [
        "line 'L2' has no switch; it cannot be opened", "1 bus(es) not connected to the transformer LV bus: 'LV2'"]


def test_schedule_refuses_a_loop_naming_time_and_lines() -> None:
    feeder = ring_feeder()
    clock = TickClock(start_utc=datetime(2024, 1, 1, tzinfo=UTC), tick_s=60, n_ticks=5)
    conn = tuple(c.phases for c in feeder.customers)
    steps = [SwitchingStep(tick=0, open_lines=NORMAL, connections=conn),
             SwitchingStep(tick=2, open_lines=frozenset(), connections=conn, label="both closed")]
    with pytest.raises(SwitchingError, match=r"1\. at 2024-01-01T00:02:00\+00:00 \(tick 2, both closed\), lines open "
                                             r"none: line '.*'-'.*' closes a loop"):
        SwitchingSchedule(feeder=feeder, clock=clock, steps=steps, source="test")
    ok = SwitchingSchedule(feeder=feeder, clock=clock, source="test",
                           steps=[steps[0], SwitchingStep(tick=3, open_lines=VIA_TIE, connections=conn)])
    closed = ok.line_closed(1, 4)
    assert closed.tolist() == [[True, True, True, False], [True, True, True, False],
                               [False, True, True, True], [False, True, True, True]]


def test_engines_agree_on_a_batch_that_switches_topology() -> None:
    feeder = ring_feeder()
    k = 4
    rng = np.random.default_rng(3)
    p = np.zeros((k, 2, 3))
    p[:, 0, 0] = rng.uniform(5, 20, k)  # C2 on A
    p[:, 1, 1:] = rng.uniform(2, 10, (k, 2))  # C3 on B, C
    q = 0.3 * p
    normal = np.array([True, True, True, False])
    via_tie = np.array([False, True, True, True])
    closed = np.array([normal, via_tie, via_tie, normal])
    pgm = create_powerflow(feeder, engine=Engine.PGM).solve(p_kw=p, q_kvar=q, line_closed=closed)
    ref = create_powerflow(feeder, engine=Engine.PANDAPOWER).solve(p_kw=p, q_kvar=q, line_closed=closed)
    assert np.abs(pgm.vm_pu - ref.vm_pu).max() < 1e-6
    assert np.abs(pgm.i_ka - ref.i_ka).max() < 1e-6
    assert np.abs(pgm.loss_kw - ref.loss_kw).max() < 1e-3
    # open lines carry nothing; with S1 open, C2's phase-A current goes through S2 and the tie
    assert (pgm.i_ka[~closed] == 0).all() and (pgm.i_n_ka[~closed] == 0).all()
    assert pgm.i_ka[1, 3, 0] > 0.01
    assert pgm.i_ka[1, 3, 0] == pytest.approx(pgm.i_ka[1, 2, 0], rel=1e-6)
    # one state at a time, in the model's own state, gives the same numbers as the mixed batch
    single = create_powerflow(feeder, engine=Engine.PGM)
    for s in range(k):
        one = single.solve(p_kw=p[s:s + 1], q_kvar=q[s:s + 1], line_closed=closed[s:s + 1])
        assert np.abs(one.vm_pu[0] - pgm.vm_pu[s]).max() < 1e-9
    # without line states: the normal topology
    default = create_powerflow(feeder, engine=Engine.PGM).solve(p_kw=p, q_kvar=q)
    assert np.abs(default.vm_pu[0] - pgm.vm_pu[0]).max() < 1e-12
