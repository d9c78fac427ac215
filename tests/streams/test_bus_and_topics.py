from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from streams import topics
from streams.bus import LocalBus
from streams.messages import ClockTick, MeterReading


def test_topics_follow_the_versioned_contract() -> None:
    assert topics.meter("ieee", "LOAD1") == "phasetwin/v1/ieee/meter/LOAD1"
    assert topics.device_cmd("f", "psd-1") == "phasetwin/v1/f/device/psd-1/cmd"
    with pytest.raises(ValueError, match="meter id 'a/b' is not a valid topic segment"):
        topics.meter("f", "a/b")


@pytest.mark.parametrize(
    ("pattern", "topic", "expected"),
    [
        ("phasetwin/v1/f/meter/+", "phasetwin/v1/f/meter/m1", True),
        ("phasetwin/v1/f/meter/+", "phasetwin/v1/f/meter/m1/x", False),
        ("phasetwin/v1/#", "phasetwin/v1/f/grid/state", True),
        ("phasetwin/v1/f/grid/state", "phasetwin/v1/f/grid/stat", False),
    ],
)
def test_filter_matching(pattern: str, topic: str, expected: bool) -> None:
    assert topics.matches(pattern, topic) is expected


def test_local_bus_delivers_in_subscription_order_and_counts_unrouted() -> None:
    bus = LocalBus()
    seen: list[tuple[str, str, int]] = []
    bus.subscribe(topics.meters("f"), lambda t, m: seen.append(("first", t, m.tick)))  # type: ignore[attr-defined]
    bus.subscribe("phasetwin/v1/#", lambda t, m: seen.append(("all", t, m.tick)))  # type: ignore[attr-defined]
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    reading = MeterReading(feeder="f", tick=3, time_utc=t0, meter_id="m", p_kw=(1.0,), q_kvar=(0.1,))
    bus.publish(topics.meter("f", "m"), reading)
    bus.publish(topics.twin_clock("f"), ClockTick(feeder="f", tick=4, time_utc=t0, tick_s=60, speed=0))
    bus.publish("elsewhere/x", reading)
    assert seen == [("first", topics.meter("f", "m"), 3), ("all", topics.meter("f", "m"), 3),
                    ("all", topics.twin_clock("f"), 4)]
    assert bus.unrouted == {"elsewhere/x": 1}


def test_messages_reject_non_utc_times_and_unknown_fields() -> None:
    from datetime import timedelta, timezone

    cet = datetime(2024, 1, 1, 1, tzinfo=timezone(timedelta(hours=1)))
    with pytest.raises(ValidationError, match=r"time_utc 2024-01-01T01:00:00\+01:00 must be in UTC"):
        ClockTick(feeder="f", tick=0, time_utc=cet, tick_s=60, speed=0)
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        MeterReading.model_validate({"feeder": "f", "tick": 0, "time_utc": "2024-01-01T00:00:00Z", "meter_id": "m",
                                     "p_kw": [1.0], "q_kvar": [0.0], "volts": 230})


def test_meter_reading_round_trips_through_json() -> None:
    r = MeterReading(feeder="f", tick=1, time_utc=datetime(2024, 1, 1, tzinfo=UTC), meter_id="m",
                     p_kw=(1.5, -0.25), q_kvar=(0.1, 0.0))
    assert MeterReading.model_validate_json(r.model_dump_json()) == r


def test_trusted_construction_equals_validated_construction() -> None:
    values = {"feeder": "f", "tick": 2, "time_utc": datetime(2024, 1, 1, tzinfo=UTC), "meter_id": "m",
              "p_kw": (1.0, 2.0), "q_kvar": (0.5, 0.25), "estimated": False}
    fast, checked = MeterReading.trusted(**values), MeterReading(**values)
    assert fast == checked
    assert fast.model_dump_json() == checked.model_dump_json()
    assert fast.model_fields_set == checked.model_fields_set
