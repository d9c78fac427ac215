"""What devices believe: signed heartbeats and commands (Ed25519), replays, and their own clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from devices.verifier import Verdict, Verifier
from streams.messages import ControllerHeartbeat, DeviceAction, DeviceCommand
from streams.signing import Keyring, Signer, SigningError, canonical_bytes

NOW = datetime(2024, 1, 15, 6, 10, tzinfo=UTC)
CTL = Signer.generate("ctl")
OLD = Signer.generate("old")


def _verifier() -> Verifier:
    ring = Keyring((CTL.public_entry(), OLD.public_entry().model_copy(update={"revoked": True})))
    return Verifier(keyring=ring, horizon_s=120.0)


def _beat(seq: int, *, at: datetime = NOW) -> ControllerHeartbeat:
    return ControllerHeartbeat(feeder="f", tick=10, time_utc=at, controller_id="ctl", seq=seq)


def _command(seq: int) -> DeviceCommand:
    return DeviceCommand(device_id="psd-1", seq=seq, issued_utc=NOW, expires_utc=NOW + timedelta(minutes=1),
                         action=DeviceAction.SET_PHASE, phase="B", source="ctl")


def test_a_signed_heartbeat_passes_once_and_its_replay_is_refused() -> None:
    v = _verifier()
    beat = CTL.sign(_beat(7))
    assert v.heartbeat(beat, NOW) is None
    refused = v.heartbeat(ControllerHeartbeat.model_validate_json(beat.model_dump_json()), NOW)
    assert refused is not None and refused[0] is Verdict.REPLAY
    assert v.heartbeat(CTL.sign(_beat(8)), NOW) is None
    assert v.heartbeat(CTL.sign(_beat(5)), NOW) == (Verdict.REPLAY, "seq 5 of key 'ctl' is not above 8")


@pytest.mark.parametrize(("message", "why"), [
    (_beat(1), "unsigned, and this device requires a signature"),
    (Signer.generate("ctl").sign(_beat(1)), "the signature does not match the canonical form for key 'ctl'"),
    (OLD.sign(_beat(1)), "key 'old' is revoked"),
    (Signer.generate("who").sign(_beat(1)), "key 'who' is not in the keyring"),
    (CTL.sign(_beat(1)).model_copy(update={"time_utc": NOW + timedelta(seconds=1)}),
     "the signature does not match the canonical form for key 'ctl'"),
])
def test_a_bad_heartbeat_signature_is_refused_with_the_reason(message: ControllerHeartbeat, why: str) -> None:
    v = _verifier()
    verdict, detail = v.heartbeat(message, NOW) or (None, "")
    assert verdict is Verdict.AUTH_FAILED and detail.startswith(why)
    assert v.heartbeats_refused == {Verdict.AUTH_FAILED: 1}


def test_a_future_dated_message_is_refused_even_when_signed_and_cannot_be_replayed_later() -> None:
    v = _verifier()
    beat = CTL.sign(_beat(30, at=NOW + timedelta(seconds=121)))
    found = v.heartbeat(beat, NOW)
    assert found is not None and found[0] is Verdict.FUTURE
    later = v.heartbeat(beat, NOW + timedelta(hours=1))
    assert later is not None and later[0] is Verdict.EXPIRED, "stale by then"
    assert v.heartbeat(CTL.sign(_beat(4, at=NOW + timedelta(seconds=120))), NOW) is None, "the horizon is inclusive"
    assert v.heartbeat(CTL.sign(_beat(5, at=NOW - timedelta(seconds=121))), NOW) == (
        Verdict.EXPIRED, "dated 2024-01-15T06:07:59+00:00, more than 120 s before the device's clock "
        "2024-01-15T06:10:00+00:00 when it arrived (stale)"), "a refused seq 30 blocked none of the genuine ones"


def test_commands_are_replay_checked_per_device_and_key() -> None:
    v = _verifier()
    first = CTL.sign(_command(100))
    assert v.command("psd-1", first, NOW) is None
    assert v.command("psd-1", first, NOW) is None, "an exact repeat (a retry): the device answers a duplicate"
    changed = CTL.sign(_command(100).model_copy(update={"phase": "C"}))
    assert v.command("psd-1", changed, NOW) == (Verdict.REPLAY, "seq 100 of key 'psd-1/ctl' is not above 100")
    assert v.command("psd-2", CTL.sign(_command(100).model_copy(update={"device_id": "psd-2"})), NOW) is None


def test_unsigned_mode_checks_only_the_clock() -> None:
    v = Verifier(keyring=None, horizon_s=60.0)
    assert v.heartbeat(_beat(0), NOW) is None and v.heartbeat(_beat(0), NOW) is None
    assert v.heartbeat(_beat(0, at=datetime(2030, 1, 1, tzinfo=UTC)), NOW) is not None


def test_the_signature_covers_canonical_json_reproducible_from_the_wire() -> None:
    signed = CTL.sign(_command(1))
    wire = DeviceCommand.model_validate_json(signed.model_dump_json())
    assert canonical_bytes(wire) == canonical_bytes(signed)
    assert b'"auth"' not in canonical_bytes(signed) and b'"seq":1' in canonical_bytes(signed)


def test_a_bad_key_file_is_one_clear_error() -> None:
    with pytest.raises(SigningError, match=r"signing key k.json: private_key has 3 bytes; expected 32"):
        Signer.from_json('{"key_id": "a", "private_key": "YWJj"}', source="k.json")
    with pytest.raises(SigningError, match=r"signing key k.json: key_id: Field required"):
        Signer.from_json('{"private_key": "YWJj"}', source="k.json")
