"""Reports as strict JSON: a number that is not finite (a gap with no bound, a ratio over zero) is written as
``null``, never as the ``Infinity``/``NaN`` tokens Python's ``json`` emits by default and JSON does not have."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["strict_json", "write_json"]


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, np.generic):  # a numpy scalar
        return _finite(value.item())
    return value


def strict_json(data: Any, *, indent: int = 1) -> str:
    """``data`` as JSON text that every parser reads: non-finite numbers become ``null``."""
    return json.dumps(_finite(data), indent=indent, allow_nan=False)


def write_json(path: Path, data: Any, *, indent: int = 1) -> None:
    """Write ``data`` to ``path`` as strict JSON (``strict_json``), ending with a newline."""
    path.write_text(strict_json(data, indent=indent) + "\n", encoding="utf-8")
