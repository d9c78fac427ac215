"""The per-bus and per-line tables of a run folder: one fixed-size-list column instead of thousands of columns.

``voltages_pu.parquet`` and ``line_currents_ka.parquet`` hold one float32 value per tick and bus-phase (line):
2,721 for the IEEE European LV feeder. As one Parquet column per value, a part of 360 ticks cost about 0.15 s CPU
to write (a column chunk, its page and its footer entry per value); as one ``fixed_size_list<float32>[m]``
column, row ``t`` the list of tick ``t``'s values, it costs what the data costs (about 8 ms, uncompressed:
compression costs more than it saves on these floats). Layout of such a table:

- ``time_utc``: timestamp[ns, UTC], one row per tick;
- one list column (``vm_pu``, ``i_max_ka``) of fixed size m;
- the schema metadata key ``phasetwin.columns``: a JSON list of the m names of the list's positions
  (``<bus>_<A|B|C>``, line ids), in order.

``pandas.read_parquet`` reads such a table as a ``time_utc`` column and a column of numpy arrays;
``read_matrix`` gives the [tick, m] array and the names, ``read_frame`` the wide DataFrame (one column per name)
that the earlier layout stored. Both read either layout: run folders written before this one (one float32
column per name) still read.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from streams.errors import StreamError
from streams.runfolder.parts import PART_GLOB

NAMES_KEY = b"phasetwin.columns"
TIME_COLUMN = "time_utc"
TIME_TYPE = pa.timestamp("ns", tz="UTC")


def list_schema(column: str, names: Sequence[str]) -> pa.Schema:
    """The schema of a list table: ``time_utc`` and ``column`` as fixed-size lists of float32, names in metadata."""
    return pa.schema([(TIME_COLUMN, TIME_TYPE), (column, pa.list_(pa.float32(), len(names)))],
                     metadata={NAMES_KEY: json.dumps(list(names)).encode()})


def list_table(time_utc: pa.Array, values: np.ndarray, schema: pa.Schema) -> pa.Table:
    """Rows of ``values`` [n, m] (cast to float32) as a table of ``schema`` (``list_schema``)."""
    flat = pa.array(np.ascontiguousarray(values, dtype=np.float32).reshape(-1))
    column = pa.FixedSizeListArray.from_arrays(flat, values.shape[1])
    return pa.Table.from_arrays([time_utc, column], schema=schema)


@dataclass(frozen=True)
class Matrix:
    """A per-bus or per-line table read back: ``values[t, j]`` is name ``names[j]`` at ``time_utc[t]``."""

    time_utc: pd.DatetimeIndex
    names: tuple[str, ...]
    values: np.ndarray

    def columns(self, names: Sequence[str]) -> np.ndarray:
        """[tick, len(names)] of the named columns; StreamError naming the first missing one."""
        return self.values[:, self.index_of(names)]

    def index_of(self, names: Sequence[str]) -> list[int]:
        """Positions of ``names``; StreamError naming the first missing one."""
        index = {n: j for j, n in enumerate(self.names)}
        missing = [n for n in names if n not in index]
        if missing:
            raise StreamError(f"{len(missing)} column(s) not in the table (first {missing[0]!r}); it has "
                              f"{len(self.names)} named {', '.join(self.names[:3])}…")
        return [index[n] for n in names]


def is_list_table(schema: pa.Schema) -> bool:
    return schema.metadata is not None and NAMES_KEY in schema.metadata


def read_matrix(path: Path, names: Sequence[str] | None = None) -> Matrix:
    """A per-bus or per-line table (a file or a directory of parts) in either layout: every column, or only
    ``names`` (then a list table is read part by part, holding one part's lists at a time: 28 days of IEEE
    voltages are 439 MB, one part 4 MB). Raises StreamError when it cannot be read or lacks a name."""
    try:
        schema = pq.read_schema(_first_part(path))
        if is_list_table(schema):
            return _read_list(path, schema, names)
        columns = None if names is None else [TIME_COLUMN, *names]
        missing = [] if names is None else [n for n in names if n not in schema.names]
        if missing:
            raise StreamError(f"{path}: {len(missing)} column(s) not in the table (first {missing[0]!r})")
        table = pq.read_table(path, columns=columns)
    except (OSError, ValueError, pa.ArrowException) as err:
        raise StreamError(f"cannot read {path}: {err}") from err
    times = pd.DatetimeIndex(table.column(TIME_COLUMN).to_pandas())
    found = tuple(n for n in table.column_names if n != TIME_COLUMN)
    values = np.column_stack([table.column(n).to_numpy(zero_copy_only=False) for n in found]) if found else \
        np.empty((table.num_rows, 0), dtype=np.float32)
    return Matrix(time_utc=times, names=found, values=values)


def _first_part(path: Path) -> Path:
    if not path.is_dir():
        return path
    parts = sorted(path.glob(PART_GLOB))
    if not parts:
        raise StreamError(f"{path}: a table directory without parts")
    return parts[0]


def _read_list(path: Path, schema: pa.Schema, names: Sequence[str] | None) -> Matrix:
    every = tuple(json.loads(schema.metadata[NAMES_KEY]))
    if names is None:
        table = pq.read_table(path)
        chunks = [c.flatten().to_numpy() for c in table.column(1).chunks]
        flat = np.concatenate(chunks) if chunks else np.empty(0, dtype=np.float32)
        return Matrix(time_utc=pd.DatetimeIndex(table.column(TIME_COLUMN).to_pandas()), names=every,
                      values=flat.reshape(table.num_rows, len(every)))
    keep = Matrix(time_utc=pd.DatetimeIndex([]), names=every, values=np.empty((0, len(every)))).index_of(names)
    parts = sorted(path.glob(PART_GLOB)) if path.is_dir() else [path]
    times, rows = [], []
    for part in parts:
        file = pq.ParquetFile(part)
        for batch in file.iter_batches():
            times.append(batch.column(0).to_pandas())
            rows.append(batch.column(1).flatten().to_numpy().reshape(batch.num_rows, len(every))[:, keep])
    values = np.concatenate(rows) if rows else np.empty((0, len(keep)), dtype=np.float32)
    time_utc = pd.DatetimeIndex(pd.concat(times, ignore_index=True)) if times else pd.DatetimeIndex([], tz="UTC")
    return Matrix(time_utc=time_utc, names=tuple(names), values=values)


def read_frame(path: Path) -> pd.DataFrame:
    """A per-bus or per-line table as a wide DataFrame: ``time_utc``, then one column per name (either layout)."""
    m = read_matrix(path)
    frame = pd.DataFrame(m.values, columns=list(m.names))
    frame.insert(0, TIME_COLUMN, m.time_utc)
    return frame
