"""Issue 33, failure 4: wrong but in-envelope readings have a reason code. With limits learned from the
customers' own data (a household peaking at 4 kW without PV, one with PV exporting 3 kW, an idle one at tens of
watts), 10,000 bad readings of the issue's kinds — 45 kW on a household, −20 kW export without PV, ×1000 unit
errors under the 60 kVA envelope, a step no data made, a time one hour off (DST) — and the earlier kinds (NaN,
above the envelope, wrong meter, future) are each quarantined with their own reason, the counters exact, while
every valid reading interleaved with them passes unchanged."""

from __future__ import annotations

import math
import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import numpy as np

from streams import topics
from streams.bus import LocalBus
from streams.ingest import GuardedBus, IngestGuard, MeterEnvelope, learn_plausibility
from streams.messages import DeadLetter, DeadLetterReason, Message, MeterReading

T0 = datetime(2024, 1, 15, tzinfo=UTC)
FEEDER = "f1"
N_BAD = 10_000
METERS = ("house", "pv", "idle")


def _reading(meter_id: str, p: float, tick: int, *, time_utc: datetime | None = None) -> MeterReading:
    return MeterReading.model_construct(feeder=FEEDER, tick=tick, time_utc=time_utc or T0 + timedelta(minutes=tick),
                                        meter_id=meter_id, p_kw=(p,), q_kvar=(0.0,), estimated=False)


def test_ten_thousand_bad_readings_each_with_its_reason() -> None:
    rng = np.random.default_rng(33)
    history = np.zeros((1440, 3, 3))
    history[:, 0, 0] = rng.uniform(0.1, 4.0, 1440)  # "house": 4 kW peak, no PV
    history[:, 1, 0] = -3.0 * np.sin(np.linspace(0, np.pi, 1440))  # "pv": a smooth day, exporting up to 3 kW
    history[:, 2, 0] = rng.uniform(0.02, 0.06, 1440)  # "idle": tens of watts
    limits = learn_plausibility(history)
    assert limits[0].export_max_kw <= 0.05 < limits[1].export_max_kw
    inner = LocalBus()
    guard = IngestGuard(bus=inner, feeder=FEEDER, envelopes={m: MeterEnvelope(n_terminals=1, s_max_kva=60.0)
                                                              for m in METERS},
                        start_utc=T0, tick_s=60, skew_ticks=2)
    guard.learn(dict(zip(METERS, limits, strict=True)))
    bus = GuardedBus(inner, guard)
    got: list[Message] = []
    letters: list[DeadLetter] = []
    bus.subscribe(topics.meters(FEEDER), lambda t, m: got.append(m))
    bus.subscribe(topics.deadletter(FEEDER), lambda t, m: letters.append(m))  # type: ignore[arg-type]
    kinds = {
        DeadLetterReason.ABOVE_CONTRACT: lambda tick, last: _reading("house", 45.0, tick),
        DeadLetterReason.EXPORT_WITHOUT_PV: lambda tick, last: _reading("house", -20.0, tick),
        DeadLetterReason.UNIT_SCALE: lambda tick, last: _reading("idle", last * 1000.0, tick),  # W sent as kW
        DeadLetterReason.STEP_CHANGE: lambda tick, last: _reading("pv", -2.9 if last > 0 else 2.9, tick),
        DeadLetterReason.CLOCK_OFFSET: lambda tick, last: _reading(
            "house", last, tick, time_utc=T0 + timedelta(minutes=tick, hours=-1)),  # DST: an hour off its tick
        DeadLetterReason.NON_FINITE: lambda tick, last: _reading("house", math.nan, tick),
        DeadLetterReason.IMPLAUSIBLE: lambda tick, last: _reading("house", 75.0, tick),
        DeadLetterReason.ID_MISMATCH: lambda tick, last: _reading("nobody", 1.0, tick),
        DeadLetterReason.FUTURE: lambda tick, last: _reading("house", 1.0, tick + 5),
    }
    order = random.Random(33)
    expected: Counter[str] = Counter()
    valid = 0
    tick = 0
    last = {"house": 1.0, "pv": 0.1, "idle": 0.04}
    valid_range = {"house": (0.2, 3.9), "pv": (-0.3, 0.3), "idle": (0.02, 0.055)}
    while sum(expected.values()) < N_BAD:  # ~2,000 ticks of 3 valid and 5 bad readings
        guard.on_tick(tick, T0 + timedelta(minutes=tick))
        for meter in METERS:  # the valid readings of the tick
            p = float(rng.uniform(*valid_range[meter]))
            bus.publish(topics.meter(FEEDER, meter), _reading(meter, p, tick))
            last[meter] = p
            valid += 1
        for _ in range(5):
            reason = order.choice(list(kinds))
            meter = {DeadLetterReason.STEP_CHANGE: "pv", DeadLetterReason.UNIT_SCALE: "idle"}.get(reason, "house")
            bus.publish(topics.meter(FEEDER, meter), kinds[reason](tick, last[meter]))
            expected[reason.value] += 1
        tick += 1
    assert Counter(d.reason.value for d in letters) == expected
    assert guard.counters.by_reason() == dict(sorted(expected.items()))
    real = [m for m in got if isinstance(m, MeterReading) and not m.estimated]
    assert len(real) == valid, "every valid reading passed"
    assert all(d.detail for d in letters), "each with what was wrong"


def test_json_true_is_not_one_kilowatt() -> None:
    """pydantic reads ``true`` as 1.0; the guard looks at the payload's own bytes (as an MQTT bus keeps them)."""
    raw = {"payload": b""}
    inner = LocalBus()
    guard = IngestGuard(bus=inner, feeder=FEEDER, envelopes={"house": MeterEnvelope(n_terminals=1, s_max_kva=60.0)},
                        start_utc=T0, tick_s=60, skew_ticks=2, raw_payload=lambda: raw["payload"])
    bus = GuardedBus(inner, guard)
    letters: list[DeadLetter] = []
    bus.subscribe(topics.meters(FEEDER), lambda t, m: None)
    bus.subscribe(topics.deadletter(FEEDER), lambda t, m: letters.append(m))  # type: ignore[arg-type]
    text = ('{"feeder": "f1", "tick": 0, "time_utc": "2024-01-15T00:00:00Z", "meter_id": "house", "p_kw": [true], '
            '"q_kvar": [0]}')
    raw["payload"] = text.encode()
    bus.publish(topics.meter(FEEDER, "house"), MeterReading.model_validate_json(text))
    assert [(d.reason, d.detail) for d in letters] == [
        (DeadLetterReason.INVALID, "meter house: a boolean where a number belongs: p_kw [True]")]
