"""Shared builders for device tests: commands at given times."""

from datetime import UTC, datetime, timedelta

import pytest

from streams.messages import DeviceAction, DeviceCommand

T0 = datetime(2024, 1, 15, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def command(
    device_id: str, seq: int, *, t_s: float, action: DeviceAction = DeviceAction.SET_PHASE, phase: str | None = "B",
    ttl_s: float = 60.0, battery_kw: float | None = None, curtailment: float | None = None,
) -> DeviceCommand:
    return DeviceCommand(device_id=device_id, seq=seq, issued_utc=at(t_s), expires_utc=at(t_s + ttl_s),
                         action=action, phase=phase, battery_kw=battery_kw, curtailment=curtailment)


@pytest.fixture
def t0() -> datetime:
    return T0
