"""Issue 33, item 7: the controller must not decide on stale data. The head-end's meter frames stop for 20 ticks
(a dead feed) in a virtual-time replay with a controller and a persistence forecast: after the staleness limit
(5 ticks of 60 s) the controller stops taking the frozen last readings for what the customers draw and takes
its forecast's loads instead; it counts the stale ticks, the customer-ticks and the decision taken meanwhile,
and logs it. The step its decision observed is exactly: the real ticks, the frozen ticks within the limit, and
the forecast for the stale ones."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from controllers.online.forecast import Forecaster
from controllers.online.settings import ForecastKind, Strategy
from phasetwin.report.run_notes import degraded_notes
from phasetwin.run.assemble import assemble
from phasetwin.run.execute import execute
from phasetwin.run.options import ScenarioOptions
from phasetwin.run.summarise import summarise
from streams.bus import BusWrapper, LocalBus
from streams.messages import Message, MeterFrame

DEAD = range(20, 40)
"""Ticks whose meter frame never arrives."""


class _DeadFeed(BusWrapper):
    def publish(self, topic: str, message: Message) -> None:
        if isinstance(message, MeterFrame) and message.tick in DEAD:
            return
        self.inner.publish(topic, message)


class _Spy:
    """The controller's forecaster, recording what it observes."""

    def __init__(self, inner: Forecaster) -> None:
        self.inner, self.observed = inner, {}

    def observe(self, step: int, p_kw: np.ndarray) -> None:
        self.observed[step] = p_kw.copy()
        self.inner.observe(step, p_kw)

    def forecast(self, step: int, horizon: int) -> np.ndarray:
        return self.inner.forecast(step, horizon)


def test_stale_readings_give_way_to_the_forecast(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    scenario = ScenarioOptions(start="2024-01-15T17:00", end="2024-01-15T18:00", controller=Strategy.GREEDY,
                               forecast=ForecastKind.PERSISTENCE, out=tmp_path / "run").scenario()
    assert scenario.stale_after_s == 300.0
    run = assemble(scenario, bus=_DeadFeed(LocalBus()))
    assert run.controller is not None
    spy = _Spy(run.controller.decision._forecaster)
    run.controller.decision._forecaster = spy
    with caplog.at_level(logging.WARNING, logger="controllers.online.decision"):
        s = summarise(run, execute(run)).summary
    c = s.controller
    stale = range(DEAD.start + 5, DEAD.stop)  # stale once the last real reading (tick 19) is more than 5 ticks old
    n = len(run.feeder.customers)
    assert (c["stale_ticks"], c["stale_readings"], c["stale_decisions"]) == (len(stale), n * len(stale), 1)
    assert degraded_notes(ingest=s.ingest, bus=s.bus, controller=c) == [  # what the console prints of it
        f"1 control decision(s) taken while readings were stale (no real reading for more than 300 s): the forecast "
        f"stood in for {n * len(stale)} customer-tick(s)"]
    p = run.meters.p_kw  # [ticks, customers, 3]: what the meters sent
    step0 = p[0:15].mean(axis=0)  # the persistence forecast of step 1
    expected = (p[15:20].sum(axis=0) + 5 * p[19] + 5 * step0) / 15  # real, frozen within the limit, forecast
    np.testing.assert_allclose(spy.observed[1][:3 * n].reshape(n, 3), expected, rtol=1e-12, atol=1e-12)
    logged = [r.getMessage() for r in caplog.records]
    assert any(f"tick {stale.start}: {n} customer(s) without a real reading for more than 5 tick(s)" in m
               for m in logged)
    assert any("readings stale: their loads are the forecast's" in m for m in logged)
    assert any(f"tick {DEAD.stop}: every customer's readings are fresh again" in m for m in logged)


def test_a_staleness_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match=r"stale_after_s 0: expected a positive number of seconds"):
        ScenarioOptions(stale_after=0.0).scenario()
