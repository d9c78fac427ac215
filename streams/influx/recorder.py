"""The InfluxDB recorder: every grid state, device state, controller plan and twin status of a run, written live
as the points of ``streams.influx.schema`` to InfluxDB 1.x (``/write``) or 2.x/3.x and compatibles
(``/api/v2/write``), without slowing the twin and without losing or duplicating a point.

```
bus thread:   publish ──► InfluxRecorder._on_message ──► queue (bounded; only the message object)
writer thread:            queue ──► line protocol (per-tick templates) ──► batch ──► POST ──► server
                                                                             │ server down  ▲ answers again
                                                                             ▼              │
                                                                      spool folder (bounded, oldest dropped)
```

- Settings: ``InfluxSettings``; ``influx_settings_from_url`` parses ``--influx URL`` (forms in
  ``streams.influx.settings``: ``influxdb+v1://host:8086/db``, ``influxdb+v2://:token@host:8086/bucket?org=o``,
  ``http://host:8086?bucket=b&org=o&token=t``, any setting as a query parameter).
- Detail: ``operator`` writes bus voltages at the buses given as ``customer_bus_index`` (the customer buses and
  the transformer's LV bus) and line currents of the lines given as ``head_line_index`` (those leaving the LV
  busbar); ``full`` writes every bus and line. Every other measurement is always written (``loading`` when the
  recorder is given the ratings: ``streams.runfolder.loading_recorder.tick_loading`` over every line, as the run
  folder's ``loading.parquet``).
- Keys: measurement + tags (``run``, ``scenario``, ``feeder`` and the measurement's own) + the simulation time of
  the tick in seconds. The same run written again (live, replayed from the spool, or exported with
  ``streams.influx.export.export_run``) overwrites in InfluxDB. VictoriaMetrics keeps every sample it is sent
  (no overwrite unless started with ``-dedup.minScrapeInterval``), which is how the tests prove that the
  recorder itself never sends a point twice.
- ``ltupf``: the recorder pairs each plan's ``predicted_vm_min_pu``/``predicted_vm_max_pu`` with the lowest
  ``vm_min_pu`` and highest ``vm_max_pu`` (over phases) of the grid states of the ticks in
  [``step_start_utc``, ``step_start_utc + step_s``), and writes one point at the step start when the step is
  complete (or at ``close``); error = predicted − actual.
- Back-pressure: when the writer falls ``queue_max_messages`` behind, ``publish`` waits for it (a replay at full
  speed then runs at the recorder's pace); nothing is dropped before the spool.
- Spool: see ``streams.influx.spool`` (drops the oldest batches when full, counted in ``counters.dropped`` and
  logged). Points left in it at ``close`` are pushed later by ``flush_spool(settings)``.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from types import TracebackType
from typing import Self

from streams import topics
from streams.bus import Bus
from streams.influx.export import export_run
from streams.influx.points import GridSelection, LtupfTracker, MessagePoints, RunTags
from streams.influx.settings import (
    Detail,
    InfluxApi,
    InfluxError,
    InfluxSettings,
    InfluxSettingsError,
    influx_settings_from_url,
)
from streams.influx.shipper import InfluxCounts, Shipper
from streams.influx.spool import Spool
from streams.influx.transport import Transport, create_transport
from streams.messages import AuditRecord, ControllerPlan, DeviceState, GridState, Message, TwinStatus
from streams.runfolder.loading_recorder import LoadingRatings
from streams.runfolder.recorder import Layout

__all__ = [
    "Detail",
    "InfluxApi",
    "InfluxCounts",
    "InfluxError",
    "InfluxRecorder",
    "InfluxSettings",
    "InfluxSettingsError",
    "export_run",
    "flush_spool",
    "influx_settings_from_url",
]

log = logging.getLogger(__name__)
_STOP = object()
_JOIN_MARGIN_S = 5.0
_POLL_S = 0.02
"""How often the writer looks at its inbox. Polling a deque instead of blocking on a queue spares the bus thread a
lock and a wake-up per message, and the writer a GIL hand-over per message: it formats what came in batches."""


class InfluxRecorder:
    """Records a run's messages to InfluxDB from a background thread; ``close()`` flushes and stops it.

    ``transport``: the HTTP client to use instead of the one ``settings`` describe (benchmarks, tests); the
    recorder closes it. ``ratings``: the line ampacities (in ``layout.line_ids`` order) and the transformer's
    kVA, for the ``loading`` measurement; without them no ``loading`` point is written.

    Raises (at construction):
        InfluxError: a tag value is invalid (empty ``run_id``, a backslash…), an index is out of range, or the
            spool folder cannot be used (not writable, or locked by another recorder).
    """

    def __init__(self, *, bus: Bus, feeder: str, layout: Layout, customer_bus_index: Sequence[int],
                 head_line_index: Sequence[int], run_id: str, scenario: str, settings: InfluxSettings,
                 transport: Transport | None = None, ratings: LoadingRatings | None = None) -> None:
        full = settings.detail is Detail.FULL
        try:
            selection = GridSelection(
                bus_ids=layout.bus_ids, line_ids=layout.line_ids, n_lv_feeders=layout.n_lv_feeders,
                bus_index=tuple(range(len(layout.bus_ids))) if full else tuple(int(i) for i in customer_bus_index),
                line_index=tuple(range(len(layout.line_ids))) if full else tuple(int(i) for i in head_line_index),
            )
            self._points = MessagePoints(tags=RunTags(run=run_id, scenario=scenario, feeder=feeder,
                                                      time_offset_s=settings.time_offset_s,
                                                      time_scale=settings.time_scale,
                                                      time_anchor_s=settings.time_anchor_s), selection=selection,
                                         ratings=ratings)
            patterns = (topics.grid_state(feeder), topics.device_states(feeder), topics.controller_plan(feeder),
                        topics.twin_status(feeder))
        except ValueError as err:
            raise InfluxError(f"InfluxDB recorder for run {run_id!r}: {err}") from err
        self.settings = settings
        self._ltupf = LtupfTracker()
        self._inbox: deque[object] = deque()  # append and popleft are atomic: no lock on the bus thread
        transport = transport or create_transport(settings)
        try:
            spool = Spool(settings.spool_dir, max_bytes=settings.spool_max_bytes)
        except InfluxError:
            transport.close()
            raise
        self._shipper = Shipper(settings=settings, transport=transport, spool=spool)
        self._lock = threading.Lock()
        self._messages = self._ignored = self._pending_points = 0
        self._closed = False
        self._deadline_s = float("inf")
        self._warned_full = False
        self._final: InfluxCounts | None = None
        # Writer-thread state: lines of the batch being filled (grid states are buffered in self._points.grid).
        self._chunks: list[str] = []
        self._chunk_points = 0
        self._first_s = 0.0
        self._thread = threading.Thread(target=self._run, name=f"influx-recorder-{feeder}", daemon=True)
        self._thread.start()
        for pattern in patterns:
            bus.subscribe(pattern, self._on_message)
        log.info("influx: recording run %r (%s detail) to %s", run_id, settings.detail.value, settings.describe())

    # --- bus side: enqueue only ------------------------------------------------------------------------------
    def _on_message(self, topic: str, message: Message) -> None:
        if self._closed:
            self._ignore(f"{type(message).__name__} on {topic} after close")
            return
        self._inbox.append(message)
        if len(self._inbox) > self.settings.queue_max_messages:
            self._wait_for_room(message, topic)

    def _wait_for_room(self, message: Message, topic: str) -> None:
        if not self._warned_full:
            self._warned_full = True
            log.warning("influx: the writer is %d messages behind; the publisher waits for it (back-pressure)",
                        self.settings.queue_max_messages)
        while len(self._inbox) > self.settings.queue_max_messages:
            if not self._thread.is_alive():
                self._ignore(f"{type(message).__name__} on {topic}: the writer thread has stopped")
                return
            time.sleep(_POLL_S / 4)

    def _ignore(self, why: str) -> None:
        with self._lock:
            self._ignored += 1
            first = self._ignored == 1
        (log.error if first else log.debug)("influx: message not recorded: %s", why)

    # --- public ----------------------------------------------------------------------------------------------
    def record(self, record: AuditRecord) -> None:
        """Record what does not travel on the bus (the command audit log)."""
        self._on_message("audit", record)

    @property
    def counters(self) -> InfluxCounts:
        """A consistent snapshot of the counters; callable from any thread, at any time."""
        if self._final is not None:
            return self._final
        counts = self._shipper.counts()
        with self._lock:
            return dataclasses.replace(counts, messages=self._messages, ignored=self._ignored,
                                       pending=self._pending_points)

    def close(self, timeout_s: float = 30.0) -> InfluxCounts:
        """Write everything taken so far (and the spool, if the server answers) within ``timeout_s``, then stop.

        What the server does not take by then stays in the spool (``flush_spool`` sends it later). Safe to call
        twice; returns the final counters.
        """
        if self._final is not None:
            return self._final
        self._closed = True
        self._deadline_s = time.monotonic() + timeout_s
        join_s = timeout_s + self.settings.timeout_s + _JOIN_MARGIN_S
        self._inbox.append(_STOP)
        self._thread.join(timeout=join_s)
        if self._thread.is_alive():
            log.error("influx: the writer thread is still busy %g s after close; counters may still change",
                      join_s)
            return self.counters
        left = sum(1 for item in self._inbox if item is not _STOP)
        self._inbox.clear()
        for _ in range(left):
            self._ignore("published while the recorder was closing")
        self._final = self.counters
        c = self._final
        report = log.info if not (c.spooled or c.lost or c.ignored) else log.warning
        report("influx: closed; %d point(s) written, %d left in the spool, %d dropped, %d rejected, %d message(s) "
               "not recorded, %d retries", c.written, c.spooled, c.dropped, c.rejected, c.ignored, c.retries)
        return c

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    # --- writer thread ---------------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._loop()
        except Exception:  # the thread must end visibly: publishers stop waiting for it (_wait_for_room)
            log.exception("influx: the writer thread failed; what it had not sent is lost")
        finally:
            self._shipper.close()

    def _loop(self) -> None:
        s, inbox, grid = self.settings, self._inbox, self._points.grid
        stopping = False
        while not stopping:
            if not inbox:
                time.sleep(_POLL_S)
            while inbox and self._pending_points < s.batch_points:
                item = inbox.popleft()
                if item is _STOP:
                    stopping = True
                    break
                if not self._chunks and not len(grid):
                    self._first_s = time.monotonic()
                self._take(item)  # type: ignore[arg-type]
            if stopping:
                for step in self._ltupf.finish():
                    self._add(self._points.ltupf(step))
            if (self._chunks or len(grid)) and (stopping or self._pending_points >= s.batch_points
                                                 or time.monotonic() - self._first_s >= s.flush_interval_s):
                self._cut()
            if stopping:  # the spool's turn until close's deadline
                self._shipper.drain(until_s=self._deadline_s, probe_now=True)
            elif not inbox:  # the spool waits while new messages are there to be written
                self._shipper.drain(until_s=min(time.monotonic() + s.flush_interval_s, self._deadline_s))

    def _take(self, m: Message) -> None:
        with self._lock:
            self._messages += 1
        p = self._points
        try:
            if isinstance(m, GridState):
                n = p.grid.add(m)
                with self._lock:
                    self._pending_points += n
                self._add(p.loading(m))
                for step in self._ltupf.state(m.time_utc, m.vm_min_pu, m.vm_max_pu):
                    self._add(p.ltupf(step))
            elif isinstance(m, DeviceState):
                self._add(p.device(m))
            elif isinstance(m, ControllerPlan):
                self._add(p.plan(m))
                self._ltupf.plan(m)
            elif isinstance(m, TwinStatus):
                self._add(p.status(m))
            elif isinstance(m, AuditRecord):
                self._add(p.audit(m))
            else:
                self._ignore(f"{type(m).__name__} is not a message the recorder writes")
        except Exception as err:  # one bad message must not stop the recording of the rest
            log.exception("influx: cannot format %s of tick %s", type(m).__name__, getattr(m, "tick", "?"))
            self._ignore(f"{type(m).__name__}: {err}")

    def _add(self, rendered: tuple[str, int]) -> None:
        text, n = rendered
        if n:
            self._chunks.append(text)
            self._chunk_points += n
            with self._lock:
                self._pending_points += n

    def _cut(self) -> None:
        """Render the buffered grid states, join them with the other lines, and ship the batch."""
        grid, n_grid = self._points.grid.take()
        body = grid + "".join(self._chunks).encode()
        points = n_grid + self._chunk_points
        self._chunks, self._chunk_points = [], 0
        with self._lock:
            self._pending_points = 0
        self._shipper.ship(body, points, deadline_s=self._deadline_s)


def flush_spool(settings: InfluxSettings, *, timeout_s: float = 60.0) -> InfluxCounts:
    """Send what a recorder left in ``settings.spool_dir`` to the server of ``settings``, oldest first.

    Returns the counters: ``written``, ``rejected``, and ``spooled`` = what is still there (the server stopped
    answering or ``timeout_s`` passed; call again later).

    Raises:
        InfluxError: ``settings.spool_dir`` is None, or the spool is in use by a running recorder.
    """
    if settings.spool_dir is None:
        raise InfluxError("flush_spool needs settings.spool_dir (the folder the recorder spooled to)")
    spool = Spool(settings.spool_dir, max_bytes=settings.spool_max_bytes)
    shipper = Shipper(settings=settings, transport=create_transport(settings), spool=spool)
    try:
        shipper.drain(until_s=time.monotonic() + timeout_s, probe_now=True)
        counts = shipper.counts()
    finally:
        shipper.close()
    (log.info if not counts.spooled else log.warning)(
        "influx: spool %s: %d point(s) written, %d rejected, %d still spooled", settings.spool_dir, counts.written,
        counts.rejected, counts.spooled)
    return counts
