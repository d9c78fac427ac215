"""Element names from other tools turned into the twin's ids, which are also MQTT topic segments.

A topic segment holds letters, digits, ``.``, ``_`` and ``-`` only (``streams.topics``). Names from pandapower or
OpenDSS often carry spaces or other characters ("Summary Grid", "Load R1"): every run of other characters becomes
one ``-``. When two names map to the same segment, the later ones get ``-2``, ``-3`` … appended.
"""

from __future__ import annotations

import re

__all__ = ["topic_segment", "unique_segments"]

_OTHER = re.compile(r"[^A-Za-z0-9._-]+")


def topic_segment(name: str, *, fallback: str = "unnamed") -> str:
    """``name`` with every run of characters not allowed in a topic segment replaced by ``-``."""
    segment = _OTHER.sub("-", name.strip()).strip("-")
    return segment or fallback


def unique_segments(names: list[str]) -> list[str]:
    """``topic_segment`` of every name, made unique in order of appearance."""
    out: list[str] = []
    seen: set[str] = set()
    for name in names:
        base = topic_segment(name)
        segment, n = base, 1
        while segment in seen:
            n += 1
            segment = f"{base}-{n}"
        seen.add(segment)
        out.append(segment)
    return out
