"""Errors raised by the streams package (message contract, transports, data readers and recorders)."""

from __future__ import annotations

from pydantic import ValidationError


class StreamError(Exception):
    """Base class of every error the streams package raises on purpose."""


def validation_problems(err: ValidationError, *, root: str) -> str:
    """Every problem of a pydantic error on one line: ``field.path: message; ...`` (``root`` for the whole)."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or root}: {e['msg']}" for e in err.errors(include_url=False))


class DataError(StreamError):
    """Meter data cannot be used as asked (unreadable, wrong unit, customers or period do not match)."""


def raise_data_problems(head: str, problems: list[str]) -> None:
    """Raise one DataError, ``head`` then every problem numbered; nothing when there are none."""
    if problems:
        numbered = "\n".join(f"  {i}. {p}" for i, p in enumerate(problems, start=1))
        raise DataError(f"{head}: {len(problems)} problem(s):\n{numbered}")
