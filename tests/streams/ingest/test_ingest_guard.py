"""The ingest guard on the in-process bus: each kind of bad reading is quarantined with its reason code, the
roles get the last good value marked estimated, and every count is exact."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from streams import topics
from streams.bus import LocalBus
from streams.ingest import GuardedBus, IngestGuard, MeterEnvelope
from streams.messages import DeadLetter, DeadLetterReason, Message, MeterFrame, MeterReading

T0 = datetime(2024, 1, 15, tzinfo=UTC)
FEEDER = "f1"


def _guarded() -> tuple[GuardedBus, IngestGuard, list[Message], list[DeadLetter]]:
    inner = LocalBus()
    envelopes = {"m1": MeterEnvelope(n_terminals=1, s_max_kva=20.0), "m3": MeterEnvelope(n_terminals=3, s_max_kva=20.0)}
    guard = IngestGuard(bus=inner, feeder=FEEDER, envelopes=envelopes, start_utc=T0, tick_s=60, skew_ticks=2)
    bus = GuardedBus(inner, guard)
    got: list[Message] = []
    letters: list[DeadLetter] = []
    bus.subscribe(topics.meters(FEEDER), lambda t, m: got.append(m))
    bus.subscribe(topics.meter_frame(FEEDER), lambda t, m: got.append(m))
    bus.subscribe(topics.deadletter(FEEDER), lambda t, m: letters.append(m))  # type: ignore[arg-type]
    return bus, guard, got, letters


def _reading(meter_id: str, p: tuple[float, ...], *, tick: int = 0, feeder: str = FEEDER) -> MeterReading:
    return MeterReading.model_construct(feeder=feeder, tick=tick, time_utc=T0 + timedelta(minutes=tick),
                                        meter_id=meter_id, p_kw=p, q_kvar=tuple(0.0 for _ in p), estimated=False)


@pytest.mark.parametrize(("reading", "reason"), [
    (_reading("m1", (math.nan,)), DeadLetterReason.NON_FINITE),
    (_reading("m1", (math.inf,)), DeadLetterReason.NON_FINITE),
    (_reading("m1", (500.0,)), DeadLetterReason.IMPLAUSIBLE),
    (_reading("m1", (1.0, 1.0)), DeadLetterReason.IMPLAUSIBLE),
    (_reading("m1", (1.0,), feeder="other"), DeadLetterReason.ID_MISMATCH),
    (_reading("m9", (1.0,)), DeadLetterReason.ID_MISMATCH),
    (_reading("m1", (1.0,), tick=3), DeadLetterReason.FUTURE),
])
def test_a_bad_reading_is_quarantined_with_its_reason_and_replaced_by_the_last_good_one(
        reading: MeterReading, reason: DeadLetterReason) -> None:
    bus, guard, got, letters = _guarded()
    bus.publish(topics.meter(FEEDER, "m1"), _reading("m1", (2.5,)))
    bus.publish(topics.meter(FEEDER, "m1"), reading)
    assert [letter.reason for letter in letters] == [reason]
    assert letters[0].topic == topics.meter(FEEDER, "m1") and letters[0].received_utc.tzinfo is not None
    assert guard.counters.by_reason() == {reason.value: 1} and guard.counters.checked == 2
    if reason is DeadLetterReason.FUTURE:
        assert len(got) == 1, "a future reading is dropped: its tick is not believed"
        return
    estimate = got[-1]
    assert isinstance(estimate, MeterReading) and estimate.estimated and estimate.p_kw == (2.5,)
    assert estimate.meter_id == "m1" and estimate.feeder == FEEDER
    assert guard.counters.estimated == 1


def test_the_dead_letter_keeps_the_original_values_spelt_as_received() -> None:
    bus, _, _, letters = _guarded()
    bus.publish(topics.meter(FEEDER, "m1"), _reading("m1", (math.inf,)))
    assert '"p_kw": [Infinity]' in letters[0].payload and "p_kw [inf]" in letters[0].detail


def test_a_frame_row_is_replaced_by_the_meters_last_good_row_and_the_others_pass() -> None:
    bus, guard, got, letters = _guarded()
    good = np.array([[1.0, 0, 0], [1.0, 2.0, 3.0]])
    frame = MeterFrame(feeder=FEEDER, tick=0, time_utc=T0, meter_ids=("m1", "m3"), p_kw=good, q_kvar=np.zeros((2, 3)))
    bus.publish(topics.meter_frame(FEEDER), frame)
    assert got[-1] is frame, "a clean frame passes as it is"
    bad = np.array([[7.0, 0, 0], [np.nan, 2.0, 3.0]])
    bus.publish(topics.meter_frame(FEEDER), MeterFrame(feeder=FEEDER, tick=0, time_utc=T0, meter_ids=("m1", "m3"),
                                                       p_kw=bad, q_kvar=np.zeros((2, 3))))
    out = got[-1]
    assert isinstance(out, MeterFrame) and out.estimated == ("m3",)
    np.testing.assert_array_equal(out.p_kw, [[7.0, 0, 0], [1.0, 2.0, 3.0]])
    assert [letter.reason for letter in letters] == [DeadLetterReason.NON_FINITE]
    off_terminal = np.array([[1.0, 5.0, 0], [1.0, 2.0, 3.0]])
    bus.publish(topics.meter_frame(FEEDER), MeterFrame(feeder=FEEDER, tick=0, time_utc=T0, meter_ids=("m1", "m3"),
                                                       p_kw=off_terminal, q_kvar=np.zeros((2, 3))))
    assert letters[-1].reason is DeadLetterReason.IMPLAUSIBLE and "terminal" in letters[-1].detail
    assert guard.counters.checked == 6 and guard.counters.estimated == 2


def test_the_verdict_is_computed_once_for_all_subscribers() -> None:
    bus, guard, got, letters = _guarded()
    second: list[Message] = []
    bus.subscribe(topics.meters(FEEDER), lambda t, m: second.append(m))
    bus.publish(topics.meter(FEEDER, "m1"), _reading("m1", (math.nan,)))
    assert len(letters) == 1 and guard.counters.by_reason() == {"non_finite": 1}
    assert got == second and isinstance(second[0], MeterReading) and second[0].estimated


def test_future_is_judged_on_the_receivers_clock() -> None:
    bus, guard, got, letters = _guarded()
    guard.on_tick(10, T0 + timedelta(minutes=10))
    bus.publish(topics.meter(FEEDER, "m1"), _reading("m1", (1.0,), tick=12))
    assert not letters and got[-1].tick == 12  # type: ignore[attr-defined]
    bus.publish(topics.meter(FEEDER, "m1"), _reading("m1", (1.0,), tick=13))
    assert [letter.reason for letter in letters] == [DeadLetterReason.FUTURE]
