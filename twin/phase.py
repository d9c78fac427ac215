"""Network phases and ordered phase connections: the bottom of the core, importable by every layer above it.

A connection such as ``"CAB"`` wires terminal j of a customer (the j-th column of its meter data) to network phase
``connection[j]``.
"""

from __future__ import annotations

from enum import IntEnum


class Phase(IntEnum):
    """Network phase; the integer value is the column index in every per-phase array."""

    A = 0
    B = 1
    C = 2


def parse_connection(text: str) -> tuple[Phase, ...]:
    """Parse an ordered phase connection such as ``"CAB"``.

    Raises ValueError naming the bad letters when the text is not 1-3 distinct letters out of A, B, C.
    """
    letters = text.strip().upper()
    bad = sorted({ch for ch in letters if ch not in "ABC"})
    if bad:
        raise ValueError(f"phase connection {text!r} has unknown phase letter(s) {', '.join(bad)}; expected A, B, C")
    if not 1 <= len(letters) <= 3 or len(set(letters)) != len(letters):
        raise ValueError(f"phase connection {text!r} must be 1 to 3 distinct letters out of A, B, C")
    return tuple(Phase[ch] for ch in letters)


def connection_text(phases: tuple[Phase, ...]) -> str:
    return "".join(p.name for p in phases)
