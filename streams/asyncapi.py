"""The message contract as documents: one JSON Schema per message and an AsyncAPI 3.0 description of the MQTT
interface, generated from ``streams/messages.py``, ``streams/topics.py`` and ``streams/contract.py``.

``phasetwin contract`` writes them to ``docs/contract/``; a test checks that the committed files equal freshly
generated ones, so the documents never drift from the code. Output is deterministic (sorted keys, two-space
indent, one trailing newline) and JSON only, so no YAML library is needed at run time.

The standalone schemas (``schemas/<Message>.json``) are JSON Schema 2020-12, as pydantic writes them. The
AsyncAPI document carries the same models in ``components.schemas`` in the AsyncAPI Schema format (a superset
of JSON Schema draft 07, the default payload format of AsyncAPI 3.0): references point into
``components.schemas`` and fixed-length tuples use draft 07's array form of ``items``.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic.json_schema import models_json_schema

from streams import topics
from streams.contract import PAYLOADS, QOS
from streams.errors import StreamError
from streams.messages import ALL_MESSAGES, CONTRACT_VERSION, Message

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "ASYNCAPI_FILE",
    "ContractDocumentError",
    "asyncapi_document",
    "contract_documents",
    "dumps",
    "message_schema",
    "write_contract",
]

ASYNCAPI_FILE = "asyncapi.json"
SCHEMA_FOLDER = "schemas"
_JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
_MQTT_BINDING_VERSION = "0.2.0"
_GENERATED = "Generated from streams/messages.py by `phasetwin contract`; do not edit."


class ContractDocumentError(StreamError):
    """The contract cannot be documented as it stands (a topic or message without its description)."""


@dataclass(frozen=True)
class _Channel:
    """How one topic pattern is used: ``send``/``receive`` say what the twin application does on it (None: it
    never does), and who takes the other side."""

    title: str
    send: str | None
    receive: str | None


_METER_RECEIVE = (
    "The grid role puts each tick's readings into its power flow and simulated devices observe their host's "
    "load; controllers receive them too. Readings are reordered within the reordering window, duplicates "
    "dropped, late ones recorded but not used (see the description of this document)."
)

# Keyed by the patterns of streams.contract.PAYLOADS; a pattern missing here stops the generation.
_CHANNELS: dict[str, _Channel] = {
    "meter/+": _Channel(
        title="One meter's reading for one tick",
        send="The twin's meter replay publishes one reading per meter and tick (`phasetwin replay "
        "--per-meter-topics`). An external meter feed may take this side instead.",
        receive=_METER_RECEIVE,
    ),
    "meters": _Channel(
        title="Every meter of the feeder for one tick",
        send="The twin's meter replay publishes one frame per tick (the default). An external meter feed "
        "(a head-end system) may take this side instead.",
        receive=_METER_RECEIVE,
    ),
    "grid/state": _Channel(
        title="Power-flow result of one tick",
        send="The grid role publishes the power-flow result of every tick, after that tick's meter readings "
        "and device states. Controllers (built-in or external), recorders and dashboards receive it.",
        receive=None,
    ),
    "device/+/cmd": _Channel(
        title="Commands to one device",
        send="The twin's built-in controller or its command schedule commands a device. Controller side: an "
        "external controller (HIL, MQTT user `controller`) sends here instead.",
        receive="The twin's simulated devices take their commands and decide them at the start of the next "
        "tick. Device side: a real device receives only its own `{device_id}` (MQTT user = device id).",
    ),
    "device/+/ack": _Channel(
        title="Acknowledgements of one device",
        send="The twin's simulated devices answer every command: accepted, applied, or rejected with a reason. "
        "Device side: a real device sends its own acks, only on its own `{device_id}`.",
        receive="The twin's controller and recorders receive every ack. Controller side: an external "
        "controller receives them too.",
    ),
    "device/+/state": _Channel(
        title="State of one device, every tick",
        send="The twin's simulated devices publish their state every tick. Device side: a real device "
        "publishes its own, indistinguishable to the grid.",
        receive="The grid role takes every device's phase and injection from these states only; the "
        "controller and recorders receive them too. Controller side: an external controller receives them.",
    ),
    "controller/heartbeat": _Channel(
        title="Controller heartbeat, every control period",
        send="The twin's built-in controller renews the device leases. Controller side: an external "
        "controller sends its own heartbeats instead.",
        receive="The twin's simulated devices renew their lease: without a heartbeat or a valid command "
        "within the lease a device goes to safe mode. Device side: a real device receives it too.",
    ),
    "controller/plan": _Channel(
        title="A controller's decision, every control period",
        send="The twin's built-in controller publishes its plan. Controller side: an external controller "
        "publishes its own plan here.",
        receive="The twin's recorders receive every plan, its own controller's or an external one's.",
    ),
    "twin/clock": _Channel(
        title="Start of every tick",
        send="The twin's clock publishes the start of every tick; devices and controllers may follow it.",
        receive=None,
    ),
    "twin/status": _Channel(
        title="Health of the run, every tick",
        send="The twin publishes its counters every tick: overruns and lateness, missing, rejected and late "
        "readings, dead letters, points written, spooled and dropped.",
        receive=None,
    ),
    "deadletter": _Channel(
        title="Payloads that could not be used",
        send="Any role of the twin publishes a payload it could not use here, with the reason, and counts it.",
        receive=None,
    ),
}

_PARAMETERS: dict[str, str] = {
    "feeder": "the twin's (network's) name, one twin per LV feeder",
    "meter_id": "a customer's meter id, as in the feeder's customer list",
    "device_id": "a device id; a real device's MQTT user name is its device id",
}
# A '+' in a PAYLOADS pattern is named by the segment before it.
_WILDCARD_NAMES: dict[str, str] = {"meter": "meter_id", "device": "device_id"}

def _delivery_text() -> str:
    """The QoS sentence of the description, from ``streams.contract.QOS`` (the bindings read the same table)."""
    by_qos: dict[int, list[str]] = {}
    for pattern, qos in QOS.items():
        by_qos.setdefault(qos, []).append(f"`{pattern}`")
    meaning = {0: "at most once", 1: "at least once", 2: "exactly once"}
    if len(by_qos) == 1:
        (qos, _), = by_qos.items()
        return f"Every topic travels at QoS {qos} ({meaning[qos]}), the per-tick snapshots too."
    return "; ".join(f"QoS {qos} ({meaning[qos]}) for {', '.join(names)}" for qos, names in sorted(by_qos.items())) \
        + "."


# The lease the twin gives its simulated devices (devices.limits.LeaseConfig and the run options; a test keeps
# this text and them alike: streams may not import devices).
_SIMULATED_LEASE = "a lease of 30 min or two control periods, whichever is longer"

_DESCRIPTION = f"""\
The MQTT interface of a phasetwin digital twin of one LV feeder. Every role talks only through these topics, \
below the versioned root `{topics.ROOT}/{{feeder}}/`. Payloads are JSON objects validated against the schemas \
of `components.schemas` (also one JSON Schema file per message in `{SCHEMA_FOLDER}/`); unknown fields are \
rejected. Rules that span fields (a command's expiry after its issue, the fields an action needs, array shapes) \
are checked on arrival as well.

## Roles
- **twin** — the application this document describes; operations are from its point of view. It runs the meter \
replay, the grid (power flow), simulated devices, the built-in controller or a command schedule, and recorders.
- **devices** (PSD, STS, PESS), simulated inside the twin or real: a device receives \
`device/{{device_id}}/cmd` and `controller/heartbeat`, and sends `device/{{device_id}}/ack` and \
`device/{{device_id}}/state`. A real device logs in with its device id as MQTT user name and may use only its \
own topics.
- **controller**, built-in or an external process under test: receives meter data, `grid/state`, device states \
and acks and `twin/clock`; sends `device/{{device_id}}/cmd`, `controller/plan` and `controller/heartbeat`.
- **external HIL parties** take one of these sides instead of the twin's simulated role: an external \
controller logs in as MQTT user `controller`, a real device as its device id, an external meter feed sends \
`meters` or `meter/{{meter_id}}`. Recorders and dashboards (users `recorder`, `dashboard`) only read.

## Delivery
{_delivery_text()} Within a tick the order is fixed: clock, meter readings, device states, grid state, then (every \
control period) the controller's plan and commands, then the twin's status; a command is decided at the start \
of the next tick and takes effect then (or after the device's operating time). Sequence numbers of commands \
increase strictly per device; a device executes a sequence number at most once, acknowledges a repeat of it \
again and rejects older ones as stale.

## Invalid, duplicate and late data
- Malformed/invalid payloads are published to `{topics.ROOT}/{{feeder}}/deadletter` with the reason and \
counted (`TwinStatus.deadletters`).
- A meter reading for a tick older than the current reordering window is late: recorded, excluded from control \
and power flow (`TwinStatus.readings_late`).
- A duplicate (same meter, same tick) is dropped and counted.
- Out-of-order readings within the window are reordered.

## Start-up: a device's phase and its lease
- **Phase.** The twin starts every customer on the phase(s) its network file gives. A PSD or STS reports the \
phase in force in every `device/{{device_id}}/state` (`DeviceState.phase`), and from its first state on the \
twin's power flow uses that phase; nothing on the bus tells a device its phase. A real device reads its own \
switch position; a device emulated for a test starts on its customer's phase in the network file.
- **Lease.** A device's lease is its own setting: without a valid command or controller heartbeat for that long \
(on the device's clock) it goes to its safe state (`safe_reason: lease_expired`). A controller sends \
`controller/heartbeat` every control period. The twin's simulated devices use {_SIMULATED_LEASE}; a real device \
should use at least two control periods, so that one lost heartbeat does not make it safe.
"""


def dumps(document: dict[str, Any]) -> str:
    """The one serialisation of every contract document: sorted keys, two-space indent, trailing newline."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def message_schema(model: type[Message]) -> dict[str, Any]:
    """The standalone JSON Schema (2020-12) of one message, with ``$id``, ``title`` and the contract version."""
    schema = model.model_json_schema(mode="validation")
    schema["$schema"] = _JSON_SCHEMA_DIALECT
    schema["$id"] = f"urn:phasetwin:{topics.VERSION}:schema:{model.__name__}"
    schema["title"] = model.__name__
    schema["version"] = CONTRACT_VERSION
    schema["$comment"] = _GENERATED
    return schema


def asyncapi_document() -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document of the whole MQTT interface, as a JSON-ready dict.

    Raises:
        ContractDocumentError: a topic pattern of ``streams.contract.PAYLOADS`` has no description or QoS here,
            or a payload model is missing from ``ALL_MESSAGES``.
    """
    _check_coverage()
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for pattern, model in PAYLOADS.items():
        channel_id = _channel_id(pattern)
        channels[channel_id] = _channel(pattern, model)
        operations.update(_operations(pattern, model, channel_id))
    return {
        "asyncapi": "3.0.0",
        "id": "urn:phasetwin:twin",
        "info": {
            "title": "phasetwin — digital twin of an LV three-phase feeder",
            "version": CONTRACT_VERSION,
            "description": _DESCRIPTION,
        },
        "defaultContentType": "application/json",
        "servers": _servers(),
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": _component_schemas(),
            "messages": {model.__name__: _message(model) for model in ALL_MESSAGES},
            "parameters": {name: {"description": text} for name, text in _PARAMETERS.items()},
            "securitySchemes": {
                "userPassword": {
                    "type": "userPassword",
                    "description": "Mosquitto password file: users `twin`, `controller`, `recorder`, `dashboard` "
                    "and one user per real device named by its device id; `docker/mosquitto/acl` says what each "
                    "may read and write.",
                },
            },
        },
    }


def contract_documents() -> dict[str, dict[str, Any]]:
    """Every contract document by its path relative to the output folder: ``asyncapi.json`` and
    ``schemas/<Message>.json`` for each message of ``ALL_MESSAGES``."""
    documents = {ASYNCAPI_FILE: asyncapi_document()}
    for model in ALL_MESSAGES:
        documents[f"{SCHEMA_FOLDER}/{model.__name__}.json"] = message_schema(model)
    return documents


def write_contract(out_dir: Path) -> list[Path]:
    """Write every contract document below ``out_dir`` (created if needed) and return the paths written.

    ``out_dir/schemas/`` belongs to the generator: a ``*.json`` there that is no longer generated (a renamed or
    removed message) is deleted.

    Raises:
        ContractDocumentError: see ``asyncapi_document``.
        OSError: a file could not be written.
    """
    documents = contract_documents()
    written: list[Path] = []
    for relative, document in documents.items():
        path = out_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dumps(document), encoding="utf-8")
        written.append(path)
    for stale in sorted((out_dir / SCHEMA_FOLDER).glob("*.json")):
        if stale not in written:
            stale.unlink()
    return written


# --- pieces of the AsyncAPI document -----------------------------------------------------------------------
def _check_coverage() -> None:
    problems = [f"topic pattern {p!r} of streams.contract.PAYLOADS has no channel description in "
                "streams/asyncapi.py _CHANNELS" for p in PAYLOADS if p not in _CHANNELS]
    problems += [f"topic pattern {p!r} has no entry in streams.contract.QOS" for p in PAYLOADS if p not in QOS]
    problems += [f"{m.__name__} (payload of {p!r}) is missing from streams.messages.ALL_MESSAGES"
                 for p, m in PAYLOADS.items() if m not in ALL_MESSAGES]
    problems += [f"{p!r} in streams/asyncapi.py _CHANNELS is not a topic pattern of streams.contract.PAYLOADS"
                 for p in _CHANNELS if p not in PAYLOADS]
    if problems:
        listed = "\n".join(f"  {i}. {problem}" for i, problem in enumerate(problems, start=1))
        raise ContractDocumentError(f"cannot document the contract; {len(problems)} problem(s):\n{listed}")


def _parameter_names(pattern: str) -> list[str]:
    names = ["feeder"]
    segments = pattern.split("/")
    for i, segment in enumerate(segments):
        if segment == "+":
            before = segments[i - 1] if i > 0 else ""
            if before not in _WILDCARD_NAMES:
                raise ContractDocumentError(
                    f"topic pattern {pattern!r}: no parameter name for the '+' after {before!r}; add it to "
                    "_WILDCARD_NAMES in streams/asyncapi.py"
                )
            names.append(_WILDCARD_NAMES[before])
    return names


def _address(pattern: str) -> str:
    names = iter(_parameter_names(pattern)[1:])
    segments = [f"{{{next(names)}}}" if s == "+" else s for s in pattern.split("/")]
    return f"{topics.ROOT}/{{feeder}}/{'/'.join(segments)}"


def _channel_id(pattern: str) -> str:
    words = [s for s in pattern.split("/") if s != "+"]
    return words[0] + "".join(w[:1].upper() + w[1:] for w in words[1:])


def _summary(model: type[Message]) -> str:
    first_paragraph = inspect.cleandoc(model.__doc__ or model.__name__).split("\n\n")[0]
    return " ".join(first_paragraph.split())


def _channel(pattern: str, model: type[Message]) -> dict[str, Any]:
    doc = _CHANNELS[pattern]
    return {
        "address": _address(pattern),
        "title": doc.title,
        "description": f"Carries `{model.__name__}` with MQTT QoS {QOS[pattern]}.",
        "messages": {model.__name__: {"$ref": f"#/components/messages/{model.__name__}"}},
        "parameters": {name: {"$ref": f"#/components/parameters/{name}"} for name in _parameter_names(pattern)},
    }


def _operations(pattern: str, model: type[Message], channel_id: str) -> dict[str, Any]:
    doc = _CHANNELS[pattern]
    operations: dict[str, Any] = {}
    for action, description in (("send", doc.send), ("receive", doc.receive)):
        if description is None:
            continue
        operations[f"{action}{model.__name__}"] = {
            "action": action,
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "messages": [{"$ref": f"#/channels/{channel_id}/messages/{model.__name__}"}],
            "summary": f"{action.capitalize()} {model.__name__} on {_address(pattern)}",
            "description": description,
            "bindings": {"mqtt": {"qos": QOS[pattern], "retain": False, "bindingVersion": _MQTT_BINDING_VERSION}},
        }
    return operations


def _message(model: type[Message]) -> dict[str, Any]:
    return {
        "name": model.__name__,
        "title": model.__name__,
        "summary": _summary(model),
        "contentType": "application/json",
        "payload": {"$ref": f"#/components/schemas/{model.__name__}"},
    }


def _servers() -> dict[str, Any]:
    def server(protocol: str, description: str, host: str, port: str, port_description: str) -> dict[str, Any]:
        return {"host": "{host}:{port}", "protocol": protocol, "protocolVersion": "5", "description": description,
                "variables": {"host": {"default": "localhost", "description": host},
                              "port": {"default": port, "description": port_description}},
                "security": [{"$ref": "#/components/securitySchemes/userPassword"}]}

    return {
        "broker": server("mqtt", "Mosquitto 2 (docker/mosquitto/mosquitto.conf): no anonymous clients, per-user ACL.",
                         "broker host name (`mosquitto` in docker/compose)", "1883", "plain MQTT listener"),
        "brokerTls": server("secure-mqtt", "The optional TLS listener of docker/mosquitto/mosquitto.conf (commented "
                            "out there).", "broker host name, as in its certificate", "8883", "MQTT over TLS listener"),
    }


def _component_schemas() -> dict[str, Any]:
    _, top = models_json_schema(
        [(model, "validation") for model in ALL_MESSAGES], ref_template="#/components/schemas/{model}"
    )
    schemas: dict[str, Any] = top["$defs"]
    return {name: _draft07(schema) for name, schema in schemas.items()}


def _draft07(node: Any) -> Any:
    """Rewrite 2020-12 keywords that draft 07 spells differently (``prefixItems`` -> ``items`` as an array)."""
    if isinstance(node, list):
        return [_draft07(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _draft07(value) for key, value in node.items()}
    if "prefixItems" in out:
        if "items" in out:
            raise ContractDocumentError(f"cannot express both prefixItems and items in draft 07: {node}")
        out["items"] = out.pop("prefixItems")
    return out
