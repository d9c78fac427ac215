"""A run's meter rows held at a cost that does not grow with the run: in memory while small, else in an unnamed
temporary file that is read a window of rows at a time (issue 31: a network-only run's peak memory must not grow
with its length; 28 days of the IEEE feeder's 55 terminals, p and q, are 36 MB, a 1-minute year 460 MB).

The values read back are the bytes written: the same float64 numbers either way.
"""

from __future__ import annotations

import os
import tempfile
import weakref
from collections.abc import Callable

import numpy as np

SPILL_BYTES = 8 * 2**20
"""Rows of more than this many bytes go to the file (a day of the IEEE feeder's p and q: 1.3 MB)."""


class HeldRows:
    """[n_rows, n_columns] float64, written once by windows of rows (``window``) and read by row ranges."""

    def __init__(self, n_rows: int, n_columns: int, window: Callable[[int, int], np.ndarray], *,
                 window_rows: int = 1440, spill_bytes: int = SPILL_BYTES) -> None:
        self.n_rows, self.n_columns = n_rows, n_columns
        self._window_rows = max(1, window_rows)
        self._row_bytes = n_columns * 8
        self._memory: np.ndarray | None = None
        self._fd = -1
        self._cached = (0, np.zeros((0, n_columns)))
        if n_rows * self._row_bytes <= spill_bytes:
            self._memory = np.ascontiguousarray(window(0, n_rows), dtype=np.float64)
            return
        spill = tempfile.TemporaryFile(prefix="phasetwin-meters-")  # noqa: SIM115 - open as long as the rows are
        weakref.finalize(self, spill.close)
        for first in range(0, n_rows, self._window_rows):
            np.ascontiguousarray(window(first, min(n_rows, first + self._window_rows)), dtype=np.float64).tofile(spill)
        spill.flush()
        self._fd = spill.fileno()

    @property
    def window_rows(self) -> int:
        return self._window_rows

    @property
    def spilled(self) -> bool:
        return self._memory is None

    def rows(self, first: int, stop: int) -> np.ndarray:
        """Rows [first, stop) (clipped to the rows held); a view, not to be written."""
        first, stop = max(0, first), min(self.n_rows, stop)
        stop = max(first, stop)
        if self._memory is not None:
            return self._memory[first:stop]
        at, cached = self._cached
        if at <= first and stop <= at + len(cached):
            return cached[first - at:stop - at]
        if stop - first > self._window_rows:
            return self._read(first, stop)
        self._cached = (first, self._read(first, min(self.n_rows, first + self._window_rows)))
        return self._cached[1][:stop - first]

    def _read(self, first: int, stop: int) -> np.ndarray:
        size = (stop - first) * self._row_bytes
        data = os.pread(self._fd, size, first * self._row_bytes)
        if len(data) != size:
            raise OSError(f"meter rows {first}..{stop}: read {len(data)} of {size} bytes from the spill file")
        return np.frombuffer(data, dtype=np.float64).reshape(stop - first, self.n_columns)
