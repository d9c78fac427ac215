"""Which message each topic carries, and decoding of raw payloads into validated messages."""

from __future__ import annotations

import functools

from pydantic import ValidationError

from streams import topics
from streams.errors import StreamError, validation_problems
from streams.messages import (
    ClockTick,
    ControllerHeartbeat,
    ControllerPlan,
    DeadLetter,
    DeadLetterReason,
    DeviceAck,
    DeviceCommand,
    DeviceState,
    GridState,
    Message,
    MeterFrame,
    MeterReading,
    TwinStatus,
)

# Topic pattern below phasetwin/v1/{feeder}/ -> payload model.
PAYLOADS: dict[str, type[Message]] = {
    "meter/+": MeterReading,
    "meters": MeterFrame,
    "grid/state": GridState,
    "device/+/cmd": DeviceCommand,
    "device/+/ack": DeviceAck,
    "device/+/state": DeviceState,
    "controller/heartbeat": ControllerHeartbeat,
    "controller/plan": ControllerPlan,
    "twin/clock": ClockTick,
    "twin/status": TwinStatus,
    "deadletter": DeadLetter,
}

# MQTT QoS per topic pattern (the keys of PAYLOADS): 1 (at least once) everywhere. Even the per-tick snapshots
# (grid state, clock, status) are read back over the broker by the twin's own roles and recorders, and QoS 0
# messages are dropped while the broker restarts. The MQTT bus and the AsyncAPI document both read it here.
QOS: dict[str, int] = {
    "meter/+": 1,
    "meters": 1,
    "grid/state": 1,
    "device/+/cmd": 1,
    "device/+/ack": 1,
    "device/+/state": 1,
    "controller/heartbeat": 1,
    "controller/plan": 1,
    "twin/clock": 1,
    "twin/status": 1,
    "deadletter": 1,
}


class ContractError(StreamError):
    """A payload does not fit the contract; ``code`` (from the fixed list) and ``reason`` (the detail) are what a
    dead letter reports."""

    def __init__(self, topic: str, reason: str, code: DeadLetterReason = DeadLetterReason.INVALID) -> None:
        self.topic = topic
        self.reason = reason
        self.code = code
        super().__init__(f"{topic}: {reason}")


def qos_of(topic: str) -> int:
    """The QoS a topic travels at (QOS); 1 for a topic outside the contract."""
    parts = topic.split("/", 3)
    if len(parts) == 4:
        for pattern, qos in QOS.items():
            if topics.matches(pattern, parts[3]):
                return qos
    return 1


@functools.lru_cache(maxsize=4096)
def payload_type(topic: str) -> type[Message]:
    """The model a topic carries; ContractError if the topic is not part of the contract (cached per topic: a
    feeder has a few hundred topics and this runs for every message received)."""
    parts = topic.split("/", 3)
    if len(parts) == 4 and f"{parts[0]}/{parts[1]}" == topics.ROOT:
        for pattern, model in PAYLOADS.items():
            if topics.matches(pattern, parts[3]):
                return model
    raise ContractError(topic, f"topic is not part of the {topics.ROOT} contract", DeadLetterReason.UNKNOWN_TOPIC)


def decode(topic: str, payload: bytes | str) -> Message:
    """Validate a JSON payload against its topic's model; ContractError names every invalid field."""
    model = payload_type(topic)
    try:
        message = model.model_validate_json(payload)
    except ValidationError as err:
        problems = validation_problems(err, root="payload")
        not_json = any(e["type"] == "json_invalid" for e in err.errors(include_url=False))
        raise ContractError(topic, f"invalid {model.__name__}: {problems}",
                            DeadLetterReason.NOT_JSON if not_json else DeadLetterReason.INVALID) from err
    mismatch = id_mismatch(topic, message)
    if mismatch:
        raise ContractError(topic, mismatch, DeadLetterReason.ID_MISMATCH)
    return message


def id_mismatch(topic: str, message: Message) -> str:
    """What the payload names differently from its topic (feeder, meter or device id); "" when they agree."""
    parts = topic.split("/")
    feeder = getattr(message, "feeder", None)
    if feeder is not None and len(parts) > 2 and feeder != parts[2]:
        return f"payload feeder {feeder!r} is not the topic's feeder {parts[2]!r}"
    if len(parts) == 5 and parts[3] == "meter":
        meter_id = getattr(message, "meter_id", None)
        if meter_id is not None and meter_id != parts[4]:
            return f"payload meter_id {meter_id!r} is not the topic's meter {parts[4]!r}"
    if len(parts) == 6 and parts[3] == "device":
        device_id = getattr(message, "device_id", None)
        if device_id is not None and device_id != parts[4]:
            return f"payload device_id {device_id!r} is not the topic's device {parts[4]!r}"
    return ""
