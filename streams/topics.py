"""Every MQTT topic of the contract, versioned. Roles build topics only through these functions."""

from __future__ import annotations

import re

VERSION = "v1"
ROOT = f"phasetwin/{VERSION}"
_SEGMENT = re.compile(r"^[A-Za-z0-9._-]+$")


def _check(kind: str, value: str) -> str:
    if not _SEGMENT.match(value):
        raise ValueError(f"{kind} {value!r} is not a valid topic segment; use letters, digits, '.', '_' or '-'")
    return value


def meter(feeder: str, meter_id: str) -> str:
    return f"{ROOT}/{_check('feeder', feeder)}/meter/{_check('meter id', meter_id)}"


def meters(feeder: str) -> str:
    """Subscription filter for every meter of a feeder."""
    return f"{ROOT}/{_check('feeder', feeder)}/meter/+"


def meter_frame(feeder: str) -> str:
    """Every meter of a feeder in one message per tick (``MeterFrame``)."""
    return f"{ROOT}/{_check('feeder', feeder)}/meters"


def device_cmd(feeder: str, device_id: str) -> str:
    return f"{ROOT}/{_check('feeder', feeder)}/device/{_check('device id', device_id)}/cmd"


def device_ack(feeder: str, device_id: str) -> str:
    return f"{ROOT}/{_check('feeder', feeder)}/device/{_check('device id', device_id)}/ack"


def device_state(feeder: str, device_id: str) -> str:
    return f"{ROOT}/{_check('feeder', feeder)}/device/{_check('device id', device_id)}/state"


def grid_state(feeder: str) -> str:
    return f"{ROOT}/{_check('feeder', feeder)}/grid/state"


def controller_plan(feeder: str) -> str:
    return f"{ROOT}/{_check('feeder', feeder)}/controller/plan"


def controller_heartbeat(feeder: str) -> str:
    return f"{ROOT}/{_check('feeder', feeder)}/controller/heartbeat"


def device_cmds(feeder: str) -> str:
    """Subscription filter for the commands to every device of a feeder."""
    return f"{ROOT}/{_check('feeder', feeder)}/device/+/cmd"


def device_states(feeder: str) -> str:
    """Subscription filter for the states of every device of a feeder."""
    return f"{ROOT}/{_check('feeder', feeder)}/device/+/state"


def device_acks(feeder: str) -> str:
    return f"{ROOT}/{_check('feeder', feeder)}/device/+/ack"


def device_id_of(topic: str) -> str:
    """The device id segment of a ``.../device/{id}/...`` topic; ValueError if there is none."""
    parts = topic.split("/")
    if len(parts) < 6 or parts[3] != "device":
        raise ValueError(f"topic {topic!r} is not a device topic ({ROOT}/{{feeder}}/device/{{id}}/...)")
    return parts[4]


def twin_clock(feeder: str) -> str:
    return f"{ROOT}/{_check('feeder', feeder)}/twin/clock"


def twin_status(feeder: str) -> str:
    return f"{ROOT}/{_check('feeder', feeder)}/twin/status"


def deadletter(feeder: str) -> str:
    return f"{ROOT}/{_check('feeder', feeder)}/deadletter"


def matches(pattern: str, topic: str) -> bool:
    """MQTT filter matching with '+' (one level) and '#' (the rest)."""
    p_parts, t_parts = pattern.split("/"), topic.split("/")
    for i, part in enumerate(p_parts):
        if part == "#":
            return True
        if i >= len(t_parts) or (part != "+" and part != t_parts[i]):
            return False
    return len(p_parts) == len(t_parts)


def filters_overlap(a: str, b: str) -> bool:
    """Whether some topic matches both MQTT filters ``a`` and ``b``."""
    pa, pb = a.split("/"), b.split("/")
    for i in range(max(len(pa), len(pb))):
        x = pa[i] if i < len(pa) else None
        y = pb[i] if i < len(pb) else None
        if x == "#" or y == "#":
            return True
        if x is None or y is None:
            return False
        if x != y and x != "+" and y != "+":
            return False
    return True
