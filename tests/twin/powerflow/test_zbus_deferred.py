"""The zbus result's per-bus and per-line arrays, computed on first access: the same whatever the batch width,
the order of access or the thread, and unaffected by later solves of the engine."""

from __future__ import annotations

import pickle
import threading

import numpy as np
import pytest

from twin.loaders import ieee_european_lv
from twin.network import Feeder
from twin.phasing import PhaseMap
from twin.powerflow import RESULT_ARRAYS, PowerFlowResult
from twin.powerflow.zbus import ZbusPowerFlow, chunk_states

MINUTES = slice(1100, 1150)  # 50 evening states: more than three chunks of states


@pytest.fixture(scope="module")
def ieee() -> tuple[Feeder, np.ndarray, np.ndarray]:
    feeder = ieee_european_lv.load_feeder()
    day = ieee_european_lv.load_day(feeder)
    phases = PhaseMap.initial(feeder.customers)
    return feeder, phases.to_phases(day.p_kw[MINUTES]), phases.to_phases(day.q_kvar[MINUTES])


def arrays(result: PowerFlowResult) -> dict[str, np.ndarray]:
    return {name: np.array(getattr(result, name)) for name in RESULT_ARRAYS}


@pytest.fixture(scope="module")
def whole(ieee: tuple[Feeder, np.ndarray, np.ndarray]) -> dict[str, np.ndarray]:
    feeder, p, q = ieee
    return arrays(ZbusPowerFlow(feeder).solve(p_kw=p, q_kvar=q))


def assert_same(ours: dict[str, np.ndarray], theirs: dict[str, np.ndarray], *, atol: float = 0.0) -> None:
    for name in RESULT_ARRAYS:
        np.testing.assert_allclose(ours[name], theirs[name], rtol=0, atol=atol, err_msg=name)


@pytest.mark.parametrize("width", [1, 7, chunk_states(907) + 1])
def test_every_array_is_the_same_whatever_the_batch_width(
    ieee: tuple[Feeder, np.ndarray, np.ndarray], whole: dict[str, np.ndarray], width: int
) -> None:
    feeder, p, q = ieee
    engine = ZbusPowerFlow(feeder)
    parts = [arrays(engine.solve(p_kw=p[a : a + width], q_kvar=q[a : a + width]))
             for a in range(0, p.shape[0], width)]
    joined = {name: np.concatenate([part[name] for part in parts]) for name in RESULT_ARRAYS}
    assert_same(joined, whole, atol=1e-12)
    assert whole["vm_pu"][:, 1:].min() < 1.03  # loaded states, not the 1.05 p.u. of no load


def test_a_later_solve_leaves_an_earlier_results_arrays_alone(
    ieee: tuple[Feeder, np.ndarray, np.ndarray], whole: dict[str, np.ndarray]
) -> None:
    feeder, p, q = ieee
    engine = ZbusPowerFlow(feeder)
    first = engine.solve(p_kw=p, q_kvar=q)
    engine.solve(p_kw=2.0 * p, q_kvar=2.0 * q)  # overwrites every work array of the engine
    late = {name: np.array(getattr(first, name)) for name in reversed(RESULT_ARRAYS)}  # read in another order
    assert_same(late, whole)
    assert_same(arrays(pickle.loads(pickle.dumps(engine.solve(p_kw=p, q_kvar=q)))), whole)


def test_threads_solving_on_one_engine_get_their_own_results(
    ieee: tuple[Feeder, np.ndarray, np.ndarray], whole: dict[str, np.ndarray]
) -> None:
    feeder, p, q = ieee
    engine = ZbusPowerFlow(feeder)
    scales = (0.5, 1.0, 1.5, 1.0)
    got: dict[int, dict[str, np.ndarray]] = {}

    def run(i: int) -> None:
        for _ in range(3):
            got[i] = arrays(engine.solve(p_kw=scales[i] * p, q_kvar=scales[i] * q))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(scales))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert_same(got[1], whole, atol=1e-12)
    assert_same(got[3], whole, atol=1e-12)
    half = arrays(ZbusPowerFlow(feeder).solve(p_kw=0.5 * p, q_kvar=0.5 * q))
    assert_same(got[0], half, atol=1e-12)
    assert not np.allclose(got[0]["vm_pu"], whole["vm_pu"])


def test_a_result_is_read_only() -> None:
    result = PowerFlowResult.empty(n_states=1, n_bus=2, n_line=1)
    with pytest.raises(AttributeError, match="read-only"):
        result.vm_pu = np.zeros((1, 2, 3))  # type: ignore[misc]


@pytest.mark.parametrize("order", [("vm_pu", "i_ka", "loss_kw", "va_deg"), ("va_deg", "vuf_pct")])
def test_angles_left_out_of_the_bus_pass_read_the_same_later(
    ieee: tuple[Feeder, np.ndarray, np.ndarray], whole: dict[str, np.ndarray], order: tuple[str, ...]
) -> None:
    """``leave_out("va_deg")`` (a block's rows are recorded without angles): the bus pass skips the arctan2, and
    angles read after all (after every other array, or first) come from a pass of their own, bit for bit."""
    feeder, p, q = ieee
    result = ZbusPowerFlow(feeder).solve(p_kw=p, q_kvar=q)
    result.leave_out("va_deg")
    getattr(result, order[0])
    assert ("va_deg" in result._values) == (order[0] == "va_deg")  # vm_pu's pass left the angles out
    for name in order[1:]:
        getattr(result, name)
    assert_same(arrays(result), whole)
