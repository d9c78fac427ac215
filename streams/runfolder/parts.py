"""One table of a run folder, written as the run goes.

While the run lasts, ``<name>.parquet`` is a directory of complete Parquet files (``part-000000.parquet``, …), one
per flush: a run killed at any moment leaves every flushed part readable (``pandas.read_parquet`` reads the
directory as one table, parts in name order). ``finish()`` turns the parts into the single file
``<name>.parquet`` (one row group per part, read and written one part at a time), so a finished run folder
has the same layout as before streaming.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from streams.errors import StreamError

log = logging.getLogger(__name__)
PART_GLOB = "part-*.parquet"
ROW_GROUP_ROWS = 1440
"""Rows per row group of a finished table: a day of one-minute ticks."""


class PartWriter:
    """Appends tables of one schema as part files under ``path`` (a directory until ``finish``)."""

    def __init__(self, path: Path, *, schema: pa.Schema) -> None:
        self.path = path
        self.schema = schema
        self.rows = 0
        self.parts = 0
        self._finished = False

    def append(self, table: pa.Table) -> None:
        """Write ``table`` as the next part, complete and renamed into place (a reader never sees half a part)."""
        if self._finished:
            raise StreamError(f"{self.path}: table already finished; no more rows can be appended")
        if table.num_rows == 0:
            return
        if not table.schema.equals(self.schema):
            table = table.cast(self.schema)
        self.path.mkdir(parents=True, exist_ok=True)
        final = self.path / f"part-{self.parts:06d}.parquet"
        staging = self.path / f".part-{self.parts:06d}.parquet.tmp"
        # Statistics and dictionaries cost more than they give on float series read whole.
        pq.write_table(table, staging, use_dictionary=False, write_statistics=False)
        staging.replace(final)
        self.parts += 1
        self.rows += table.num_rows

    def finish(self) -> Path | None:
        """Compact the parts into the single file ``path``; None when nothing was ever appended."""
        self._finished = True
        if not self.parts:
            return None
        return compact(self.path)


def compact(path: Path, *, row_group_rows: int = ROW_GROUP_ROWS) -> Path:
    """Turn the part directory ``path`` into one Parquet file of the same name.

    Consecutive parts are merged into row groups of at least ``row_group_rows`` rows (fewer row groups keep
    the footer, and the writer's memory at the end, small on wide tables); memory: one row group. The file is
    written beside the directory and renamed over it, so a crash leaves either the parts or the whole file (and
    at worst both, the file under ``<name>.parquet.tmp``).
    """
    parts = sorted(path.glob(PART_GLOB))
    if not parts:
        raise StreamError(f"{path}: no {PART_GLOB} to compact")
    staging = path.with_name(path.name + ".tmp")
    writer: pq.ParquetWriter | None = None
    held: list[pa.Table] = []

    def write_held() -> None:
        group = pa.concat_tables(held)
        held.clear()
        writer.write_table(group, row_group_size=max(group.num_rows, 1))  # type: ignore[union-attr]

    try:
        for part in parts:
            table = pq.ParquetFile(part).read()
            if writer is None:
                writer = pq.ParquetWriter(staging, table.schema, use_dictionary=False, write_statistics=False)
            held.append(table)
            if sum(t.num_rows for t in held) >= row_group_rows:
                write_held()
        if held:
            write_held()
    finally:
        if writer is not None:
            writer.close()
    shutil.rmtree(path)
    staging.replace(path)
    return path


def remove_table(path: Path) -> None:
    """Remove a table of an earlier run at ``path``: a finished file, a part directory, or a staging file."""
    for p in (path, path.with_name(path.name + ".tmp")):
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
