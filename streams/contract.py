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
    """A payload does not fit the contract; ``reason`` is what a dead letter reports."""

    def __init__(self, topic: str, reason: str) -> None:
        self.topic = topic
        self.reason = reason
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
    raise ContractError(topic, f"topic is not part of the {topics.ROOT} contract")


def decode(topic: str, payload: bytes | str) -> Message:
    """Validate a JSON payload against its topic's model; ContractError names every invalid field."""
    model = payload_type(topic)
    try:
        return model.model_validate_json(payload)
    except ValidationError as err:
        problems = validation_problems(err, root="payload")
        raise ContractError(topic, f"invalid {model.__name__}: {problems}") from err
