"""The contract documents in ``docs/contract/`` are generated from the models and say what the models say.

```
streams/messages.py ─┐
streams/topics.py   ─┼─► write_contract(tmp) ══ byte for byte ══ docs/contract/ (committed)
streams/contract.py ─┘                │
                                      └─► schemas ──jsonschema──► one real instance of every message: valid
                                                                  the same without a required field: invalid
```
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from jsonschema import Draft7Validator, Draft202012Validator

from streams import topics
from streams.asyncapi import ASYNCAPI_FILE, asyncapi_document, contract_documents, message_schema, write_contract
from streams.contract import PAYLOADS, QOS, decode
from streams.messages import (
    ALL_MESSAGES,
    CONTRACT_VERSION,
    AckStatus,
    BatteryState,
    ClockTick,
    ControllerHeartbeat,
    ControllerPlan,
    DeadLetter,
    DeadLetterReason,
    DeviceAck,
    DeviceAction,
    DeviceCommand,
    DeviceKind,
    DeviceMode,
    DeviceState,
    GridState,
    Message,
    MeterFrame,
    MeterReading,
    PlannedCommand,
    RejectReason,
    RunState,
    TwinStatus,
)

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "contract"
FEEDER = "ieee-european-lv"
T0 = datetime(2024, 1, 15, 17, 0, tzinfo=UTC)
_TIMED: dict[str, Any] = {"feeder": FEEDER, "tick": 1020, "time_utc": T0}


def _instances() -> dict[type[Message], Message]:
    """One realistic instance of every message of the contract."""
    battery = BatteryState(
        e_kwh=6.2, charge_kw=0.0, discharge_kw=1.4, pv_available_kw=0.0, pv_used_kw=0.0, setpoint_kw=1.4,
        limited_by="", charged_kwh=3.1, discharged_kwh=1.8, loss_kwh=0.25, pv_kwh=9.4, curtailed_kwh=0.0,
        energy_residual_kwh=0.0,
    )
    return {
        ClockTick: ClockTick(**_TIMED, tick_s=60, speed=60.0),
        MeterReading: MeterReading(**_TIMED, meter_id="LOAD17", p_kw=(1.92,), q_kvar=(0.39,)),
        MeterFrame: MeterFrame(
            **_TIMED, meter_ids=("LOAD1", "LOAD2"),
            p_kw=np.array([[0.8, 0.0, 0.0], [1.1, 1.2, 0.9]]), q_kvar=np.array([[0.16, 0.0, 0.0], [0.2, 0.2, 0.2]]),
        ),
        GridState: GridState(
            **_TIMED, engine="power-grid-model",
            vm_pu=np.array([[1.04, 1.04, 1.04], [1.01, 1.03, 1.02], [0.98, 1.02, 1.0]]),
            va_deg=np.array([[0.0, -120.0, 120.0], [-0.4, -120.2, 119.8], [-0.9, -120.5, 119.6]]),
            i_ka=np.array([[0.081, 0.042, 0.055], [0.030, 0.011, 0.019]]), i_n_ka=np.array([0.034, 0.016]),
            p_trafo_kw=(52.1, 30.4, 38.7), q_trafo_kvar=(10.2, 6.1, 7.7), loss_kw=1.3,
            phase_load_kw=np.array([[51.0, 29.9, 38.1]]), p_unb_kw=np.array([14.4]),
            vm_min_pu=(0.98, 1.02, 1.0), vm_max_pu=(1.04, 1.04, 1.04), vuf_max_pct=1.2, i_n_max_a=34.0,
            kappa_trafo=0.21,
        ),
        TwinStatus: TwinStatus(
            **_TIMED, state=RunState.RUNNING, ticks_total=1021, overruns=0, max_lateness_s=0.0,
            powerflow_failures=0, readings_missing=2, readings_rejected=1, readings_late=1, lateness_s=0.0,
            deadletters=1, points_written=20_400, points_spooled=0, points_dropped=0,
        ),
        DeviceCommand: DeviceCommand(
            device_id="psd-1", seq=7, issued_utc=T0, expires_utc=T0 + timedelta(minutes=5),
            action=DeviceAction.SET_PHASE, phase="B", source="rolling-milp",
        ),
        DeviceAck: DeviceAck(
            **_TIMED, device_id="psd-1", seq=7, status=AckStatus.REJECTED, reason=RejectReason.DWELL,
            detail="612 s of the 900 s minimum dwell left",
        ),
        DeviceState: DeviceState(
            **_TIMED, device_id="pess-1", kind=DeviceKind.PESS, customer_id="LOAD53", mode=DeviceMode.NORMAL,
            phase="A", p_kw=(-1.4, 0.0, 0.0), in_transition=False, operations_today=0, operations_total=0,
            dwell_remaining_s=0.0, last_seq=3, commands_executed=3, rejections=0, unsupplied_kwh=0.0,
            operation_cost=0.0, battery=battery,
        ),
        ControllerHeartbeat: ControllerHeartbeat(**_TIMED, controller_id="rolling-milp"),
        ControllerPlan: ControllerPlan(
            **_TIMED, controller_id="rolling-milp", strategy="rolling-milp", status="optimal", reason="",
            step_start_utc=T0 + timedelta(minutes=1), step_s=900.0, n_steps=8, objective=41.7, p_unb_kwh=12.3,
            switches=2, solve_s=0.31, fallbacks=0, predicted_vm_min_pu=0.97, predicted_vm_max_pu=1.04,
            commands=(PlannedCommand(device_id="psd-1", phase="B"), PlannedCommand(device_id="pess-1", battery_kw=1.4,
                                                                                   curtailment=0.0)),
        ),
        DeadLetter: DeadLetter(
            topic=f"{topics.ROOT}/{FEEDER}/meter/LOAD17", reason=DeadLetterReason.INVALID,
            detail="invalid MeterReading: p_kw: Field required",
            payload='{"feeder": "ieee-european-lv"}', received_utc=T0,
        ),
    }


INSTANCES = _instances()


def _topic_for(pattern: str) -> str:
    return f"{topics.ROOT}/{FEEDER}/{pattern.replace('+', 'x-1')}"


def _wire(message: Message) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(message.model_dump_json())
    return loaded


def _component_validator(document: dict[str, Any], name: str) -> Draft7Validator:
    # allOf, not a bare $ref: in draft 07 a $ref hides its sibling keywords, and "components" must stay in the
    # root resource for "#/components/schemas/..." to resolve.
    schema = {"allOf": [{"$ref": f"#/components/schemas/{name}"}], "components": document["components"]}
    return Draft7Validator(schema)


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"{ref} is not a local reference"
    node: Any = document
    for part in ref[2:].split("/"):
        assert isinstance(node, dict) and part in node, f"{ref} does not resolve (no {part!r})"
        node = node[part]
    return node


# --- the committed files ------------------------------------------------------------------------------------
def test_committed_documents_equal_freshly_generated_ones(tmp_path: Path) -> None:
    written = write_contract(tmp_path)
    fresh = {p.relative_to(tmp_path).as_posix(): p.read_bytes() for p in written}
    committed = {p.relative_to(COMMITTED).as_posix(): p.read_bytes() for p in COMMITTED.rglob("*.json")}
    hint = "docs/contract/ is out of date with streams/; run `phasetwin contract` to update it"
    assert sorted(committed) == sorted(fresh), hint
    stale = [name for name in fresh if committed[name] != fresh[name]]
    assert not stale, f"{hint} (differs: {', '.join(stale)})"


def test_output_is_deterministic_sorted_and_ends_with_one_newline(tmp_path: Path) -> None:
    first = {p.name: p.read_text(encoding="utf-8") for p in write_contract(tmp_path / "a")}
    second = {p.name: p.read_text(encoding="utf-8") for p in write_contract(tmp_path / "b")}
    assert first == second
    for name, text in first.items():
        assert text.endswith("}\n") and not text.endswith("\n\n"), name
        assert text == json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + "\n", name


def test_write_contract_removes_the_schema_of_a_message_that_no_longer_exists(tmp_path: Path) -> None:
    (tmp_path / "schemas").mkdir()
    gone = tmp_path / "schemas" / "MeterBatch.json"
    gone.write_text("{}\n")
    written = write_contract(tmp_path)
    assert not gone.exists()
    assert len(written) == len(ALL_MESSAGES) + 1
    assert {p.name for p in (tmp_path / "schemas").iterdir()} == {f"{m.__name__}.json" for m in ALL_MESSAGES}


# --- the AsyncAPI document ------------------------------------------------------------------------------------
def test_asyncapi_header_servers_and_policy() -> None:
    doc = asyncapi_document()
    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"]["version"] == CONTRACT_VERSION
    broker = doc["servers"]["broker"]
    assert (broker["protocol"], broker["protocolVersion"], broker["host"]) == ("mqtt", "5", "{host}:{port}")
    assert set(broker["variables"]) == {"host", "port"}
    description = doc["info"]["description"]
    for role in ("**twin**", "**devices**", "**controller**", "**external HIL parties**"):
        assert role in description
    for rule in (
        "Malformed/invalid payloads are published to `phasetwin/v1/{feeder}/deadletter` with the reason and counted",
        "older than the current reordering window is late: recorded, excluded from control and power flow",
        "A duplicate (same meter, same tick) is dropped and counted",
        "Out-of-order readings within the window are reordered",
    ):
        assert rule in description


@pytest.mark.parametrize("pattern", list(PAYLOADS))
def test_every_topic_has_a_channel_a_message_and_operations_with_its_qos(pattern: str) -> None:
    doc = asyncapi_document()
    model = PAYLOADS[pattern]
    address = f"{topics.ROOT}/{{feeder}}/" + pattern.replace("device/+", "device/{device_id}").replace(
        "meter/+", "meter/{meter_id}")
    channels = {cid: ch for cid, ch in doc["channels"].items() if ch["address"] == address}
    addresses = [c["address"] for c in doc["channels"].values()]
    assert len(channels) == 1, f"no single channel with address {address}: {addresses}"
    (channel_id, channel), = channels.items()
    assert channel["messages"] == {model.__name__: {"$ref": f"#/components/messages/{model.__name__}"}}
    assert doc["components"]["messages"][model.__name__]["payload"] == {
        "$ref": f"#/components/schemas/{model.__name__}"}
    in_address = {part[1:-1] for part in address.split("/") if part.startswith("{")}
    assert set(channel["parameters"]) == in_address
    assert in_address <= set(doc["components"]["parameters"])
    operations = [op for op in doc["operations"].values() if op["channel"] == {"$ref": f"#/channels/{channel_id}"}]
    assert operations, f"no operation on channel {channel_id}"
    for op in operations:
        assert op["action"] in ("send", "receive")
        assert op["bindings"]["mqtt"]["qos"] == QOS[pattern]
        assert op["messages"] == [{"$ref": f"#/channels/{channel_id}/messages/{model.__name__}"}]


def test_every_topic_travels_at_qos_1() -> None:
    # The twin's own roles read grid state and status back over the broker; QoS 0 would drop them while the
    # broker restarts (tests/streams/mqtt/test_mqtt_bus.py restarts it mid-replay and compares every table).
    assert set(QOS) == set(PAYLOADS)
    assert set(QOS.values()) == {1}


def test_the_twin_sends_everything_and_receives_what_devices_controllers_and_meter_feeds_send() -> None:
    actions = {(op["action"], op["messages"][0]["$ref"].rsplit("/", 1)[1])
               for op in asyncapi_document()["operations"].values()}
    assert {name for action, name in actions if action == "send"} == {m.__name__ for m in ALL_MESSAGES}
    assert {name for action, name in actions if action == "receive"} == {
        "MeterReading", "MeterFrame", "DeviceCommand", "DeviceAck", "DeviceState", "ControllerHeartbeat",
        "ControllerPlan"}


def test_every_reference_in_the_asyncapi_document_resolves() -> None:
    doc = asyncapi_document()
    refs = _refs(doc)
    assert len(refs) > 50
    for ref in refs:
        _resolve(doc, ref)
    assert "$defs" not in json.dumps(doc), "component schemas must reference #/components/schemas, not $defs"
    assert "prefixItems" not in json.dumps(doc), "AsyncAPI schemas are draft 07: tuples use items as an array"


# --- schemas against real instances ---------------------------------------------------------------------------
def test_there_is_one_realistic_instance_of_every_message() -> None:
    assert set(INSTANCES) == set(ALL_MESSAGES)
    for pattern, model in PAYLOADS.items():
        instance = INSTANCES[model]
        own_id = getattr(instance, "meter_id", None) or getattr(instance, "device_id", None) or "x-1"
        decoded = decode(_topic_for(pattern).replace("x-1", own_id), instance.model_dump_json())
        assert decoded.model_dump_json() == instance.model_dump_json()


@pytest.mark.parametrize("model", ALL_MESSAGES, ids=lambda m: m.__name__)
def test_each_schema_file_has_its_header_and_validates_a_real_instance(model: type[Message]) -> None:
    schema = json.loads((COMMITTED / "schemas" / f"{model.__name__}.json").read_text(encoding="utf-8"))
    assert schema == message_schema(model)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"urn:phasetwin:v1:schema:{model.__name__}"
    assert (schema["title"], schema["version"]) == (model.__name__, CONTRACT_VERSION)
    Draft202012Validator(schema).validate(_wire(INSTANCES[model]))


@pytest.mark.parametrize("model", ALL_MESSAGES, ids=lambda m: m.__name__)
def test_each_asyncapi_component_schema_validates_a_real_instance(model: type[Message]) -> None:
    doc = json.loads((COMMITTED / ASYNCAPI_FILE).read_text(encoding="utf-8"))
    _component_validator(doc, model.__name__).validate(_wire(INSTANCES[model]))


@pytest.mark.parametrize("model", ALL_MESSAGES, ids=lambda m: m.__name__)
def test_an_instance_without_a_required_field_or_with_an_unknown_one_is_invalid(model: type[Message]) -> None:
    schema = message_schema(model)
    component = _component_validator(asyncapi_document(), model.__name__)
    required = schema["required"]
    assert required, f"{model.__name__} has no required field"
    for field in required:
        payload = _wire(INSTANCES[model])
        del payload[field]
        errors = [e.message for e in Draft202012Validator(schema).iter_errors(payload)]
        assert errors == [f"'{field}' is a required property"]
        assert [e.message for e in component.iter_errors(payload)] == [f"'{field}' is a required property"]
    extra = {**_wire(INSTANCES[model]), "p_unknown_kw": 1.0}
    assert not Draft202012Validator(schema).is_valid(extra)
    assert not component.is_valid(extra)


def test_a_wrong_type_nested_in_a_message_is_invalid() -> None:
    payload = _wire(INSTANCES[DeviceState])
    payload["battery"]["e_kwh"] = "full"
    payload["p_kw"] = [0.0, 0.0]
    errors = sorted(e.message for e in Draft202012Validator(message_schema(DeviceState)).iter_errors(payload))
    assert any("'full'" in e for e in errors), errors
    assert any("is too short" in e for e in errors), errors


def test_contract_documents_lists_the_asyncapi_file_and_one_schema_per_message() -> None:
    assert sorted(contract_documents()) == sorted(
        [ASYNCAPI_FILE, *(f"schemas/{m.__name__}.json" for m in ALL_MESSAGES)])


def test_the_delivery_text_states_the_qos_every_channel_binds() -> None:
    # issue 29, item 10: the text said QoS 0 for the snapshots while every binding said QoS 1
    text = asyncapi_document()["info"]["description"]
    delivery = text[text.index("## Delivery"):text.index("## Invalid")]
    assert {int(q) for q in re.findall(r"QoS (\d)", delivery)} == set(QOS.values())


@pytest.mark.parametrize(("period_s", "lease_s"), [(900, 1800.0), (300, 1800.0), (3600, 7200.0)])
def test_the_start_up_text_gives_the_lease_simulated_devices_get(period_s: int, lease_s: float) -> None:
    # issue 29, item 10: the contract never said how a device learns its phase or how long its lease is
    from phasetwin.run.options import ScenarioOptions

    text = " ".join(asyncapi_document()["info"]["description"].split())
    assert "a lease of 30 min or two control periods, whichever is longer" in text
    assert "`DeviceState.phase`" in text and "nothing on the bus tells a device its phase" in text
    scenario = ScenarioOptions(tick=60, control_period=period_s).scenario()
    assert scenario.fleet.lease.lease_s == lease_s == max(30 * 60, 2 * period_s)
