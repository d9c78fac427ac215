"""Forecasters and tick aggregation on hand-made data."""

from __future__ import annotations

import numpy as np
import pytest

from controllers.online.forecast import (
    Forecaster,
    ForecastError,
    PerfectForesight,
    Persistence,
    SameTimeYesterday,
    StepAggregator,
    step_means,
)


def test_step_means_average_whole_blocks_of_ticks() -> None:
    ticks = np.arange(30, dtype=float).reshape(30, 1) * np.array([1.0, 2.0])
    means = step_means(ticks, 15)
    np.testing.assert_allclose(means, [[7.0, 14.0], [22.0, 44.0]])
    with pytest.raises(ForecastError, match=r"31 ticks do not fill whole steps of 15 ticks"):
        step_means(np.zeros((31, 2)), 15)


def test_aggregator_emits_each_step_on_its_last_tick() -> None:
    agg = StepAggregator(n_series=1, ticks_per_step=3)
    out = [agg.add(k, np.array([float(k)])) for k in range(6)]
    assert [len(o) for o in out] == [0, 0, 1, 0, 0, 1]
    assert out[2][0][0] == 0 and out[2][0][1].tolist() == [1.0]
    assert out[5][0][0] == 1 and out[5][0][1].tolist() == [4.0]


def test_aggregator_closes_a_step_left_incomplete_by_a_gap() -> None:
    agg = StepAggregator(n_series=1, ticks_per_step=3)
    agg.add(0, np.array([2.0]))
    agg.add(1, np.array([4.0]))
    done = agg.add(5, np.array([9.0]))  # tick 2 never came; tick 5 is the last of step 1
    assert [(s, m.tolist()) for s, m in done] == [(0, [3.0]), (1, [9.0])]
    with pytest.raises(ForecastError, match=r"tick 4 belongs to step 1, before the current step 2"):
        agg.add(4, np.array([1.0]))
    with pytest.raises(ForecastError, match=r"tick reading has shape \(2,\); expected \(1,\)"):
        agg.add(6, np.array([1.0, 2.0]))


def test_perfect_foresight_reads_the_future_and_wraps_or_holds_past_the_end() -> None:
    data = np.arange(8, dtype=float).reshape(4, 2)
    wrap: Forecaster = PerfectForesight(data, wrap=True)
    np.testing.assert_array_equal(wrap.forecast(2, 4), data[[2, 3, 0, 1]])
    hold: Forecaster = PerfectForesight(data)
    np.testing.assert_array_equal(hold.forecast(2, 4), data[[2, 3, 3, 3]])


def test_persistence_repeats_the_last_observed_step() -> None:
    fc: Forecaster = Persistence(n_series=2)
    with pytest.raises(ForecastError, match="before any observation"):
        fc.forecast(0, 3)
    fc.observe(0, np.array([1.0, 2.0]))
    fc.observe(1, np.array([3.0, 4.0]))
    np.testing.assert_array_equal(fc.forecast(2, 3), [[3.0, 4.0]] * 3)


def test_same_time_yesterday_uses_yesterday_and_falls_back_to_persistence() -> None:
    fc: Forecaster = SameTimeYesterday(n_series=1, steps_per_day=4)
    for step in range(6):
        fc.observe(step, np.array([10.0 + step]))
    # steps 6, 7 → yesterday's 2, 3; steps 8, 9 → 4, 5; step 10 → 6, not seen yet → last observed (15)
    np.testing.assert_array_equal(fc.forecast(6, 5)[:, 0], [12.0, 13.0, 14.0, 15.0, 15.0])
    first_day: Forecaster = SameTimeYesterday(n_series=1, steps_per_day=4)
    first_day.observe(0, np.array([7.0]))
    np.testing.assert_array_equal(first_day.forecast(1, 2)[:, 0], [7.0, 7.0])
