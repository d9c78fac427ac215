"""The non-convergence policy on the states that need it: the hard quarter-hours of the Liège year.

power-grid-model's default (iterative current, 30 iterations) fails on 2016-12-10 10:00 UTC (0.55-0.59 p.u.);
each rung of the ladder is shown to solve it on its own — the later rungs by giving the earlier ones a budget
too short for that state (a real failure, not a mock) — and every answer is checked against pandapower.
A state with no solution at all (1.2 × that load) is left to the divergence policy.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from power_grid_model import CalculationMethod
from support.network_loads import network_loads

from phasetwin.run.replay import replay
from phasetwin.run.scenario import Scenario
from twin.network import Feeder
from twin.powerflow import (
    DivergencePolicy,
    Engine,
    FallbackKind,
    FallbackPowerFlow,
    PowerFlow,
    PowerFlowNotConverged,
    default_rungs,
)
from twin.powerflow.fallback import Rung
from twin.powerflow.pandapower_3ph import PandapowerPowerFlow
from twin.powerflow.pgm import PgmPowerFlow

DAY = datetime(2016, 12, 10, tzinfo=UTC)
HARD_TICK = 40
"""2016-12-10 10:00 UTC at 15-minute ticks."""
AGREE_PU = 1e-4


@pytest.fixture(scope="module")
def liege_day() -> tuple[Feeder, np.ndarray, np.ndarray]:
    """The Liège feeder and its loads of 2016-12-10 at 15-minute ticks."""
    return network_loads(Scenario(feeder="liege-lv", start_utc=DAY, end_utc=DAY + timedelta(days=1), tick_s=900))


@pytest.fixture(scope="module")
def reference(liege_day: tuple[Feeder, np.ndarray, np.ndarray]) -> PowerFlow:
    return PandapowerPowerFlow(liege_day[0])


def test_the_default_engine_fails_on_the_hard_tick_alone(liege_day: tuple[Feeder, np.ndarray, np.ndarray]) -> None:
    feeder, p, q = liege_day
    with pytest.raises(PowerFlowNotConverged) as failed:
        PgmPowerFlow(feeder).solve(p_kw=p, q_kvar=q)
    assert failed.value.failed_indices == [HARD_TICK]


def test_the_ladder_solves_the_hard_tick_by_more_iterations_and_agrees_with_pandapower(
    liege_day: tuple[Feeder, np.ndarray, np.ndarray], reference: PowerFlow
) -> None:
    feeder, p, q = liege_day
    flow = FallbackPowerFlow(PgmPowerFlow(feeder), rungs=default_rungs(feeder, engine=Engine.PGM))
    result = flow.solve(p_kw=p, q_kvar=q)
    assert dict(result.fallbacks) == {HARD_TICK: FallbackKind.MORE_ITERATIONS}
    assert result.converged.all()
    ref = reference.solve(p_kw=p[[HARD_TICK]], q_kvar=q[[HARD_TICK]])
    assert ref.vm_pu.min() < 0.6  # the voltage collapse the default budget does not reach
    np.testing.assert_allclose(result.vm_pu[HARD_TICK], ref.vm_pu[0], atol=AGREE_PU)
    # the states the primary engine solved are its own, untouched
    easy = [t for t in range(p.shape[0]) if t != HARD_TICK]
    np.testing.assert_array_equal(result.vm_pu[easy], PgmPowerFlow(feeder).solve(p_kw=p[easy], q_kvar=q[easy]).vm_pu)


@pytest.mark.parametrize(
    ("rungs", "solved_by"),
    [
        # more iterations with the default's own budget (30) fails as the default does; Newton-Raphson solves it
        ([(FallbackKind.MORE_ITERATIONS, CalculationMethod.iterative_current, 30),
          (FallbackKind.NEWTON_RAPHSON, CalculationMethod.newton_raphson, 30)], FallbackKind.NEWTON_RAPHSON),
        # Newton-Raphson needs 6 iterations on this state: with 5 it fails, and pandapower solves it
        ([(FallbackKind.MORE_ITERATIONS, CalculationMethod.iterative_current, 30),
          (FallbackKind.NEWTON_RAPHSON, CalculationMethod.newton_raphson, 5)], FallbackKind.REFERENCE),
    ],
)
def test_each_rung_is_tried_in_order_until_one_solves(
    liege_day: tuple[Feeder, np.ndarray, np.ndarray], reference: PowerFlow,
    rungs: list[tuple[FallbackKind, CalculationMethod, int]], solved_by: FallbackKind,
) -> None:
    feeder, p, q = liege_day
    ladder = [Rung(kind, partial(PgmPowerFlow, feeder, calculation_method=method, max_iterations=iterations))
              for kind, method, iterations in rungs]
    ladder.append(Rung(FallbackKind.REFERENCE, lambda: reference))
    hard = [HARD_TICK - 1, HARD_TICK, HARD_TICK + 1]
    result = FallbackPowerFlow(PgmPowerFlow(feeder), rungs=ladder).solve(p_kw=p[hard], q_kvar=q[hard])
    assert dict(result.fallbacks) == {1: solved_by}
    ref = reference.solve(p_kw=p[hard], q_kvar=q[hard])
    np.testing.assert_allclose(result.vm_pu, ref.vm_pu, atol=AGREE_PU)


def test_a_state_without_solution_fails_after_every_rung_and_the_others_are_kept(
    liege_day: tuple[Feeder, np.ndarray, np.ndarray],
) -> None:
    feeder, p, q = liege_day
    batch_p, batch_q = p[[HARD_TICK, HARD_TICK - 2]].copy(), q[[HARD_TICK, HARD_TICK - 2]].copy()
    batch_p[0] *= 1.2
    batch_q[0] *= 1.2
    flow = FallbackPowerFlow(PgmPowerFlow(feeder), rungs=default_rungs(feeder, engine=Engine.PGM))
    with pytest.raises(PowerFlowNotConverged, match=r"no fallback solved them either \(tried: more_iterations, "
                                                    r"newton_raphson, reference\)") as failed:
        flow.solve(p_kw=batch_p, q_kvar=batch_q)
    assert failed.value.failed_indices == [0]
    partial = failed.value.partial
    assert np.isnan(partial.vm_pu[0]).all() and not partial.converged[0]
    np.testing.assert_array_equal(partial.vm_pu[1], PgmPowerFlow(feeder).solve(p_kw=batch_p[1:],
                                                                               q_kvar=batch_q[1:]).vm_pu[0])


@pytest.mark.slow
def test_the_hard_days_replay_with_power_grid_model_and_count_the_fallbacks(tmp_path: Path) -> None:
    """Network only, 2016-12-10 to 12-19 with all three hard ticks: each solved by a fallback, counted, and the
    twin's recorded minimum voltage at each is pandapower's."""
    scenario = Scenario(feeder="liege-lv", start_utc=DAY, end_utc=DAY + timedelta(days=10), tick_s=900, out=tmp_path,
                        on_divergence=DivergencePolicy.ABORT, engine=Engine.PGM)
    result = replay(scenario)
    s = result.summary
    assert s.powerflow["fallbacks"] == {"more_iterations": 3} and s.powerflow["ticks_skipped"] == 0
    hard = ["2016-12-10T10:00:00+00:00", "2016-12-19T14:00:00+00:00", "2016-12-19T16:45:00+00:00"]
    assert [t["time_utc"] for t in s.powerflow["fallback_ticks"]] == hard
    assert s.ticks == 960 and s.powerflow_failures == 0
    metrics = pd.read_parquet(tmp_path / "metrics.parquet").set_index("time_utc")
    feeder, p, q = network_loads(scenario)
    ticks = [t["tick"] for t in s.powerflow["fallback_ticks"]]
    ref = PandapowerPowerFlow(feeder).solve(p_kw=p[ticks], q_kvar=q[ticks])
    lv = [i for i, b in enumerate(feeder.buses) if b.id != feeder.transformer.hv_bus]
    for row, when in enumerate(hard):
        recorded = metrics.loc[pd.Timestamp(when), ["vm_min_a_pu", "vm_min_b_pu", "vm_min_c_pu"]].to_numpy()
        np.testing.assert_allclose(recorded, ref.vm_pu[row][lv].min(axis=0), atol=AGREE_PU)
