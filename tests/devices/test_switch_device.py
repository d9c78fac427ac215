"""PSD and STS: interlocks, acknowledgements and exactly-once execution, by example and by property."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.device_commands import at, command
from support.property_examples import DEVICE_SEQUENCES

from devices.limits import psd_limits, sts_limits
from devices.psd import Psd
from devices.sts import Sts
from devices.switch_device import SwitchDevice
from streams.messages import AckStatus, DeviceAction, RejectReason
from twin.phase import Phase


def psd(**limits: float) -> Psd:
    return Psd(device_id="psd-1", customer_id="c1", phase=Phase.A, limits=psd_limits(**limits))


def test_switch_moves_after_the_operating_time_and_counts_unsupplied_energy() -> None:
    d = psd(operating_time_s=90.0)
    d.observe(p_kw=2.0, q_kvar=0.0)
    ack = d.handle(command("psd-1", 1, t_s=0, phase="C"), at(0))
    assert ack.status == AckStatus.ACCEPTED
    first = d.step(at(0), 60)
    assert first.phase is None and first.in_transition and not first.applied  # break-before-make, all tick
    second = d.step(at(60), 60)
    assert second.phase == Phase.C
    assert [o.status for o in second.applied] == [AckStatus.APPLIED]
    assert second.applied[0].effective_utc == at(90)
    assert d.unsupplied_kwh == pytest.approx(2.0 * 90 / 3600)


def test_command_to_the_phase_in_force_is_a_no_op() -> None:
    d = psd()
    ack = d.handle(command("psd-1", 1, t_s=0, phase="A"), at(0))
    assert ack.status == AckStatus.APPLIED and "no-op" in ack.detail
    assert d.operations_total == 0


@pytest.mark.parametrize(
    ("first_phase", "second_t_s", "limits", "load_kw", "reason"),
    [
        ("B", 899.0, {}, 1.0, RejectReason.DWELL),
        ("B", 30.0, {"operating_time_s": 60.0, "min_dwell_s": 0.0}, 1.0, RejectReason.INTERLOCK),
        ("B", 900.0, {"max_operations_per_day": 1}, 1.0, RejectReason.DAILY_LIMIT),
        (None, 0.0, {"rating_a": 10.0}, 5.0, RejectReason.RATING),  # 5 kW at 230 V is 21.7 A
    ],
)
def test_interlocks_refuse_with_their_reason(
    first_phase: str | None, second_t_s: float, limits: dict[str, float], load_kw: float, reason: RejectReason
) -> None:
    d = psd(**limits)
    d.observe(p_kw=load_kw, q_kvar=0.0)
    if first_phase is not None:
        assert d.handle(command("psd-1", 1, t_s=0, phase=first_phase), at(0)).status == AckStatus.ACCEPTED
    ack = d.handle(command("psd-1", 2, t_s=second_t_s, phase="C"), at(second_t_s))
    assert (ack.status, ack.reason) == (AckStatus.REJECTED, reason)
    assert d.gate.rejections[reason] == 1


def test_daily_limit_resets_at_utc_midnight() -> None:
    d = psd(max_operations_per_day=1, min_dwell_s=0.0)
    assert d.handle(command("psd-1", 1, t_s=3600, phase="B"), at(3600)).status == AckStatus.ACCEPTED
    assert d.handle(command("psd-1", 2, t_s=7200, phase="C"), at(7200)).reason == RejectReason.DAILY_LIMIT
    next_day = 86400.0
    assert d.handle(command("psd-1", 3, t_s=next_day, phase="C"), at(next_day)).status == AckStatus.ACCEPTED


def test_duplicate_is_acknowledged_again_never_executed_twice_and_stale_is_rejected() -> None:
    d = psd(min_dwell_s=0.0)
    cmd = command("psd-1", 5, t_s=0, phase="B")
    assert d.handle(cmd, at(0)).status == AckStatus.ACCEPTED
    d.step(at(0), 60)
    again = d.handle(cmd, at(120))
    assert again.duplicate and again.status == AckStatus.APPLIED  # the latest answer to seq 5
    assert d.operations_total == 1
    stale = d.handle(command("psd-1", 4, t_s=120, phase="C"), at(120))
    assert stale.reason == RejectReason.STALE_SEQUENCE and d.switch.phase == Phase.B


def test_expired_command_is_rejected_and_not_executed() -> None:
    d = psd()
    ack = d.handle(command("psd-1", 1, t_s=0, phase="B", ttl_s=10), at(10))
    assert ack.reason == RejectReason.EXPIRED and d.switch.phase == Phase.A


def test_lockout_refuses_until_reset_and_a_psd_refuses_sts_actions() -> None:
    d = psd()
    d.trip("overcurrent")
    assert d.handle(command("psd-1", 1, t_s=0, phase="B"), at(0)).reason == RejectReason.LOCKOUT
    assert d.handle(command("psd-1", 2, t_s=1, action=DeviceAction.RESET, phase=None), at(1)).status == (
        AckStatus.APPLIED)
    assert d.handle(command("psd-1", 3, t_s=2, action=DeviceAction.TRANSFER, phase="B"), at(2)).reason == (
        RejectReason.INTERLOCK)
    assert d.handle(command("psd-1", 4, t_s=3, phase="B"), at(3)).status == AckStatus.ACCEPTED


def test_sts_accumulates_its_operation_cost() -> None:
    d = Sts(device_id="sts-1", customer_id="c1", phase=Phase.A, limits=sts_limits(min_dwell_s=0.0))
    for seq, (t_s, phase) in enumerate([(0, "B"), (60, "C"), (120, "C")], start=1):
        d.handle(command("sts-1", seq, t_s=t_s, action=DeviceAction.TRANSFER, phase=phase), at(t_s))
        d.step(at(t_s), 60)
    assert d.operations_total == 2
    assert d.operation_cost == pytest.approx(2 * sts_limits().cost_per_operation)


# --- property: 10,000 random command sequences per device kind -------------------------------------------------

@dataclass(frozen=True)
class Event:
    advance_s: float
    seq_kind: str  # next | duplicate | stale | jump
    phase: str
    ttl_s: float
    load_kw: float
    fault: str  # none | trip | reset


events = st.builds(
    Event,
    advance_s=st.sampled_from([0.0, 0.01, 0.02, 0.06, 1.0, 60.0, 300.0, 899.0, 900.0, 3600.0, 20000.0]),
    seq_kind=st.sampled_from(["next", "next", "next", "duplicate", "stale", "jump"]),
    phase=st.sampled_from(["A", "B", "C"]),
    ttl_s=st.sampled_from([-1.0, 0.5, 60.0]),
    load_kw=st.floats(min_value=0.0, max_value=25.0),
    fault=st.sampled_from(["none"] * 8 + ["trip", "reset"]),
)


def _drive(device: SwitchDevice, action: DeviceAction, sequence: list[Event]) -> None:
    """Drive a device and check every limit against an independent record of what it executed."""
    limits = device.switch.limits
    t_s, seq, sent = 0.0, 0, []
    operations: list[float] = []
    executed: set[int] = set()
    phase = device.switch.phase
    locked = False
    for ev in sequence:
        t_s += ev.advance_s
        device.observe(p_kw=ev.load_kw, q_kvar=0.0)
        if ev.fault == "trip":
            device.trip("test fault")
            locked = True
        if ev.seq_kind == "duplicate" and sent:
            cmd = sent[-1]
        else:
            seq = max(seq - 3, 0) if ev.seq_kind == "stale" else seq + (7 if ev.seq_kind == "jump" else 1)
            kind = DeviceAction.RESET if ev.fault == "reset" else action
            cmd = command(device.device_id, seq, t_s=t_s + min(ev.ttl_s, 0.0) * 2, action=kind,
                          phase=None if kind == DeviceAction.RESET else ev.phase, ttl_s=abs(ev.ttl_s))
            sent.append(cmd)
        before = device.operations_total
        outcome = device.handle(cmd, at(t_s))
        if device.operations_total != before:
            # an operation started now: it must be this command's first execution and allowed by every limit
            assert not outcome.duplicate and cmd.seq not in executed
            assert not locked
            assert at(t_s) < cmd.expires_utc
            assert cmd.phase is not None and cmd.phase != phase.name
            # gaps from the datetimes the device saw (whole microseconds), not from summed floats
            gap_s = (at(t_s) - at(operations[-1])).total_seconds() if operations else None
            assert gap_s is None or gap_s >= limits.min_dwell_s
            assert gap_s is None or gap_s >= limits.operating_time_s
            day = int(t_s // 86400)
            assert sum(1 for o in operations if int(o // 86400) == day) < limits.max_operations_per_day
            assert device.load_i_a <= limits.rating_a
            operations.append(t_s)
            executed.add(cmd.seq)
            phase = device.switch.phase
        if outcome.status == AckStatus.APPLIED and cmd.action == DeviceAction.RESET and not outcome.duplicate:
            locked = False
        assert device.operations_total == len(operations)
        report = device.step(at(t_s), 60)
        assert report.phase in (phase, None)


@settings(max_examples=DEVICE_SEQUENCES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sequence=st.lists(events, min_size=1, max_size=25))
def test_psd_never_violates_a_limit_or_executes_twice(sequence: list[Event]) -> None:
    _drive(Psd(device_id="psd-x", customer_id="c", phase=Phase.A), DeviceAction.SET_PHASE, sequence)


@settings(max_examples=DEVICE_SEQUENCES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sequence=st.lists(events, min_size=1, max_size=25))
def test_sts_never_violates_a_limit_or_executes_twice(sequence: list[Event]) -> None:
    _drive(Sts(device_id="sts-x", customer_id="c", phase=Phase.B), DeviceAction.TRANSFER, sequence)
