"""Gets line-protocol batches to the server: retries with capped exponential back-off, the spool while the server
is down, the spool's replay (oldest first) when it answers again, and the counters of all of it.

Life of a batch: while the server is up and the spool is empty, a batch is POSTed and, on failure, sent again
after ``backoff_s``, ``2·backoff_s``, … (each at most ``backoff_max_s``), ``max_retries`` times. If it still
fails the server is marked down and the batch goes to the spool. While down, new batches go straight to the
spool (after the spool's tail, so order is kept) and every ``backoff_max_s`` the oldest spooled batch is tried
once as a probe; when it is taken the server is up again and the spool is replayed in order. A batch the
server refuses as invalid (HTTP 400/413/422) is not retried: its points are counted as rejected and logged.

Delivery is at least once: a batch whose answer was lost is sent again. Points keep their keys, so InfluxDB
overwrites; nothing is ever sent twice otherwise.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from streams.influx.settings import InfluxSettings
from streams.influx.spool import Spool
from streams.influx.transport import Outcome, PostResult, Transport

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InfluxCounts:
    """Counters of a recorder, an export or a spool flush, at one moment (points are lines of line protocol)."""

    written: int = 0
    """Points the server confirmed (HTTP 2xx)."""
    spooled: int = 0
    """Points waiting in the on-disk spool now."""
    dropped: int = 0
    """Points lost because the spool was full (the oldest go first) or there was no spool."""
    rejected: int = 0
    """Points the server refused as invalid (HTTP 400/413/422); never retried."""
    retries: int = 0
    """POSTs that sent a batch again after a failed attempt (back-off retries and spool replays)."""
    batches: int = 0
    """Batches formed (each is written, rejected, spooled or dropped)."""
    failures: int = 0
    """POSTs that failed (no answer, timeout, HTTP 5xx/429/401/403/404)."""
    messages: int = 0
    """Bus messages the recorder took."""
    ignored: int = 0
    """Bus messages not recorded: wrong type, formatting failed, or published while the recorder closed (logged)."""
    pending: int = 0
    """Points formatted but not yet sent (the next batch)."""
    last_error: str = ""

    @property
    def lost(self) -> int:
        """Points that will never reach the server from here: dropped and rejected."""
        return self.dropped + self.rejected


class Shipper:
    """Sends batches for one writer thread; ``counts()`` may be called from any thread."""

    def __init__(self, *, settings: InfluxSettings, transport: Transport, spool: Spool,
                 sleep: Callable[[float], None] = time.sleep, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._transport = transport
        self.spool = spool
        self._sleep = sleep
        self._now = monotonic
        self.up = True
        self._next_probe_s = 0.0
        self._lock = threading.Lock()
        self._written = self._rejected = self._retries = self._batches = self._failures = 0
        self._last_error = ""
        self._spooled = spool.points
        self._dropped = spool.dropped_points

    def counts(self) -> InfluxCounts:
        with self._lock:
            return InfluxCounts(written=self._written, spooled=self._spooled, dropped=self._dropped,
                                rejected=self._rejected, retries=self._retries, batches=self._batches,
                                failures=self._failures, last_error=self._last_error)

    def ship(self, body: bytes, points: int, *, deadline_s: float = float("inf")) -> None:
        """Send a new batch (with retries while the server is up), or spool it."""
        with self._lock:
            self._batches += 1
        now = self._now()
        try_now = not len(self.spool) and now < deadline_s and (self.up or now >= self._next_probe_s)
        if try_now and self.send(body, points, retry=self.up, deadline_s=deadline_s):
            return
        self.spool.append(body, points)
        self._sync_spool()

    def send(self, body: bytes, points: int, *, retry: bool = True, deadline_s: float = float("inf")) -> bool:
        """POST a batch, with back-off retries if ``retry``; True when the server answered (written or
        rejected), False when it did not take it (the server is then marked down)."""
        attempts = 1 + (self._settings.max_retries if retry else 0)
        result = PostResult(Outcome.FAILED, "no attempt before the deadline")
        for attempt in range(attempts):
            if attempt:
                delay = min(self._settings.backoff_s * 2 ** (attempt - 1), self._settings.backoff_max_s)
                if self._now() + delay > deadline_s:
                    break
                self._sleep(delay)
                with self._lock:
                    self._retries += 1
            result = self._transport.post(body)
            if self._answered(result, points):
                return True
        self._down(result.detail)
        return False

    def drain(self, *, until_s: float, probe_now: bool = False) -> None:
        """Replay spooled batches oldest first while the server takes them, until ``until_s`` (monotonic).

        While the server is down it is only probed when the probe interval has passed, or at once if
        ``probe_now``.
        """
        while len(self.spool) and self._now() < until_s:
            if not self.up and not probe_now and self._now() < self._next_probe_s:
                return
            probe_now = False
            item = self.spool.oldest()
            if item is None:
                break
            batch, body = item
            with self._lock:
                self._retries += 1
            result = self._transport.post(body)
            if not self._answered(result, batch.points):
                self._sync_spool()
                self._down(result.detail)
                return
            self.spool.remove(batch)
            self._sync_spool()

    def close(self) -> None:
        """Release the HTTP client and the spool folder's lock (errors are logged: closing must not fail)."""
        try:
            self._transport.close()
        except Exception:
            log.exception("influx: closing the HTTP client failed")
        self.spool.close()

    def _answered(self, result: PostResult, points: int) -> bool:
        if result.outcome is Outcome.FAILED:
            with self._lock:
                self._failures += 1
                self._last_error = result.detail
            return False
        if not self.up:
            log.warning("influx: %s answers again; replaying %d spooled point(s)", self._settings.describe(),
                        self.spool.points)
        self.up = True
        if result.outcome is Outcome.WRITTEN:
            with self._lock:
                self._written += points
            return True
        refused = points if result.rejected_points is None else min(points, result.rejected_points)
        log.error("influx: the server refused %d of %d point(s) of a batch: %s", refused, points, result.detail)
        with self._lock:
            self._rejected += refused
            self._written += points - refused
            self._last_error = result.detail
        return True

    def _down(self, detail: str) -> None:
        if self.up:
            log.warning("influx: %s does not take writes (%s); spooling to %s, probing every %g s",
                        self._settings.describe(), detail, self.spool.folder or "nowhere (no spool)",
                        self._settings.backoff_max_s)
        self.up = False
        self._next_probe_s = self._now() + self._settings.backoff_max_s

    def _sync_spool(self) -> None:
        with self._lock:
            self._spooled = self.spool.points
            self._dropped = self.spool.dropped_points
