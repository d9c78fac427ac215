"""A bounded on-disk queue of line-protocol batches that the server did not take, replayed oldest first.

One file per batch in the spool folder, named ``<sequence>-<points>.lp`` (12-digit sequence, so names sort in
write order; the point count makes every count exact without reading files). A batch is written to a
temporary file, flushed to disk and renamed, so a crash leaves whole batches only. The folder is locked
(``flock`` on ``spool.lock``) by the one spool object that uses it: two recorders cannot share a spool.

Bound: the files' total size stays within ``max_bytes``. When a new batch does not fit, the OLDEST batches are
deleted until it does (the newest data are the most useful to an operator after an outage); a batch larger than
the whole bound is dropped itself. Every dropped batch is counted in points and logged.

``Spool(None, ...)`` is the absent spool: it keeps nothing and drops every batch it is given (counted).
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from streams.influx.settings import InfluxError

log = logging.getLogger(__name__)
_NAME = re.compile(r"^(\d{12})-(\d+)\.lp$")


@dataclass(frozen=True)
class SpooledBatch:
    path: Path
    points: int


class Spool:
    """Batches in ``folder`` (created if missing), oldest first. Not thread-safe: one writer thread uses it."""

    def __init__(self, folder: Path | None, *, max_bytes: int) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self.points = 0
        self.bytes = 0
        self.dropped_points = 0
        self._batches: deque[SpooledBatch] = deque()
        self._sizes: dict[Path, int] = {}
        self._next = 0
        self._lock: IO[bytes] | None = None
        if folder is None:
            return
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self._lock = (folder / "spool.lock").open("ab")
        except OSError as err:
            raise InfluxError(f"cannot use spool folder {folder}: {err}") from err
        try:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock.close()
            self._lock = None
            raise InfluxError(f"spool folder {folder} is in use by another recorder or flush; give each its "
                              "own spool_dir") from None
        for path in sorted(folder.iterdir()):
            match = _NAME.match(path.name)
            if match is None:
                if path.suffix == ".tmp":  # a batch whose write a crash interrupted: never complete, never counted
                    path.unlink(missing_ok=True)
                continue
            self._add(SpooledBatch(path, int(match.group(2))), path.stat().st_size)
            self._next = max(self._next, int(match.group(1)) + 1)
        if self._batches:
            log.info("spool %s holds %d point(s) in %d batch(es) from before", folder, self.points,
                     len(self._batches))

    def __len__(self) -> int:
        return len(self._batches)

    def append(self, body: bytes, points: int) -> int:
        """Keep a batch; returns the points dropped to make room (oldest batches, or this one if it cannot fit)."""
        if self.folder is None or len(body) > self.max_bytes:
            self._drop_new(points, len(body))
            return points
        dropped = 0
        while self.bytes + len(body) > self.max_bytes and self._batches:
            oldest = self._batches[0]
            self.remove(oldest)
            dropped += oldest.points
        if dropped:
            self.dropped_points += dropped
            log.error("influx spool %s is full (%d bytes max): dropped the oldest %d point(s)", self.folder,
                      self.max_bytes, dropped)
        path = self.folder / f"{self._next:012d}-{points}.lp"
        self._next += 1
        tmp = path.with_suffix(".tmp")
        try:
            with tmp.open("wb") as f:
                f.write(body)
                f.flush()
                os.fsync(f.fileno())
            tmp.replace(path)
        except OSError as err:
            tmp.unlink(missing_ok=True)
            log.error("influx spool %s: cannot write a batch (%s)", self.folder, err)
            self._drop_new(points, len(body))
            return dropped + points
        self._add(SpooledBatch(path, points), len(body))
        return dropped

    def oldest(self) -> tuple[SpooledBatch, bytes] | None:
        """The oldest batch and its body, or None when empty. A file that cannot be read is dropped (logged)."""
        while self._batches:
            batch = self._batches[0]
            try:
                return batch, batch.path.read_bytes()
            except OSError as err:
                log.error("influx spool: cannot read %s (%s); its %d point(s) are dropped", batch.path, err,
                          batch.points)
                self.remove(batch)
                self.dropped_points += batch.points
        return None

    def remove(self, batch: SpooledBatch) -> None:
        if self._batches and self._batches[0] is batch:
            self._batches.popleft()
        else:
            self._batches.remove(batch)
        self.points -= batch.points
        self.bytes -= self._sizes.pop(batch.path)
        batch.path.unlink(missing_ok=True)

    def close(self) -> None:
        if self._lock is not None:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def _add(self, batch: SpooledBatch, size: int) -> None:
        self._batches.append(batch)
        self._sizes[batch.path] = size
        self.points += batch.points
        self.bytes += size

    def _drop_new(self, points: int, size: int) -> None:
        self.dropped_points += points
        why = "there is no spool" if self.folder is None else f"it is larger than the spool ({self.max_bytes} bytes)"
        log.error("influx: dropped a batch of %d point(s) (%d bytes) the server did not take: %s", points, size, why)
