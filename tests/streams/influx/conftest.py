"""Fixtures for the InfluxDB recorder tests (helpers live in ``tests/support/influx_readback.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from support.influx_readback import DAY, Collected, FeederLayout, ieee_feeder_layout, run_id

from controllers.online.settings import ControllerSettings, Strategy
from devices.fleet import FleetSpec
from phasetwin.run.replay import replay
from phasetwin.run.scenario import Scenario
from streams.influx.recorder import InfluxCounts, InfluxRecorder, InfluxSettings
from streams.messages import Message

if TYPE_CHECKING:
    from support.servers import InfluxDBServer


@pytest.fixture(scope="session")
def ieee_layout() -> FeederLayout:
    """The IEEE European LV feeder as the recorder sees it: layout, operator buses and feeder-head lines."""
    return ieee_feeder_layout()


@dataclass(frozen=True)
class RecordedRun:
    """A controlled replay recorded live to InfluxDB 1.x (v1 API, operator detail, with the ``loading`` ratings),
    and its run folder."""

    db: str
    run: str
    scenario: str
    settings: InfluxSettings
    folder: Path
    messages: list[Message]
    counts: InfluxCounts


@pytest.fixture(scope="session")
def recorded_run(influxdb: InfluxDBServer, ieee_layout: FeederLayout,
                 tmp_path_factory: pytest.TempPathFactory) -> RecordedRun:
    """Two evening hours, PSDs on the 4 farthest customers and one PESS under the rolling MILP (LTUPF check on)."""
    tmp = tmp_path_factory.mktemp("recorded")
    start = DAY + timedelta(hours=17)
    scenario = Scenario(start_utc=start, end_utc=start + timedelta(hours=2), out=tmp / "run",
                        fleet=FleetSpec(psd=4, pess=1), controller=ControllerSettings(strategy=Strategy.ROLLING_MILP))
    db, run = f"rec_{run_id('v1').replace('-', '_')}", run_id("controlled")
    settings = InfluxSettings(url=influxdb.url, api="v1", bucket=db, spool_dir=tmp / "spool", batch_points=2000)
    collected = Collected.on(ieee_layout.name)
    recorder = InfluxRecorder(bus=collected.bus, feeder=ieee_layout.name, layout=ieee_layout.layout,
                              customer_bus_index=ieee_layout.customer_bus_index,
                              head_line_index=ieee_layout.head_line_index, run_id=run, scenario="evening peak",
                              settings=settings, ratings=ieee_layout.ratings)
    replay(scenario, bus=collected.bus)
    counts = recorder.close(timeout_s=60)
    return RecordedRun(db=db, run=run, scenario="evening peak", settings=settings, folder=scenario.out,
                       messages=collected.messages, counts=counts)
