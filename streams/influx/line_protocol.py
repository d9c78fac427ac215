"""InfluxDB line protocol, written fast: escaping, field values by schema type, and templates for many rows.

A line is ``measurement,tag=value,... field=value,... timestamp``. The recorder never builds point objects: a
series' prefix (measurement and tags, escaped, tags sorted by key as InfluxDB advises) is built once, and a
``LineTemplate`` renders the lines of many ticks from a 2-D float array in a few pyarrow compute calls, which
format the numbers in C++ without holding the GIL (a Python writer thread formatting numbers would slow the
twin's own thread by the same amount on a busy machine).

Escaping (line protocol reference): in measurements ``,`` and space; in tag keys, tag values and field keys
``,``, ``=`` and space; in string field values ``"`` and ``\\``. Tag values must be non-empty and may not contain
a backslash or a control character: servers disagree on how a backslash in a tag is read (InfluxDB 1.x keeps
``\\\\``, VictoriaMetrics unescapes it and drops a line whose tag ends in one), so such a value is refused
instead of being stored differently by different servers.

Field values follow ``streams.influx.schema``: ``float`` in the shortest form that reads back as the same
double (lossless; a NaN or infinite value is left out of its line, and a line left with no field is not
written), ``int`` as ``<n>i``, ``bool`` as ``true``/``false``, ``string`` quoted. Timestamps are integer
seconds (``precision=s``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from streams.influx.schema import BY_NAME, COMMON_TAGS, FieldType

_MEASUREMENT = str.maketrans({",": "\\,", " ": "\\ "})
_KEY = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ "})
_STRING = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n"})
_BAD_TAG = re.compile(r"[\\\x00-\x1f\x7f]")


def escape_measurement(name: str) -> str:
    return name.translate(_MEASUREMENT)


def escape_key(key: str) -> str:
    """Escape a tag key or field key."""
    return key.translate(_KEY)


def escape_tag_value(name: str, value: str) -> str:
    """Escape the value of tag ``name``.

    Raises:
        ValueError: the value is empty, or holds a backslash or a control character (see the module docstring).
    """
    if not value:
        raise ValueError(f"tag {name!r} has an empty value; InfluxDB refuses empty tag values")
    bad = _BAD_TAG.search(value)
    if bad is not None:
        raise ValueError(
            f"tag {name}={value!r} holds {bad.group()!r} at {bad.start()}; tag values may not contain a "
            "backslash or control characters (servers read them differently)"
        )
    return value.translate(_KEY)


def string_field(value: str) -> str:
    return '"' + value.translate(_STRING) + '"'


def epoch_s(time_utc: datetime) -> int:
    """Seconds since the Unix epoch of an aware datetime (floor: line timestamps are at second precision)."""
    return math.floor(time_utc.timestamp())


def series(measurement: str, tags: Mapping[str, str]) -> str:
    """The escaped prefix ``measurement,k=v,... `` (trailing space) of one series of the schema.

    Raises:
        ValueError: the measurement is not in ``streams.influx.schema``, the tags are not exactly its tags, or a
            tag value is invalid.
    """
    spec = BY_NAME.get(measurement)
    if spec is None:
        raise ValueError(f"measurement {measurement!r} is not in streams.influx.schema; expected one of "
                         f"{', '.join(BY_NAME)}")
    expected = set(COMMON_TAGS) | set(spec.tags)
    if set(tags) != expected:
        raise ValueError(f"measurement {measurement!r} takes the tags {sorted(expected)}; got {sorted(tags)}")
    parts = [escape_measurement(measurement)]
    parts += [f"{escape_key(k)}={escape_tag_value(k, tags[k])}" for k in sorted(tags)]
    return ",".join(parts) + " "


def field_value(kind: FieldType, value: Any) -> str | None:
    """The line-protocol text of one field value; None when it is None or a non-finite float."""
    if value is None:
        return None
    if kind == "float":
        number = float(value)
        return repr(number) if math.isfinite(number) else None
    if kind == "int":
        return f"{int(value)}i"
    if kind == "bool":
        return "true" if value else "false"
    return string_field(str(value))


def fields_text(measurement: str, values: Mapping[str, Any]) -> str:
    """``k=v,...`` of the fields of ``values`` that have a value, typed by the schema ('' when none has).

    Raises:
        KeyError: a field is not in the schema of ``measurement``.
    """
    types = BY_NAME[measurement].fields
    out = []
    for key, value in values.items():
        kind = types.get(key)
        if kind is None:
            raise KeyError(f"field {key!r} is not in measurement {measurement!r}; expected one of {', '.join(types)}")
        text = field_value(kind, value)
        if text is not None:
            out.append(f"{escape_key(key)}={text}")
    return ",".join(out)


def line(prefix: str, measurement: str, values: Mapping[str, Any], ts: int) -> str:
    """One line with its newline, or '' when no field has a value."""
    fields = fields_text(measurement, values)
    return f"{prefix}{fields} {ts}\n" if fields else ""


@dataclass(frozen=True)
class LineSpec:
    """One line of a template: a series prefix and its float fields, in the order their values come."""

    prefix: str
    measurement: str
    fields: tuple[str, ...]


class LineTemplate:
    """Renders rows of a 2-D float array, one row per timestamp, ``sum(len(l.fields))`` values per row, as lines.

    Every field must be a ``float`` field of its measurement's schema (numbers from the power flow). Rows with a
    non-finite value go through ``line()`` one by one, leaving those values out (rare: a failed power flow).
    """

    def __init__(self, lines: Sequence[LineSpec]) -> None:
        leads: list[str] = []
        last: list[bool] = []
        for spec in lines:
            types = BY_NAME[spec.measurement].fields
            for j, name in enumerate(spec.fields):
                if types.get(name) != "float":
                    raise ValueError(f"template field {spec.measurement}.{name} is not a float field of the schema")
                leads.append((spec.prefix if j == 0 else ",") + f"{escape_key(name)}=")
                last.append(j == len(spec.fields) - 1)
        self._lines = tuple(lines)
        self._leads = pa.array(leads, type=pa.string())
        self._last = np.asarray(last, dtype=bool)
        self.n_lines = len(lines)
        self.n_values = len(leads)
        self._cached: tuple[int, pa.Array, pa.Array] | None = None

    def render(self, values: np.ndarray, ts: Sequence[int]) -> tuple[bytes, int]:
        """The lines of every row (row i at timestamp ``ts[i]``), UTF-8, and how many."""
        if values.ndim != 2 or values.shape[1] != self.n_values or values.shape[0] != len(ts):
            raise ValueError(f"template takes {len(ts)} rows of {self.n_values} values; got an array of shape "
                             f"{values.shape}")
        if not len(ts) or not self.n_values:
            return b"", 0
        finite = np.isfinite(values).all(axis=1)
        if finite.all():
            return self._render(values, ts), self.n_lines * len(ts)
        good = np.flatnonzero(finite)
        body = self._render(values[good], [ts[i] for i in good.tolist()]) if len(good) else b""
        slow = [self._render_checked(values[i].tolist(), ts[i]) for i in np.flatnonzero(~finite).tolist()]
        return body + "".join(text for text, _ in slow).encode(), self.n_lines * len(good) + sum(n for _, n in slow)

    def _render(self, values: np.ndarray, ts: Sequence[int]) -> bytes:
        n = len(ts)
        numbers = pc.cast(pa.array(np.ascontiguousarray(values, dtype=np.float64).reshape(-1)), pa.string())
        leads, end_index = self._layout(n)
        ends = pa.array(["", *(f" {t}\n" for t in ts)], type=pa.string())
        joined = pc.binary_join_element_wise(leads, numbers, ends.take(end_index), "")
        offsets = np.frombuffer(joined.buffers()[1], dtype=np.int32, count=len(joined) + 1, offset=4 * joined.offset)
        return joined.buffers()[2][int(offsets[0]):int(offsets[-1])].to_pybytes()

    def _layout(self, n: int) -> tuple[pa.Array, pa.Array]:
        """For ``n`` rows: the text before each value, and which row's timestamp ends it (0 = none); the last
        size is kept, since a writer renders batches of the same size over and over."""
        if self._cached is None or self._cached[0] != n:
            leads = self._leads.take(pa.array(np.tile(np.arange(self.n_values, dtype=np.int32), n)))
            end_index = np.where(self._last[None, :], np.arange(1, n + 1, dtype=np.int32)[:, None], 0).reshape(-1)
            self._cached = (n, leads, pa.array(end_index))
        return self._cached[1], self._cached[2]

    def _render_checked(self, values: list[float], ts: int) -> tuple[str, int]:
        out, i = [], 0
        for spec in self._lines:
            n = len(spec.fields)
            text = line(spec.prefix, spec.measurement, dict(zip(spec.fields, values[i:i + n], strict=True)), ts)
            i += n
            if text:
                out.append(text)
        return "".join(out), len(out)
