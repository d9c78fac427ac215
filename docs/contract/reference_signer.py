"""Reference signer for phasetwin commands and heartbeats (``docs/contract/signing.md``): Python's standard
library and ``cryptography``, nothing of phasetwin. Copy it, or port its 60 lines.

    python docs/contract/reference_signer.py --key ctl.json < command.json > signed.json

``ctl.json`` is a signing key file: ``{"key_id": "ctl-1", "private_key": "<base64 of the 32-byte Ed25519 seed>"}``.
The input is one JSON object (a command or heartbeat, without ``auth``); the output is the same object with
``auth`` added. Send the output as it is: the device verifies the canonical form of what it receives.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def number(value: float | int) -> str:
    """ECMAScript Number::toString (RFC 8785 section 3.2.2.3)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if abs(value) > 2**53:
            raise ValueError(f"integer {value} is beyond 2**53")
        return str(value)
    if not math.isfinite(value):
        raise ValueError(f"{value} has no JSON form")
    if value == 0:
        return "0"
    mantissa, _, exp = repr(abs(value)).partition("e")  # shortest digits that read back as the same double
    whole, _, frac = mantissa.partition(".")
    digits = (whole + frac).lstrip("0")
    n = len(whole) - (len(whole + frac) - len(digits)) + int(exp or 0)  # value = 0.DIGITS × 10**n
    digits = digits.rstrip("0")
    k = len(digits)
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * -n + digits
    else:
        text = (digits if k == 1 else digits[0] + "." + digits[1:]) + ("e+" if n - 1 >= 0 else "e-") + str(abs(n - 1))
    return ("-" if value < 0 else "") + text


def canonical(value: Any) -> str:
    """RFC 8785 (JCS): sorted members, no white space, minimal string escapes, ECMAScript numbers."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, int | float):
        return number(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ",".join(canonical(v) for v in value) + "]"
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: k.encode("utf-16-be"))
        return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + canonical(value[k]) for k in keys) + "}"
    raise TypeError(f"{type(value).__name__} is not a JSON value")


def signed_bytes(message: dict[str, Any]) -> bytes:
    """What the signature covers: the canonical form of the message without its ``auth`` member, UTF-8."""
    return canonical({k: v for k, v in message.items() if k != "auth"}).encode("utf-8")


def sign(message: dict[str, Any], *, key_id: str, seed: bytes) -> dict[str, Any]:
    """``message`` with ``auth`` = {key_id, base64 Ed25519 signature of ``signed_bytes(message)``}."""
    signature = Ed25519PrivateKey.from_private_bytes(seed).sign(signed_bytes(message))
    return {**message, "auth": {"key_id": key_id, "signature": base64.b64encode(signature).decode()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--key", required=True, help="signing key file (JSON with key_id and private_key)")
    args = parser.parse_args()
    key = json.loads(Path(args.key).read_text())
    message = json.load(sys.stdin)
    print(json.dumps(sign(message, key_id=key["key_id"], seed=base64.b64decode(key["private_key"]))))


if __name__ == "__main__":
    main()
