"""The run journal: ``journal.jsonl`` in a run folder says how far its run got, so a crash is never silent.

One JSON object per line, appended and flushed as the run goes:
``started`` (run id, pid, host, period, tick, planned ticks), ``flushed`` after every part written (ticks kept
so far), and one closing event, ``finished``, ``stopped`` (SIGTERM) or ``failed`` (an error, with its text).
A journal without a closing event belongs to a run that was killed (SIGKILL, power loss, out of memory).

While a run lasts it holds an exclusive lock on ``.run.lock`` in its folder: a second run into the same folder
is refused, and a lock that is free with an open journal proves the earlier run is gone. The next run into the
folder reports that crash (``PreviousRun``: what was kept, what was lost), moves the crashed run's tables
into ``crashed-<when it started>/`` (readable as a finished folder, but without a ``summary.json``) and starts its
own journal.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel, ConfigDict, Field

from streams.errors import StreamError
from streams.ticks import TickAxis

log = logging.getLogger(__name__)
JOURNAL = "journal.jsonl"
LOCK = ".run.lock"


class JournalEvent(StrEnum):
    STARTED = "started"
    FLUSHED = "flushed"
    FINISHED = "finished"
    STOPPED = "stopped"
    FAILED = "failed"


CLOSING = frozenset({JournalEvent.FINISHED, JournalEvent.STOPPED, JournalEvent.FAILED})


class RunFolderBusy(StreamError):
    """Another live run holds the run folder."""


class PreviousRun(BaseModel):
    """An earlier run into the same folder that never closed its journal: what it kept, what it lost."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    run_id: str
    pid: int
    host: str
    started_wall_utc: str = Field(description="when the crashed run started (wall clock)")
    start_utc: str = Field(description="start of its replayed period")
    tick_s: int
    planned_ticks: int
    kept_ticks: int = Field(description="ticks in the parts it wrote before it died")
    kept_until_utc: str = Field(description="end of the last kept tick")
    lost_ticks: int = Field(description="planned ticks not in its tables (not reached, or not yet flushed)")
    moved_to: str = Field(description="folder now holding its tables")

    def text(self) -> str:
        return (f"the previous run in this folder (run id {self.run_id}, pid {self.pid} on {self.host}, started "
                f"{self.started_wall_utc}) crashed: it kept {self.kept_ticks} of its {self.planned_ticks} ticks "
                f"({self.start_utc} .. {self.kept_until_utc}), {self.lost_ticks} tick(s) lost; its tables are in "
                f"{self.moved_to}")


def read_journal(path: Path) -> list[dict[str, Any]]:
    """The journal's events; a torn last line (the process died while writing it) is skipped and logged."""
    events = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            log.warning("%s: line %d is not JSON (torn write at a crash?); skipped", path, number)
            continue
        if isinstance(event, dict) and "event" in event:
            events.append(event)
    return events


class RunJournal:
    """The journal of the run writing into ``folder``; ``begin`` takes the folder, ``close`` releases it."""

    def __init__(self, folder: Path, *, lock: IO[str], journal: IO[str], previous: PreviousRun | None,
                 now: Callable[[], datetime]) -> None:
        self.folder = folder
        self.previous = previous
        self._lock = lock
        self._journal = journal
        self._now = now
        self._closed = False

    @classmethod
    def begin(cls, folder: Path, *, run_id: str, start_utc: datetime, tick_s: int, n_ticks: int,
              tables: Iterable[str], now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> RunJournal:
        """Lock ``folder``, deal with a crashed earlier run (its ``tables`` move aside), start the journal.

        Raises RunFolderBusy when a live run holds the folder.
        """
        folder.mkdir(parents=True, exist_ok=True)
        lock = (folder / LOCK).open("a+")
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            holder = _last_started(folder / JOURNAL)
            raise RunFolderBusy(f"run folder {folder} is in use by a running run (pid {holder.get('pid', '?')}, "
                                f"run id {holder.get('run_id', '?')}); give another --out or stop that run") from None
        previous = _crashed_run(folder, tables=tables)
        journal = (folder / JOURNAL).open("w")
        self = cls(folder, lock=lock, journal=journal, previous=previous, now=now)
        self._write(JournalEvent.STARTED, run_id=run_id, pid=os.getpid(), host=socket.gethostname(),
                    start_utc=start_utc.isoformat(), tick_s=tick_s, planned_ticks=n_ticks)
        return self

    def flushed(self, ticks: int) -> None:
        self._write(JournalEvent.FLUSHED, ticks=ticks)

    def close(self, event: JournalEvent, *, ticks: int, detail: str = "") -> None:
        """Write the closing event and release the folder (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._write(event, ticks=ticks, detail=detail)
        finally:
            self._journal.close()
            self._lock.close()

    def _write(self, event: JournalEvent, **fields: object) -> None:
        self._journal.write(json.dumps({"event": event.value, "wall_utc": self._now().isoformat(), **fields}) + "\n")
        self._journal.flush()


def _last_started(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    started = [e for e in read_journal(path) if e["event"] == JournalEvent.STARTED]
    return started[-1] if started else {}


def _crashed_run(folder: Path, *, tables: Iterable[str]) -> PreviousRun | None:
    """The earlier run of ``folder`` if its journal never closed; its tables and journal moved aside."""
    path = folder / JOURNAL
    if not path.exists():
        return None
    events = read_journal(path)
    if not events or events[-1]["event"] in CLOSING:
        return None
    started = _last_started(path)
    kept = max((int(e["ticks"]) for e in events if e["event"] == JournalEvent.FLUSHED), default=0)
    planned = int(started.get("planned_ticks", kept))
    tick_s = int(started.get("tick_s", 0))
    start = datetime.fromisoformat(started["start_utc"]) if "start_utc" in started else None
    wall = str(started.get("wall_utc", "unknown"))
    stamp = wall.replace("-", "").replace(":", "").split(".")[0].split("+")[0] or "unknown"
    target = folder / f"crashed-{stamp}"
    n = 1
    while target.exists():
        n += 1
        target = folder / f"crashed-{stamp}-{n}"
    target.mkdir()
    for name in (*tables, JOURNAL):
        for source in (folder / name, folder / f"{name}.tmp"):
            if source.exists():
                source.replace(target / source.name)
    previous = PreviousRun(
        run_id=str(started.get("run_id", "")), pid=int(started.get("pid", -1)), host=str(started.get("host", "")),
        started_wall_utc=wall, start_utc=start.isoformat() if start else "", tick_s=tick_s, planned_ticks=planned,
        kept_ticks=kept,
        kept_until_utc=TickAxis(start_utc=start, tick_s=tick_s).time_of(kept).isoformat() if start else "",
        lost_ticks=max(planned - kept, 0), moved_to=str(target),
    )
    log.warning("%s", previous.text())
    return previous
