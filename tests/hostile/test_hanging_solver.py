"""Issue 33, failure 7 (a solver that hangs): the controller's decisions run off the loop thread with a deadline.
A controller whose decision hangs 1.5 s (a stand-in: a real solver cannot be made to hang on demand) in a loop of
0.2 s ticks: no tick of the loop waits more than half a tick, a fallback plan (every device holds) is out by
the next tick, before the control period ends, and what the late decision publishes is discarded; the
decisions after it, on time, go out; messages that arrived meanwhile reach the controller afterwards, in order."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from phasetwin.run.off_loop import DeferredBus, OffLoopController
from streams import topics
from streams.bus import LocalBus
from streams.messages import ControllerHeartbeat, ControllerPlan, Message

FEEDER = "f1"
T0 = datetime(2024, 1, 15, tzinfo=UTC)
TICK_WALL_S = 0.2
PERIOD_TICKS = 5


class SlowController:
    """Decides at the last tick of each period (as the online controller does); the first decision hangs."""

    def __init__(self, bus: DeferredBus) -> None:
        self.bus, self.decisions, self.seen = bus, 0, []
        bus.subscribe(topics.controller_heartbeat(FEEDER), lambda t, m: self.seen.append(m.tick))  # type: ignore[attr-defined]

    def on_tick(self, tick: int, time_utc: datetime) -> None:
        if (tick + 1) % PERIOD_TICKS:
            return
        self.decisions += 1
        if self.decisions == 1:
            time.sleep(1.5)  # the solver hangs
        self.bus.publish(topics.controller_plan(FEEDER), ControllerPlan(
            feeder=FEEDER, tick=tick, time_utc=time_utc, controller_id="c", strategy="s", status="optimal",
            reason="", step_start_utc=time_utc, step_s=300.0, n_steps=1, objective=1.0, p_unb_kwh=0.0, switches=0,
            solve_s=0.0, commands=(), fallbacks=0))


def test_a_hanging_decision_never_blocks_the_loop() -> None:
    inner = LocalBus()
    plans: list[tuple[float, ControllerPlan]] = []
    inner.subscribe(topics.controller_plan(FEEDER), lambda t, m: plans.append((time.monotonic(), m)))  # type: ignore[arg-type]
    bus = DeferredBus(inner)
    controller = SlowController(bus)
    stage = OffLoopController(controller, bus, feeder=FEEDER, controller_id="c", strategy="s",
                              deciding=lambda tick: (tick + 1) % PERIOD_TICKS == 0, wait_s=TICK_WALL_S / 2,
                              deadline_s=TICK_WALL_S / 2, step_s=300.0)
    longest = 0.0
    started = time.monotonic()
    for tick in range(20):
        due = started + tick * TICK_WALL_S
        time.sleep(max(0.0, due - time.monotonic()))
        t0 = time.monotonic()
        stage.on_tick(tick, T0 + timedelta(minutes=tick))
        longest = max(longest, time.monotonic() - t0)
        inner.publish(topics.controller_heartbeat(FEEDER), ControllerHeartbeat(
            feeder=FEEDER, tick=tick, time_utc=T0 + timedelta(minutes=tick), controller_id="other"))
    time.sleep(0.1)
    assert longest < TICK_WALL_S * 0.75, f"the loop waited {longest:.3f} s in one tick"
    kinds = [(m.tick, m.status) for _, m in plans]
    assert kinds[0] == (5, "fallback"), "out at the tick after the deadline, before the period ends (tick 9)"
    assert (4, "optimal") not in kinds, "the late decision was discarded"
    assert kinds[1:] == [(14, "optimal"), (19, "optimal")], "tick 9's decision skipped: the hung one still ran"
    s = stage.summary()
    assert s["fallbacks_on_deadline"] == 1 and s["late_messages_discarded"] == 1 and s["ticks_skipped"] >= 5
    assert controller.seen == sorted(controller.seen) and len(controller.seen) == 20, "nothing lost, in order"
    message: Message = plans[0][1]
    assert isinstance(message, ControllerPlan) and message.commands == ()
