"""The normative signing spec (docs/contract/signing.md) holds: its worked vector is what phasetwin and the
stand-alone reference signer compute (canonical bytes and signature), a device accepts the vector as sent, the
canonical numbers are ECMAScript's (RFC 8785's own examples, and 20,000 random doubles the same in both
implementations), and a mismatch says what the signer did differently."""

from __future__ import annotations

import base64
import importlib.util
import json
import random
import struct
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import pytest

from streams.messages import DeviceAction, DeviceCommand
from streams.signing import KeyEntry, Keyring, Signer, canonical_bytes, canonical_json, signed_body

CONTRACT = Path(__file__).resolve().parents[2] / "docs" / "contract"
VECTOR = json.loads((CONTRACT / "signing-vector.jsonl").read_text())  # one JSON object on one line
T0 = datetime(2024, 1, 15, 6, tzinfo=UTC)


def _reference() -> ModuleType:
    spec = importlib.util.spec_from_file_location("reference_signer", CONTRACT / "reference_signer.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["reference_signer"] = module
    spec.loader.exec_module(module)
    return module


REF = _reference()
SEED = base64.b64decode(VECTOR["private_key_seed_b64"])
SIGNER = Signer.from_json(json.dumps({"key_id": VECTOR["key_id"], "private_key": VECTOR["private_key_seed_b64"]}),
                          source="vector")
RING = Keyring((KeyEntry(key_id=VECTOR["key_id"], public_key=VECTOR["public_key_b64"]),))


def test_the_worked_vector() -> None:
    payload = VECTOR["payload"].encode()
    canonical = canonical_json(signed_body(payload))
    assert canonical.decode() == VECTOR["canonical"] and canonical.hex() == VECTOR["canonical_utf8_hex"]
    assert REF.signed_bytes(json.loads(payload)) == canonical
    signature = base64.b64encode(SIGNER.key.sign(canonical)).decode()  # Ed25519 is deterministic
    assert signature == VECTOR["signature_b64"]
    assert REF.sign(json.loads(payload), key_id=VECTOR["key_id"], seed=SEED)["auth"]["signature"] == signature
    assert SIGNER.public_entry().public_key == VECTOR["public_key_b64"]
    sent = VECTOR["sent"].encode()
    command = DeviceCommand.model_validate_json(sent)
    assert RING.problem(command, raw=sent) == "", "a device accepts the payload as sent"
    tampered = sent.replace(b"-2.50", b"-2.51")
    problem = RING.problem(DeviceCommand.model_validate_json(tampered), raw=tampered)
    assert problem.startswith("the signature does not match the canonical form for key 'example-ctl'")
    assert problem.endswith("no usual variant matches: another key, or the content changed after signing")


@pytest.mark.parametrize(("value", "text"), [
    (0.0, "0"), (-0.0, "0"), (1.0, "1"), (-2.5, "-2.5"), (0.1, "0.1"), (1e21, "1e+21"), (1e20, "100000000000000000000"),
    (1e-6, "0.000001"), (1e-7, "1e-7"), (123456789012345680000.0, "123456789012345680000"),
    (5e-324, "5e-324"), (1.7976931348623157e308, "1.7976931348623157e+308"), (0.1 + 0.2, "0.30000000000000004"),
    (4.5, "4.5"), (333333333.3333333, "333333333.3333333"), (2**53, "9007199254740992"), (-1e-7, "-1e-7"),
])
def test_numbers_are_written_as_ecmascript_does(value: float, text: str) -> None:
    """RFC 8785 appendix B and ECMA-262 Number::toString examples."""
    assert canonical_json(value).decode() == text and REF.number(value) == text


def test_phasetwin_and_the_reference_signer_agree_on_random_doubles() -> None:
    rng = random.Random(33)
    for _ in range(20_000):
        value = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        if value != value or value in (float("inf"), float("-inf")):
            continue
        assert canonical_json(value).decode() == REF.number(value), value
        assert float(REF.number(value)) == value, "reads back as the same double"


def _command(**extra: object) -> DeviceCommand:
    return DeviceCommand(device_id="psd-1", seq=7, issued_utc=T0, expires_utc=T0 + timedelta(minutes=5),
                         action=DeviceAction.SET_PHASE, phase="B", run="r1", **extra)  # type: ignore[arg-type]


def test_what_phasetwin_signs_verifies_on_the_wire() -> None:
    signed = SIGNER.sign(_command(battery_kw=None))
    wire = signed.model_dump_json().encode()
    assert RING.problem(DeviceCommand.model_validate_json(wire), raw=wire) == ""
    assert canonical_bytes(signed) == canonical_json(signed_body(wire))


def test_a_mismatch_says_what_the_signer_did_differently() -> None:
    sent = {"device_id": "psd-1", "seq": 7, "issued_utc": "2024-01-15T06:00:00+00:00",
            "expires_utc": "2024-01-15T06:05:00+00:00", "action": "set_phase", "phase": "B", "run": "r1"}

    def problem_when_signing(data: bytes) -> str:
        signature = base64.b64encode(SIGNER.key.sign(data)).decode()
        raw = json.dumps({**sent, "auth": {"key_id": VECTOR["key_id"], "signature": signature}}).encode()
        return RING.problem(DeviceCommand.model_validate_json(raw), raw=raw)

    normalised = canonical_bytes(DeviceCommand.model_validate(sent))  # what the docs made people guess
    found = problem_when_signing(normalised)
    assert "it matches the payload as phasetwin normalises it, not as sent" in found
    assert "members only in the normalised form: ['battery_kw', 'curtailment', 'source']" in found
    assert "issued_utc: sent '2024-01-15T06:00:00+00:00', normalised '2024-01-15T06:00:00Z'" in found
    python = json.dumps(sent, sort_keys=True, separators=(",", ":")).encode()
    assert "it matches Python json.dumps" not in problem_when_signing(python), "no float, no escape: the same bytes"
    assert problem_when_signing(python) == ""
    spaced = json.dumps(sent, sort_keys=True).encode()
    assert problem_when_signing(spaced).endswith("it matches sorted keys but with white space")
