"""The message contract: every payload on the bus, as pydantic models.

In process (LocalBus) the objects travel as they are; over MQTT they travel as JSON made by ``model_dump_json``
and are validated on arrival with ``model_validate_json``. Arrays are numpy in memory and nested lists in JSON.
JSON Schema and AsyncAPI documents are generated from these models, never written by hand.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

import numpy as np
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    WithJsonSchema,
    field_validator,
    model_validator,
)

CONTRACT_VERSION = "1.0.0"


def _float_array(value: Any) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as err:
        raise ValueError(f"expected an array of numbers, got {type(value).__name__}") from err
    return arr


FloatArray = Annotated[
    np.ndarray,
    PlainValidator(_float_array),
    PlainSerializer(lambda a: a.tolist(), return_type=list),
    WithJsonSchema({"type": "array", "items": {"anyOf": [{"type": "number"}, {"type": "array"}]}}),
]

PerPhase = tuple[float, float, float]


class Message(BaseModel):
    """Base of every payload: frozen, unknown fields rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @classmethod
    def trusted(cls, **values: Any) -> Self:
        """Build without validation, for in-process producers whose values were validated upstream (hot loops).

        Every field must be given. Four times cheaper than ``model_construct`` because it skips defaults and
        field-name resolution; ``tests/streams`` checks it equals the validated message.
        """
        message = cls.__new__(cls)
        object.__setattr__(message, "__dict__", values)
        object.__setattr__(message, "__pydantic_fields_set__", set(values))
        object.__setattr__(message, "__pydantic_extra__", None)
        object.__setattr__(message, "__pydantic_private__", None)
        return message


class _Timed(Message):
    feeder: str = Field(description="twin (network) name, as in the topic")
    tick: int = Field(ge=0, description="tick index since the start of the run")
    time_utc: AwareDatetime = Field(description="simulation time of the tick start, timezone-aware")

    @field_validator("time_utc")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        offset = value.utcoffset()
        if offset is None or offset.total_seconds() != 0:
            raise ValueError(f"time_utc {value.isoformat()} must be in UTC (offset +00:00)")
        return value


class ClockTick(_Timed):
    """Published at the start of every tick on ``.../twin/clock``."""

    tick_s: int = Field(gt=0)
    speed: float = Field(ge=0, description="simulated seconds per wall second / tick_s scale; 0 = as fast as possible")
    run: str = Field(default="", description="this run's nonce, new in every run: signed commands and heartbeats "
                     "carry it in their own ``run`` field, and devices refuse another run's (replay across runs)")


class MeterReading(_Timed):
    """One customer's mean power over the tick, per terminal (terminal j is wired to the customer's j-th phase)."""

    meter_id: str
    p_kw: tuple[float, ...] = Field(min_length=1, max_length=3, description="load-positive active power")
    q_kvar: tuple[float, ...] = Field(min_length=1, max_length=3, description="load-positive reactive power")
    estimated: bool = Field(default=False, description="put in by the twin's ingest guard in place of a quarantined "
                            "reading: the meter's last good value")


class MeterFrame(_Timed):
    """Every meter of a feeder for one tick, as a head-end system delivers an interval: row i is
    ``meter_ids[i]``'s terminals (unused terminals 0). Equivalent to one ``MeterReading`` per meter."""

    meter_ids: tuple[str, ...] = Field(min_length=1)
    p_kw: FloatArray = Field(description="[n_meters, 3] load-positive active power per terminal")
    q_kvar: FloatArray = Field(description="[n_meters, 3] load-positive reactive power per terminal")
    estimated: tuple[str, ...] = Field(default=(), description="meters whose row the twin's ingest guard replaced "
                                       "by their last good value (their own row was quarantined)")

    @model_validator(mode="after")
    def _shapes(self) -> Self:
        expected = (len(self.meter_ids), 3)
        for name in ("p_kw", "q_kvar"):
            shape = getattr(self, name).shape
            if shape != expected:
                raise ValueError(f"{name} has shape {list(shape)}; expected {list(expected)} (meter_ids × 3)")
        return self


class GridState(_Timed):
    """Power-flow result of one tick. Arrays are in the feeder's bus and line order."""

    engine: str
    vm_pu: FloatArray = Field(description="[n_bus, 3] voltage magnitude per bus and phase, p.u.")
    va_deg: FloatArray = Field(description="[n_bus, 3] voltage angle per bus and phase, degrees")
    i_ka: FloatArray = Field(description="[n_line, 3] line current per phase at the from end, kA")
    i_n_ka: FloatArray = Field(description="[n_line] neutral current at the from end, kA")
    p_trafo_kw: PerPhase = Field(description="active power into the LV side per phase, kW")
    q_trafo_kvar: PerPhase
    loss_kw: float
    phase_load_kw: FloatArray = Field(description="[n_lv_feeders, 3] aggregate customer load per phase (eq. 8)")
    p_unb_kw: FloatArray = Field(description="[n_lv_feeders] P_unb summand of eq. 7 per LV feeder, kW")
    vm_min_pu: PerPhase = Field(description="lowest |V| per phase over the LV buses, p.u.")
    vm_max_pu: PerPhase = Field(description="highest |V| per phase over the LV buses, p.u.")
    vuf_max_pct: float = Field(description="highest voltage unbalance factor |V2|/|V1| over the LV buses, %")
    i_n_max_a: float = Field(description="highest neutral current over the lines, A")
    kappa_trafo: float = Field(description="current unbalance κ of the transformer LV side (STS paper eq. 9)")
    estimated_meters: tuple[str, ...] = Field(default=(), description="customers whose load this tick is an "
                                              "estimate (last good value) because their reading was quarantined")


class RunState(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"


class TwinStatus(_Timed):
    """Health of the run, published every tick on ``.../twin/status``; counters never reset within a run."""

    state: RunState
    ticks_total: int = Field(ge=0)
    overruns: int = Field(ge=0, description="ticks that finished after the next tick was due (real time only)")
    max_lateness_s: float = Field(ge=0)
    powerflow_failures: int = Field(ge=0)
    readings_missing: int = Field(ge=0, description="expected meter readings that did not arrive in their tick")
    readings_rejected: int = Field(ge=0)
    readings_late: int = Field(default=0, ge=0, description="readings that arrived after their tick's reordering "
                               "window closed: recorded, not used by the power flow or control")
    lateness_s: float = Field(default=0.0, ge=0, description="how late this tick finished (real time only)")
    deadletters: int = Field(default=0, ge=0, description="payloads rejected to .../deadletter so far")
    points_written: int = Field(default=0, ge=0, description="time-series points the database confirmed")
    points_spooled: int = Field(default=0, ge=0, description="points waiting in the on-disk spool")
    points_dropped: int = Field(default=0, ge=0, description="points lost (spool full); should stay 0")
    quarantined: dict[str, int] = Field(default_factory=dict, description="payloads quarantined to the dead letters "
                                        "so far, per reason code (DeadLetterReason)")
    readings_estimated: int = Field(default=0, ge=0, description="meter values replaced by the last good value")
    broker_ok: bool = Field(default=True, description="the MQTT broker answers (False: frozen or partitioned)")
    broker_stalls: int = Field(default=0, ge=0, description="times the broker was detected unresponsive")
    outbound_queued: int = Field(default=0, ge=0, description="messages sent but not yet acknowledged by the broker")
    outbound_dropped: int = Field(default=0, ge=0, description="messages dropped because the outbound queue was full")
    detail: str = ""


class DeviceKind(StrEnum):
    """Controllable equipment that may sit at a customer connection."""

    PSD = "psd"
    STS = "sts"
    PESS = "pess"


PhaseLetter = Literal["A", "B", "C"]


class DeviceAction(StrEnum):
    SET_PHASE = "set_phase"
    """PSD: connect the customer to ``phase``."""
    TRANSFER = "transfer"
    """STS: transfer the load (or PESS) it carries to ``phase``."""
    SET_BATTERY = "set_battery"
    """PESS: battery power ``battery_kw`` and PV ``curtailment``; a switchable single-phase PESS also ``phase``."""
    RESET = "reset"
    """Clear a lockout after a fault (operator action)."""


class Signature(Message):
    """Ed25519 signature of a command or heartbeat: over the canonical form (RFC 8785, JCS) of the JSON object
    as sent, without its ``auth`` member — ``docs/contract/signing.md``."""

    key_id: str = Field(min_length=1, description="which signing key; devices look it up in their keyring")
    signature: str = Field(min_length=1, description="base64 of the 64-byte Ed25519 signature")


class DeviceCommand(Message):
    """A command on ``.../device/{id}/cmd``. Sequence numbers increase strictly per device; a device executes a
    sequence number at most once, acknowledges a repeat of it again, and rejects older ones as stale."""

    device_id: str = Field(min_length=1)
    seq: int = Field(ge=0, description="strictly increasing per device")
    issued_utc: AwareDatetime
    expires_utc: AwareDatetime = Field(description="a command not executed by this time is rejected as expired")
    action: DeviceAction
    phase: PhaseLetter | None = Field(default=None, description="target phase (set_phase, transfer, set_battery)")
    battery_kw: float | None = Field(
        default=None, description="battery power at the AC side: + discharge into the grid, − charge, kW"
    )
    curtailment: float | None = Field(
        default=None, ge=0, le=1, description="share of the available PV output to curtail (ξ, eq. 33), 0..1"
    )
    source: str = Field(default="", description="who sent it (controller id, 'schedule', operator)")
    auth: Signature | None = Field(default=None, description="signature; required when devices have a keyring")
    run: str = Field(default="", description="the run nonce of the twin's clock (``ClockTick.run``) the command "
                     "is meant for; signed; a device with a keyring refuses another run's as wrong_run")

    @model_validator(mode="after")
    def _fields_for_action(self) -> Self:
        if self.expires_utc <= self.issued_utc:
            raise ValueError(
                f"expires_utc {self.expires_utc.isoformat()} must be after issued_utc {self.issued_utc.isoformat()}"
            )
        if self.action in (DeviceAction.SET_PHASE, DeviceAction.TRANSFER) and self.phase is None:
            raise ValueError(f"action {self.action.value} needs a phase (A, B or C)")
        if self.action == DeviceAction.SET_BATTERY and self.battery_kw is None and self.curtailment is None:
            raise ValueError("action set_battery needs battery_kw and/or curtailment")
        return self


class AckStatus(StrEnum):
    ACCEPTED = "accepted"
    """Valid and started; an ``applied`` ack follows when the operation is complete."""
    APPLIED = "applied"
    """Complete (also for a no-op: a switch to the phase already in force)."""
    REJECTED = "rejected"


class RejectReason(StrEnum):
    INTERLOCK = "interlock"
    """The device is mid-operation, or the action is not one this device performs."""
    LOCKOUT = "lockout"
    """Locked out after a fault until a ``reset``."""
    DWELL = "dwell"
    """Less than the minimum dwell time since the last switch operation."""
    DAILY_LIMIT = "daily_limit"
    """The day's maximum number of operations is used up."""
    RATING = "rating"
    """The load (current) or the setpoint exceeds the device's rating."""
    EXPIRED = "expired"
    STALE_SEQUENCE = "stale_sequence"
    UNKNOWN_DEVICE = "unknown_device"
    MALFORMED = "malformed"
    AUTH_FAILED = "auth_failed"
    """No valid signature from a known, unrevoked key (signed mode)."""
    REPLAY = "replay"
    """A signed ``(key, seq)`` this device has already seen."""
    FUTURE = "future"
    """Issued further in the future than the device's clock allows (bounded skew)."""
    WRONG_RUN = "wrong_run"
    """Signed for another run (its ``run`` is not this run's nonce): a capture replayed across runs."""


class DeviceAck(_Timed):
    """Answer to a command on ``.../device/{id}/ack``; ``time_utc`` is when the device decided."""

    device_id: str
    seq: int = Field(ge=-1, description="the command's sequence number; -1 when it could not be read")
    status: AckStatus
    reason: RejectReason | None = None
    detail: str = ""
    duplicate: bool = Field(default=False, description="a repeat of an already acknowledged sequence number")
    effective_utc: AwareDatetime | None = Field(default=None, description="when an applied operation took effect")


class SafeReason(StrEnum):
    """Why a device is in its safe state."""

    STARTED = "started"
    """No controller has spoken to it since it started."""
    LEASE_EXPIRED = "lease_expired"
    """Its lease (renewed by valid commands and heartbeats, on its own clock) ran out."""
    LOCKOUT = "lockout"
    """Locked out after a fault, until a reset."""
    OFFLINE = "offline"
    """Its connection died: the MQTT will an external device registers when it connects (a ``DeviceState`` on
    its own state topic, mode ``safe``), published by the broker. Not a change of phase or power: the twin keeps
    the device's last state and takes it as unavailable until it publishes again."""


class DeviceMode(StrEnum):
    NORMAL = "normal"
    SAFE = "safe"
    """No valid command or controller heartbeat within the lease: switches hold, a PESS self-consumes."""
    LOCKOUT = "lockout"


class BatteryState(Message):
    """PV + battery part of a PESS state, over the tick that starts at the state's ``time_utc``."""

    e_kwh: float = Field(description="stored energy at the end of the tick")
    charge_kw: float = Field(ge=0, description="AC-side charging power")
    discharge_kw: float = Field(ge=0, description="AC-side discharging power")
    pv_available_kw: float = Field(ge=0)
    pv_used_kw: float = Field(ge=0)
    setpoint_kw: float | None = Field(description="commanded battery power (+ discharge); None = self-consumption")
    limited_by: str = Field(default="", description="what cut the setpoint this tick (soc, power, inverter, day-end)")
    charged_kwh: float = Field(ge=0, description="cumulative AC energy into the battery")
    discharged_kwh: float = Field(ge=0, description="cumulative AC energy out of the battery")
    loss_kwh: float = Field(ge=0, description="cumulative conversion losses")
    pv_kwh: float = Field(ge=0, description="cumulative available PV energy")
    curtailed_kwh: float = Field(ge=0, description="cumulative curtailed PV energy")
    energy_residual_kwh: float = Field(description="E − E_0 − (charged − discharged − losses); 0 up to rounding")


class DeviceState(_Timed):
    """A device's state for the tick starting at ``time_utc``, on ``.../device/{id}/state``.

    ``p_kw`` is what the device adds to its host customer's load on each network phase (load-positive; a
    PESS injecting is negative) — this, with ``phase``, is all the power flow needs from a device.
    """

    device_id: str
    kind: DeviceKind
    customer_id: str
    mode: DeviceMode
    safe_reason: SafeReason | None = Field(default=None, description="why the device is not in normal mode")
    phase: PhaseLetter | None = Field(description="phase in force; None while the load is unsupplied all tick")
    p_kw: PerPhase = Field(description="device injection per network phase, load-positive, kW")
    in_transition: bool
    operations_today: int = Field(ge=0)
    operations_total: int = Field(ge=0)
    dwell_remaining_s: float = Field(ge=0, description="time until the minimum dwell allows the next operation")
    last_seq: int = Field(ge=-1)
    commands_executed: int = Field(ge=0)
    rejections: int = Field(ge=0, description="commands rejected so far, all reasons")
    unsupplied_kwh: float = Field(ge=0, description="cumulative load energy not supplied during operations")
    operation_cost: float = Field(ge=0, description="cumulative δ · operations (STS paper eq. 2)")
    battery: BatteryState | None = None


class PlannedCommand(Message):
    """What a plan's first step asks of one device."""

    device_id: str
    phase: PhaseLetter | None = None
    battery_kw: float | None = Field(default=None, description="+ discharge, − charge, kW")
    curtailment: float | None = None


class ControllerPlan(_Timed):
    """A controller's decision on ``.../controller/plan``, published every control period; ``time_utc`` is when
    it was made, ``step_start_utc`` when its first step starts."""

    controller_id: str
    strategy: str
    status: str = Field(description="optimal | feasible | heuristic | fallback | hold")
    reason: str
    step_start_utc: AwareDatetime
    step_s: float = Field(gt=0)
    n_steps: int = Field(ge=0)
    objective: float
    p_unb_kwh: float = Field(description="forecast P_unb over the horizon (paper 000 eq. 7 × Δt), kWh")
    switches: int = Field(ge=0, description="switch operations planned over the horizon")
    solve_s: float = Field(ge=0)
    commands: tuple[PlannedCommand, ...]
    fallbacks: int = Field(ge=0, description="control periods so far in which the last safe plan was held")
    predicted_vm_min_pu: float | None = Field(default=None, description="LTUPF prediction for the first step")
    predicted_vm_max_pu: float | None = None
    violations: tuple[str, ...] = Field(default=(), description="LTUPF limit violations of the first step as solved")
    repaired: bool = Field(default=False, description="the first step's PSD positions were moved to meet the limits")


class ControllerHeartbeat(_Timed):
    """Published by a controller every control period on ``.../controller/heartbeat``; renews device leases."""

    controller_id: str = Field(min_length=1)
    seq: int = Field(default=0, ge=0, description="strictly increasing per signing key (replay protection)")
    auth: Signature | None = Field(default=None, description="signature; required when devices have a keyring")
    run: str = Field(default="", description="the run nonce of the twin's clock (``ClockTick.run``); signed; "
                     "devices with a keyring ignore another run's heartbeats")


class DeadLetterReason(StrEnum):
    """The fixed list of reasons a payload is quarantined to ``.../deadletter``."""

    NOT_JSON = "not_json"
    """The payload is not JSON."""
    INVALID = "invalid"
    """JSON that does not fit the topic's model (a missing, null or wrongly typed field)."""
    UNKNOWN_TOPIC = "unknown_topic"
    """The topic is not part of the contract."""
    NON_FINITE = "non_finite"
    """A meter value is NaN or infinite (``NaN``, ``Infinity``, ``"NaN"``, ``1e309``)."""
    IMPLAUSIBLE = "implausible"
    """A meter value outside the customer's plausibility envelope (terminals, connection rating)."""
    ID_MISMATCH = "id_mismatch"
    """The payload names another meter, device or feeder than its topic, or a meter the feeder does not have."""
    FUTURE = "future"
    """Dated beyond the bounded clock skew of the receiver."""
    AUTH_FAILED = "auth_failed"
    """A heartbeat without a valid signature of a known, unrevoked key (signed mode)."""
    REPLAY = "replay"
    """A signed heartbeat whose ``(key, seq)`` was already seen."""
    TOO_LARGE = "too_large"
    """A payload above the receiver's maximum size: not parsed."""
    ABOVE_CONTRACT = "above_contract"
    """Within the envelope but above the customer's own limit (contracted power, given or learned from its data)."""
    EXPORT_WITHOUT_PV = "export_without_pv"
    """Export (negative load) at a customer without generation."""
    STEP_CHANGE = "step_change"
    """A jump from the meter's last good value larger than the customer's data ever showed."""
    UNIT_SCALE = "unit_scale"
    """About 1,000 times (or a thousandth of) the meter's last good value: W sent as kW, or kW as MW."""
    CLOCK_OFFSET = "clock_offset"
    """Its time does not match its tick, or lies a whole number of hours behind the receiver's (a DST or time-zone
    error of the sender's clock)."""
    INCONSISTENT = "inconsistent"
    """Contradicts the sender's last accepted message (a device's operation counter going down, its phase
    changing without an operation)."""


class DeadLetter(Message):
    """A payload that could not be used, with the reason; published on ``.../deadletter``."""

    topic: str
    reason: DeadLetterReason
    detail: str = Field(default="", description="what exactly was wrong (field, value, expected)")
    payload: str = Field(description="the first 1,000 characters of the raw payload, as received")
    received_utc: AwareDatetime = Field(description="wall-clock time the receiver got it")


class AuditRecord(Message):
    """One command as a device decided on it: one line of the run folder's ``audit.jsonl`` and one point of the
    ``audit`` measurement. Not a bus message."""

    run: str = Field(description="run id")
    entry: int = Field(default=0, ge=0, description="position in the run's audit log, from 0")
    device_id: str
    topic: str
    origin: str = Field(description="the command's source field (controller id, 'schedule', operator)")
    key_id: str = Field(description="signing key id; '' when unsigned")
    seq: int
    action: str
    issued_utc: AwareDatetime | None
    expires_utc: AwareDatetime | None
    received_utc: AwareDatetime = Field(description="wall-clock time the command arrived")
    decided_utc: AwareDatetime = Field(description="device (simulation) time of the decision")
    tick: int = Field(ge=0)
    outcome: AckStatus
    reason: RejectReason | None = None
    detail: str = ""
    run_nonce: str = Field(default="", description="the run the command was signed for (its ``run`` field)")
    authentic: bool = Field(default=False, description="signature good, for this run, not a replay, in time: "
                            "only such records are genuine commands (unsigned mode: never)")


ALL_MESSAGES: tuple[type[Message], ...] = (
    ClockTick, MeterReading, MeterFrame, GridState, TwinStatus, DeviceCommand, DeviceAck, DeviceState,
    ControllerHeartbeat, ControllerPlan, DeadLetter,
)
