"""Signed commands and heartbeats: Ed25519 (``cryptography``), one key pair per controller, a keyring on devices.

Why Ed25519 and not HMAC-SHA256: a device holds only public keys, so a device (or its keyring file) that falls
into the wrong hands cannot forge commands for the other devices; with HMAC every device would hold every
controller's secret. Revoking a controller is one line in the devices' keyring. Verification costs about
0.1 ms per message with ``cryptography``, nothing at a command's rate.

What is signed: the message's canonical JSON without ``auth`` — ``model_dump(mode="json")``, keys sorted, no
spaces (``canonical_bytes``), reproducible in any language. ``Signature.key_id`` names the key.

Key files (never on the command line, never in the repository):
- a signing key: JSON ``{"key_id": "ctl-1", "private_key": "<base64 of the 32-byte Ed25519 seed>"}``, from a file
  (``--signing-key PATH``) or the environment variable ``PHASETWIN_SIGNING_KEY`` holding that JSON;
- a keyring: JSON ``{"keys": [{"key_id": "ctl-1", "public_key": "<base64 32 bytes>", "revoked": false}]}``
  (``--keyring PATH`` or ``PHASETWIN_KEYRING`` holding the path).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from streams.bus import Bus, Handler
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


def canonical_bytes(message: DeviceCommand | ControllerHeartbeat) -> bytes:
    """What a signature covers: the message without ``auth`` as sorted, compact JSON."""
    body = message.model_dump(mode="json", exclude={"auth"})
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


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

    def problem(self, message: DeviceCommand | ControllerHeartbeat) -> str:
        """Why the message's signature is not good ("" when it is)."""
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
            key.verify(signature, canonical_bytes(message))
        except (binascii.Error, ValueError, InvalidSignature):
            return f"the signature does not match the message for key {auth.key_id!r}"
        return ""


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


class SigningBus:
    """A bus that signs every command and heartbeat its roles publish unsigned (the twin's own controller and
    schedule); heartbeats get the signer's strictly increasing ``seq``, from ``seq_start`` (e.g. wall-clock ms,
    so that a restarted controller continues above what devices have seen)."""

    def __init__(self, inner: Bus, signer: Signer, *, seq_start: int = 1) -> None:
        self.inner = inner
        self.signer = signer
        self._heartbeat_seq = seq_start

    def publish(self, topic: str, message: Message) -> None:
        if isinstance(message, ControllerHeartbeat) and message.auth is None:
            message = self.signer.sign(message.model_copy(update={"seq": self._heartbeat_seq}))
            self._heartbeat_seq += 1
        elif isinstance(message, DeviceCommand) and message.auth is None:
            message = self.signer.sign(message)
        self.inner.publish(topic, message)

    def subscribe(self, pattern: str, handler: Handler) -> None:
        self.inner.subscribe(pattern, handler)

    def settle(self) -> None:
        self.inner.settle()

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
