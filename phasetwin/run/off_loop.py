"""A controller's decisions off the loop thread, with a deadline (real-time runs): a solver that hangs never
blocks the twin.

``OffLoopController`` wraps the controller from the outside (it is unchanged). On a decision tick its
``on_tick`` runs on a worker thread; the loop waits at most ``wait_s`` for it and goes on. While the worker runs,
the controller's bus (``DeferredBus``) holds what arrives for it and what it publishes, so that the controller
is only ever touched by one thread at a time; its other ticks are skipped (counted). When the decision is done
in time its messages go out on the loop thread. When it is not done by its deadline (``deadline_s`` after it
started; the runner gives half a tick of wall time), a fallback plan is published at the next tick —
status ``fallback``, no commands: every device holds — and whatever the late decision publishes afterwards is
discarded (counted), never sent stale.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from datetime import datetime, timedelta
from typing import Protocol

from streams import topics
from streams.bus import Bus, BusWrapper, Handler
from streams.messages import ControllerPlan, Message

log = logging.getLogger(__name__)


class Stage(Protocol):
    def on_tick(self, tick: int, time_utc: datetime) -> None: ...


class DeferredBus(BusWrapper):
    """The controller's bus: while ``holding``, messages for it wait and what it publishes off the loop waits."""

    def __init__(self, inner: Bus) -> None:
        super().__init__(inner)
        self.holding = False
        self._loop_thread = threading.get_ident()
        self._inbox: list[tuple[Handler, str, Message]] = []
        self._outbox: list[tuple[str, Message]] = []
        self._lock = threading.Lock()

    def publish(self, topic: str, message: Message) -> None:
        if threading.get_ident() == self._loop_thread:
            self.inner.publish(topic, message)
        else:
            with self._lock:
                self._outbox.append((topic, message))

    def subscribe(self, pattern: str, handler: Handler) -> None:
        def held(topic: str, message: Message) -> None:
            if self.holding:
                self._inbox.append((handler, topic, message))
            else:
                handler(topic, message)

        self.inner.subscribe(pattern, held)

    def take_outbox(self) -> list[tuple[str, Message]]:
        with self._lock:
            out, self._outbox = self._outbox, []
        return out

    def deliver_inbox(self) -> None:
        inbox, self._inbox = self._inbox, []
        for handler, topic, message in inbox:
            handler(topic, message)



class OffLoopController:
    """A tick stage in place of the controller. ``deciding(tick)``: whether the controller decides in that tick."""

    def __init__(self, controller: Stage, bus: DeferredBus, *, feeder: str, controller_id: str, strategy: str,
                 deciding: Callable[[int], bool], wait_s: float, deadline_s: float, step_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._controller, self._bus, self._feeder = controller, bus, feeder
        self._controller_id, self._strategy, self._deciding = controller_id, strategy, deciding
        self._wait_s, self._deadline_s, self._step_s, self._clock = wait_s, deadline_s, step_s, clock
        self._running: Future[None] | None = None
        self._started_s = 0.0
        self._fallback_sent = False
        self.decisions_off_loop = 0
        self.fallbacks = 0
        self.late_discarded = 0
        """Messages of decisions that finished after their deadline (not sent)."""
        self.ticks_skipped = 0
        self.max_wait_s = 0.0

    def on_tick(self, tick: int, time_utc: datetime) -> None:
        if self._running is not None and not self._running.done():
            self.ticks_skipped += 1
            if not self._fallback_sent and self._clock() - self._started_s > self._deadline_s:
                self._fallback(tick, time_utc)
            return
        self._finish()
        if not self._deciding(tick):
            self._controller.on_tick(tick, time_utc)
            return
        self.decisions_off_loop += 1
        self._started_s, self._fallback_sent = self._clock(), False
        self._bus.holding = True
        self._running = self._start(tick, time_utc)
        waited = self._clock()
        try:
            self._running.result(timeout=self._wait_s)
        except TimeoutError:
            log.warning("controller: the decision of tick %d is not done after %.3f s; the loop goes on", tick,
                        self._wait_s)
        self.max_wait_s = max(self.max_wait_s, self._clock() - waited)
        if self._running.done():
            self._finish()

    def _start(self, tick: int, time_utc: datetime) -> Future[None]:
        """The decision on a daemon thread: one that hangs for good must not keep the process from ending."""
        future: Future[None] = Future()

        def decide() -> None:
            try:
                self._controller.on_tick(tick, time_utc)
            except BaseException as err:  # handed to the loop thread, which logs it
                future.set_exception(err)
            else:
                future.set_result(None)

        threading.Thread(target=decide, name=f"decision-{tick}", daemon=True).start()
        return future

    def _finish(self) -> None:
        """A finished decision: its messages out (or discarded when late), the held ones delivered to it."""
        if self._running is None or not self._running.done():
            return
        error = self._running.exception()
        if error is not None:
            log.error("controller: the decision failed: %r", error)
        out = self._bus.take_outbox()
        if self._fallback_sent:
            self.late_discarded += len(out)
            log.warning("controller: %d message(s) of a decision that missed its deadline discarded", len(out))
        else:
            for topic, message in out:
                self._bus.inner.publish(topic, message)
        self._running = None
        self._bus.holding = False
        self._bus.deliver_inbox()

    def _fallback(self, tick: int, time_utc: datetime) -> None:
        self._fallback_sent = True
        self.fallbacks += 1
        why = f"the decision did not finish within {self._deadline_s:g} s: every device holds"
        log.warning("controller: %s", why)
        self._bus.inner.publish(topics.controller_plan(self._feeder), ControllerPlan(
            feeder=self._feeder, tick=tick, time_utc=time_utc, controller_id=self._controller_id,
            strategy=self._strategy, status="fallback", reason=why, step_start_utc=time_utc + timedelta(seconds=1),
            step_s=self._step_s, n_steps=0, objective=0.0, p_unb_kwh=0.0, switches=0, solve_s=self._deadline_s,
            commands=(), fallbacks=self.fallbacks))

    def summary(self) -> dict[str, object]:
        return {"decisions_off_loop": self.decisions_off_loop, "fallbacks_on_deadline": self.fallbacks,
                "late_messages_discarded": self.late_discarded, "ticks_skipped": self.ticks_skipped,
                "max_loop_wait_s": round(self.max_wait_s, 6)}
