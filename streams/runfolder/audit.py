"""The command audit log of a run: ``audit.jsonl`` in the run folder, one JSON line per command a device
decided on (``AuditRecord``), appended and flushed as it happens (created at the first one); a file that exists
is appended to, never truncated (each line names its run)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from streams.messages import AuditRecord

log = logging.getLogger(__name__)


class AuditLog:
    """Append-only writer; ``also`` gets every record too (the InfluxDB recorder)."""

    def __init__(self, path: Path, *, also: Callable[[AuditRecord], None] | None = None) -> None:
        self.path = path
        self._file: TextIO | None = None  # opened at the first record: a run without commands has no audit file
        self._also = also
        self.records = 0

    def write(self, record: AuditRecord) -> None:
        record = record.model_copy(update={"entry": self.records})
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")
        self._file.write(record.model_dump_json() + "\n")
        self._file.flush()
        self.records += 1
        if self._also is not None:
            self._also(record)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
