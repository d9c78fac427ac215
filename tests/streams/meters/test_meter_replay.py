import numpy as np
import pandas as pd
import pytest

from streams import topics
from streams.bus import LocalBus
from streams.errors import DataError
from streams.meters.replay import MeterReplay, mean_over_ticks
from streams.meters.table import MeterTable

T0 = pd.Timestamp("2016-01-01", tz="UTC")


def _table(values: np.ndarray, step_s: int) -> MeterTable:
    n = values.shape[0]
    p = np.zeros((n, 1, 3))
    p[:, 0, 0] = values
    return MeterTable(time_utc=pd.date_range(T0, periods=n, freq=f"{step_s}s"), step_s=step_s,
                      customer_ids=("c1",), p_kw=p, q_kvar=p * 0.5, source="test")


def test_finer_ticks_hold_and_coarser_ticks_average_like_pandas() -> None:
    rng = np.random.default_rng(5)
    values = rng.uniform(0, 4, size=96)  # a day at 15 min
    series = pd.Series(values, index=pd.date_range(T0, periods=96, freq="15min"))
    held = mean_over_ticks(values, data_start_utc=T0, step_s=900, start_utc=T0, tick_s=60, n_ticks=1440)
    assert np.array_equal(held, series.resample("1min").ffill().reindex(
        pd.date_range(T0, periods=1440, freq="1min"), method="ffill").to_numpy())
    hourly = mean_over_ticks(values, data_start_utc=T0, step_s=900, start_utc=T0, tick_s=3600, n_ticks=24)
    assert np.allclose(hourly, series.resample("1h").mean().to_numpy())


def test_ticks_straddling_data_steps_get_the_time_weighted_mean() -> None:
    values = np.array([1.0, 3.0, 5.0])  # 10-min steps
    start = T0 + pd.Timedelta(minutes=5)
    out = mean_over_ticks(values, data_start_utc=T0, step_s=600, start_utc=start, tick_s=600, n_ticks=2)
    assert out.tolist() == [2.0, 4.0]


def test_a_period_outside_the_data_names_both_ranges() -> None:
    with pytest.raises(DataError, match=r"is outside the data, which cover 2016-01-01T00:00:00\+00:00 \.\."):
        mean_over_ticks(np.ones(4), data_start_utc=T0, step_s=900, start_utc=T0, tick_s=900, n_ticks=5)


def test_replay_publishes_one_reading_per_customer_with_its_terminals() -> None:
    bus = LocalBus()
    got = []
    bus.subscribe(topics.meters("f"), lambda t, m: got.append((t, m)))
    table = _table(np.array([1.0, 2.0]), 60)
    replay = MeterReplay(bus=bus, feeder="f", table=table, n_terminals=[1], start_utc=T0.to_pydatetime(),
                         tick_s=60, n_ticks=2, per_meter=True)
    replay.on_tick(1, (T0 + pd.Timedelta(minutes=1)).to_pydatetime())
    (topic, reading), = got
    assert topic == "phasetwin/v1/f/meter/c1"
    assert (reading.tick, reading.p_kw, reading.q_kvar) == (1, (2.0,), (1.0,))


def test_non_finite_data_in_the_period_are_refused_by_customer() -> None:
    table = _table(np.array([1.0, np.nan]), 60)
    with pytest.raises(DataError, match="non-finite values in the period for customer"):
        MeterReplay(bus=LocalBus(), feeder="f", table=table, n_terminals=[1], start_utc=T0.to_pydatetime(),
                    tick_s=60, n_ticks=2)


def test_frames_carry_the_same_values_as_readings() -> None:
    bus = LocalBus()
    got = []
    bus.subscribe(topics.meter_frame("f"), lambda t, m: got.append(m))
    table = _table(np.array([1.0, 2.0]), 60)
    replay = MeterReplay(bus=bus, feeder="f", table=table, n_terminals=[1], start_utc=T0.to_pydatetime(),
                         tick_s=60, n_ticks=2)
    replay.on_tick(1, (T0 + pd.Timedelta(minutes=1)).to_pydatetime())
    (frame,) = got
    assert frame.meter_ids == ("c1",)
    assert frame.p_kw.tolist() == [[2.0, 0.0, 0.0]] and frame.q_kvar.tolist() == [[1.0, 0.0, 0.0]]


@pytest.mark.parametrize("spill_bytes", [10**6, 0])
def test_the_held_columns_give_back_the_table_terminal_for_terminal(spill_bytes: int) -> None:
    """Only used terminals are held (issue 31, memory), in memory or in the spill file read by windows of 3 ticks;
    a spare terminal that is not zero is held too."""
    rng = np.random.default_rng(3)
    p = rng.uniform(-1, 4, size=(6, 3, 3))
    p[:, 0, 1:] = 0.0  # single-phase customer: spare terminals zero
    p[:, 1, 2] = 0.0
    p[:, 1, 1] = 0.0
    p[2, 1, 1] = 0.7  # ...except one value on a spare terminal
    table = MeterTable(time_utc=pd.date_range(T0, periods=6, freq="60s"), step_s=60, customer_ids=("a", "b", "c"),
                       p_kw=p, q_kvar=p * 0.3, source="test")
    replay = MeterReplay(bus=LocalBus(), feeder="f", table=table, n_terminals=[1, 1, 3],
                         start_utc=(T0 + pd.Timedelta(minutes=1)).to_pydatetime(), tick_s=60, n_ticks=4,
                         window_ticks=3, spill_bytes=spill_bytes)
    assert (replay._held.n_columns, replay._held.spilled) == (2 * (1 + 2 + 3), spill_bytes == 0)
    for tick, n in [(1, 2), (3, 1), (0, 4), (2, 9)]:  # in the window, after it, longer than it, clipped
        got_p, got_q = replay.lookahead(tick, n)
        assert np.array_equal(got_p, p[1 + tick:1 + min(4, tick + n)])
        assert np.array_equal(got_q, p[1 + tick:1 + min(4, tick + n)] * 0.3)
    assert np.array_equal(replay.p_kw, p[1:5]) and np.array_equal(replay.q_kvar, p[1:5] * 0.3)
    chunks = list(replay.by_customers(size=2))
    assert [c[0].shape for c in chunks] == [(4, 2, 3), (4, 1, 3)]
    assert np.array_equal(np.concatenate([c[0] for c in chunks], axis=1), p[1:5])
    assert np.array_equal(np.concatenate([c[1] for c in chunks], axis=1), p[1:5] * 0.3)
