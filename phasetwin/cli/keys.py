"""``phasetwin keys``: make an Ed25519 signing key for a controller and keep the devices' keyring."""

from __future__ import annotations

import json
import os
from pathlib import Path

from streams.signing import KeyEntry, Signer

KEYRING = "keyring.json"


def new_key(*, key_id: str, folder: Path) -> tuple[Path, Path]:
    """Write ``<key_id>.key.json`` (the private key, mode 0600) and add its public key to ``keyring.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    key_path = folder / f"{key_id}.key.json"
    if key_path.exists():
        raise FileExistsError(f"{key_path} exists; a key is never overwritten (revoke it and pick a new id)")
    signer = Signer.generate(key_id)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(signer.to_json() + "\n")
    ring = _entries(folder / KEYRING)
    ring = [e for e in ring if e.key_id != key_id] + [signer.public_entry()]
    _write(folder / KEYRING, ring)
    return key_path, folder / KEYRING


def revoke(*, keyring: Path, key_id: str) -> None:
    """Mark ``key_id`` revoked in ``keyring``; KeyError when it is not there."""
    ring = _entries(keyring)
    if key_id not in {e.key_id for e in ring}:
        raise KeyError(f"key {key_id!r} is not in {keyring}; it has {', '.join(e.key_id for e in ring) or 'none'}")
    _write(keyring, [e.model_copy(update={"revoked": True}) if e.key_id == key_id else e for e in ring])


def _entries(path: Path) -> list[KeyEntry]:
    if not path.exists():
        return []
    return [KeyEntry.model_validate(e) for e in json.loads(path.read_text())["keys"]]


def _write(path: Path, ring: list[KeyEntry]) -> None:
    path.write_text(json.dumps({"keys": [e.model_dump() for e in ring]}, indent=2) + "\n")
