"""Signed commands and heartbeats: Ed25519 (``cryptography``), one key pair per controller, a keyring on devices.

Why Ed25519 and not HMAC-SHA256: a device holds only public keys, so a device (or its keyring file) that falls
into the wrong hands cannot forge commands for the other devices; with HMAC every device would hold every
controller's secret. Revoking a controller is one line in the devices' keyring. Verification costs about
0.1 ms per message with ``cryptography``, nothing at a command's rate.

What is signed (normative: ``docs/contract/signing.md``): the canonical form of the JSON object *as sent*,
without its top-level ``auth`` member — RFC 8785 (JSON Canonicalization Scheme): members sorted by key, no
white space, ECMAScript number formatting, minimal string escapes, UTF-8 (``canonical_json``). A device
verifies over the payload's own bytes (``Keyring.problem(message, raw=...)``), so a signer may omit optional
members or write times as it likes: it signs what it sends. In process (no bytes) both sides use the message's
``model_dump(mode="json")``, which is exactly what an MQTT bus sends. ``Signature.key_id`` names the key.

Key files (never on the command line, never in the repository):
- a signing key: JSON ``{"key_id": "ctl-1", "private_key": "<base64 of the 32-byte Ed25519 seed>"}``, from a file
  (``--signing-key PATH``) or the environment variable ``PHASETWIN_SIGNING_KEY`` holding that JSON;
- a keyring: JSON ``{"keys": [{"key_id": "ctl-1", "public_key": "<base64 32 bytes>", "revoked": false}]}``
  (``--keyring PATH`` or ``PHASETWIN_KEYRING`` holding the path).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from streams.bus import Bus, BusWrapper
from streams.errors import StreamError, validation_problems
from streams.messages import ControllerHeartbeat, DeviceCommand, Message, Signature

SIGNING_KEY_ENV = "PHASETWIN_SIGNING_KEY"
KEYRING_ENV = "PHASETWIN_KEYRING"
Signed = TypeVar("Signed", DeviceCommand, ControllerHeartbeat)


class SigningError(StreamError):
    """A key file or keyring cannot be used."""


class _KeyFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    key_id: str = Field(min_length=1)
    private_key: str = Field(min_length=1, description="base64 of the 32-byte Ed25519 private key (seed)")


class KeyEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    key_id: str = Field(min_length=1)
    public_key: str = Field(min_length=1, description="base64 of the 32-byte Ed25519 public key")
    revoked: bool = False


class _KeyringFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    keys: tuple[KeyEntry, ...]


class CanonicalError(SigningError):
    """A value that has no canonical form (NaN, infinity, an integer beyond 2**53, a non-JSON type)."""


_MAX_SAFE_INT = 2**53


def _jcs_number(value: float | int) -> str:
    """ECMAScript's Number::toString of ``value`` (RFC 8785 section 3.2.2.3): shortest round-trip digits."""
    if isinstance(value, bool):
        raise CanonicalError("a boolean is not a number")
    if isinstance(value, int):
        if abs(value) > _MAX_SAFE_INT:
            raise CanonicalError(f"integer {value} is beyond 2**53: not exactly representable in JSON")
        return str(value)
    if not math.isfinite(value):
        raise CanonicalError(f"{value} has no JSON form")
    if value == 0:
        return "0"  # also -0
    sign = "-" if value < 0 else ""
    mantissa, _, exp = repr(abs(value)).partition("e")  # Python's repr: the shortest round-trip digits
    whole, _, frac = mantissa.partition(".")
    digits = whole + frac
    stripped = digits.lstrip("0")
    n = len(whole) - (len(digits) - len(stripped)) + int(exp or 0)  # value = 0.DIGITS × 10**n
    digits = stripped.rstrip("0")
    k = len(digits)
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = f"{digits[:n]}.{digits[n:]}"
    elif -6 < n <= 0:
        text = "0." + "0" * -n + digits
    else:
        e = n - 1
        text = (digits if k == 1 else f"{digits[0]}.{digits[1:]}") + f"e{'+' if e >= 0 else '-'}{abs(e)}"
    return sign + text


def _jcs(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int | float):
        out.append(_jcs_number(value))
    elif isinstance(value, str):
        out.append(json.dumps(value, ensure_ascii=False))
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _jcs(item, out)
        out.append("]")
    elif isinstance(value, dict):
        out.append("{")
        for i, key in enumerate(sorted(value, key=lambda k: k.encode("utf-16-be"))):
            if not isinstance(key, str):
                raise CanonicalError(f"object key {key!r} is not a string")
            if i:
                out.append(",")
            out.append(json.dumps(key, ensure_ascii=False))
            out.append(":")
            _jcs(value[key], out)
        out.append("}")
    else:
        raise CanonicalError(f"{type(value).__name__} is not a JSON value")


def canonical_json(value: Any) -> bytes:
    """RFC 8785 (JCS) canonical UTF-8 bytes of a parsed JSON value."""
    out: list[str] = []
    _jcs(value, out)
    return "".join(out).encode()


def signed_body(payload: bytes) -> dict[str, Any]:
    """The JSON object of ``payload`` without its ``auth`` member (what a signature covers).

    Raises:
        CanonicalError: not a JSON object, or a NaN/Infinity in it.
    """
    def refuse(token: str) -> None:
        raise CanonicalError(f"{token} is not JSON")

    try:
        body = json.loads(payload, parse_constant=refuse)
    except (ValueError, UnicodeDecodeError) as err:
        raise CanonicalError(f"not JSON: {err}") from err
    if not isinstance(body, dict):
        raise CanonicalError(f"a {type(body).__name__}, not a JSON object")
    body.pop("auth", None)
    return body


def canonical_bytes(message: DeviceCommand | ControllerHeartbeat, *, raw: bytes | None = None) -> bytes:
    """What a signature covers: the canonical form of the payload ``raw`` as received (or, in process, of the
    message as an MQTT bus would send it) without ``auth``."""
    body = signed_body(raw) if raw is not None else message.model_dump(mode="json", exclude={"auth"})
    return canonical_json(body)


def _b64(text: str, *, what: str, size: int) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as err:
        raise SigningError(f"{what} is not base64") from err
    if len(raw) != size:
        raise SigningError(f"{what} has {len(raw)} bytes; expected {size}")
    return raw


@dataclass(frozen=True)
class Signer:
    """Signs what one controller sends. Heartbeats get a strictly increasing ``seq`` from ``next_seq`` on."""

    key_id: str
    key: Ed25519PrivateKey

    @classmethod
    def generate(cls, key_id: str) -> Signer:
        return cls(key_id=key_id, key=Ed25519PrivateKey.generate())

    @classmethod
    def from_json(cls, text: str, *, source: str) -> Signer:
        try:
            parsed = _KeyFile.model_validate_json(text)
        except ValidationError as err:
            raise SigningError(f"signing key {source}: {validation_problems(err, root='file')}") from err
        seed = _b64(parsed.private_key, what=f"signing key {source}: private_key", size=32)
        return cls(key_id=parsed.key_id, key=Ed25519PrivateKey.from_private_bytes(seed))

    def to_json(self) -> str:
        seed = self.key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return json.dumps({"key_id": self.key_id, "private_key": base64.b64encode(seed).decode()})

    def public_entry(self) -> KeyEntry:
        raw = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return KeyEntry(key_id=self.key_id, public_key=base64.b64encode(raw).decode())

    def sign(self, message: Signed) -> Signed:
        unsigned = message.model_copy(update={"auth": None})
        signature = self.key.sign(canonical_bytes(unsigned))
        return message.model_copy(update={"auth": Signature(key_id=self.key_id,
                                                            signature=base64.b64encode(signature).decode())})


class Keyring:
    """The public keys a device accepts, and those it no longer does (revoked)."""

    def __init__(self, entries: tuple[KeyEntry, ...]) -> None:
        self._keys: dict[str, Ed25519PublicKey] = {}
        self.revoked: frozenset[str] = frozenset(e.key_id for e in entries if e.revoked)
        for e in entries:
            raw = _b64(e.public_key, what=f"keyring key {e.key_id!r}: public_key", size=32)
            self._keys[e.key_id] = Ed25519PublicKey.from_public_bytes(raw)

    @classmethod
    def read(cls, path: Path) -> Keyring:
        try:
            parsed = _KeyringFile.model_validate_json(path.read_text())
        except OSError as err:
            raise SigningError(f"keyring {path}: cannot read it ({err.strerror})") from err
        except ValidationError as err:
            raise SigningError(f"keyring {path}: {validation_problems(err, root='file')}") from err
        return cls(parsed.keys)

    def problem(self, message: DeviceCommand | ControllerHeartbeat, *, raw: bytes | None = None) -> str:
        """Why the message's signature is not good ("" when it is); ``raw``: the payload as received, whose
        canonical form the signature must cover. A mismatch says what differs when a known variant matches."""
        auth = message.auth
        if auth is None:
            return "unsigned, and this device requires a signature"
        if auth.key_id in self.revoked:
            return f"key {auth.key_id!r} is revoked"
        key = self._keys.get(auth.key_id)
        if key is None:
            return f"key {auth.key_id!r} is not in the keyring"
        try:
            signature = base64.b64decode(auth.signature, validate=True)
            canonical = canonical_bytes(message, raw=raw)
        except (binascii.Error, ValueError):
            return f"the signature of key {auth.key_id!r} is not base64"
        except CanonicalError as err:
            return f"the payload has no canonical form: {err}"
        if _verifies(key, signature, canonical):
            return ""
        return (f"the signature does not match the canonical form for key {auth.key_id!r} (RFC 8785 of the payload "
                f"without auth, docs/contract/signing.md): sha256 {hashlib.sha256(canonical).hexdigest()[:16]}, "
                f"{len(canonical)} bytes, {canonical[:240].decode(errors='replace')!r}"
                f"{'…' if len(canonical) > 240 else ''}; {_mismatch(key, signature, message, raw)}")


def _verifies(key: Ed25519PublicKey, signature: bytes, data: bytes) -> bool:
    try:
        key.verify(signature, data)
    except InvalidSignature:
        return False
    return True


def _mismatch(key: Ed25519PublicKey, signature: bytes, message: DeviceCommand | ControllerHeartbeat,
              raw: bytes | None) -> str:
    """What the signer did differently, found by checking the signature against the usual wrong forms."""
    normalized = message.model_dump(mode="json", exclude={"auth"})
    body = signed_body(raw) if raw is not None else normalized
    if raw is not None and _verifies(key, signature, canonical_json(normalized)):
        missing = sorted(set(normalized) - set(body))
        changed = sorted(k for k in set(normalized) & set(body) if canonical_json(normalized[k]) !=
                         canonical_json(body[k]))
        return ("it matches the payload as phasetwin normalises it, not as sent: sign the object you send "
                f"(members only in the normalised form: {missing or 'none'}; written differently: "
                f"{[f'{k}: sent {body[k]!r}, normalised {normalized[k]!r}' for k in changed] or 'none'})")
    variants = (
        ("Python json.dumps(sort_keys=True, separators=(',', ':')): its numbers and escapes are not RFC 8785's "
         "(1.0 must be 1, non-ASCII unescaped)", json.dumps(body, sort_keys=True, separators=(",", ":")).encode()),
        ("sorted keys but with white space", json.dumps(body, sort_keys=True).encode()),
        ("unsorted keys (the order of the payload)", json.dumps(body, separators=(",", ":"),
                                                                ensure_ascii=False).encode()),
        ("the whole payload including auth's key_id", canonical_json(
            {**body, "auth": {"key_id": message.auth.key_id if message.auth else ""}})),
    )
    for what, data in variants:
        if _verifies(key, signature, data):
            return f"it matches {what}"
    return "no usual variant matches: another key, or the content changed after signing"


def signer_from(path: Path | None) -> Signer | None:
    """The signing key of ``path``, else of the environment variable ``PHASETWIN_SIGNING_KEY``, else None."""
    if path is not None:
        try:
            return Signer.from_json(path.read_text(), source=str(path))
        except OSError as err:
            raise SigningError(f"signing key {path}: cannot read it ({err.strerror})") from err
    text = os.environ.get(SIGNING_KEY_ENV)
    return Signer.from_json(text, source=f"${SIGNING_KEY_ENV}") if text else None


def keyring_from(path: Path | None) -> Keyring | None:
    """The keyring of ``path``, else of the file named by ``PHASETWIN_KEYRING``, else None (unsigned mode)."""
    if path is None and os.environ.get(KEYRING_ENV):
        path = Path(os.environ[KEYRING_ENV])
    return Keyring.read(path) if path is not None else None


class SigningBus(BusWrapper):
    """A bus that signs every command and heartbeat its roles publish unsigned (the twin's own controller and
    schedule), bound to the run's nonce; heartbeats get the signer's strictly increasing ``seq``, from
    ``seq_start`` (e.g. wall-clock ms, so that a restarted controller continues above what devices have seen)."""

    def __init__(self, inner: Bus, signer: Signer, *, seq_start: int = 1, run: str = "") -> None:
        """``run``: the run nonce every command and heartbeat signed here is bound to (``DeviceCommand.run``)."""
        super().__init__(inner)
        self.signer = signer
        self._heartbeat_seq = seq_start
        self._run = run

    def publish(self, topic: str, message: Message) -> None:
        if isinstance(message, ControllerHeartbeat) and message.auth is None:
            message = self.signer.sign(message.model_copy(update={"seq": self._heartbeat_seq,
                                                                  "run": message.run or self._run}))
            self._heartbeat_seq += 1
        elif isinstance(message, DeviceCommand) and message.auth is None:
            message = self.signer.sign(message.model_copy(update={"run": message.run or self._run}))
        self.inner.publish(topic, message)

