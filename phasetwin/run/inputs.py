"""Loading a run's inputs: the feeder and its meter data, the period as ticks, the meter envelope."""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime, timedelta

import pandas as pd

from phasetwin.run.scenario import Scenario
from streams.meters.coverage import cover
from streams.meters.plausibility import MAX_MEDIAN_KW, check_unit, median_customer_load_kw
from streams.meters.record import DataRecord, data_record
from streams.meters.table import MeterTable
from twin.clock import TickClock
from twin.errors import ScenarioError
from twin.feeders import FeederEntry, open_feeder
from twin.network import Feeder

log = logging.getLogger(__name__)


def load_inputs(scenario: Scenario) -> tuple[Feeder, MeterTable]:
    """The feeder and its meter data, customers matched and ordered as the feeder's."""
    feeder, table, _ = load_run_inputs(scenario)
    return feeder, table


def load_run_inputs(scenario: Scenario, *, entry: FeederEntry | None = None,
                    ) -> tuple[Feeder, MeterTable, DataRecord]:
    """What ``replay(scenario, inputs=...)`` takes: the feeder, its meter data and their data-quality record
    (``entry``: the scenario's feeder, already opened)."""
    return _load(entry if entry is not None else open_feeder(scenario.feeder_spec), scenario)


def _load(entry: FeederEntry, scenario: Scenario) -> tuple[Feeder, MeterTable, DataRecord]:
    """The feeder (re-phased by ``scenario.rephase``), its meter data covering exactly its customers, and the
    data-quality record. Data are read with the customers as connected when measured (before the plan)."""
    measured = feeder = entry.load_feeder()
    if scenario.rephase is not None:
        from controllers.errors import PlanningError
        from controllers.planning.plan_file import apply_plan, read_plan, read_plan_file

        try:
            plan = read_plan_file(scenario.rephase)
            if plan.feeder != feeder.name:
                raise ScenarioError(f"--rephase {scenario.rephase}: the plan is for feeder {plan.feeder!r}, "
                                    f"not {feeder.name!r}")
            feeder = apply_plan(feeder, read_plan(scenario.rephase))
        except PlanningError as err:
            raise ScenarioError(f"--rephase {scenario.rephase}: {err}") from err
    if scenario.data is not None:
        from streams.meters.data import GapPolicy, read_meter_data

        table = read_meter_data(scenario.data, unit=scenario.data_unit, customers=list(measured.customers),
                                naive_is_utc=scenario.data_naive_utc, exact=False,
                                timezone=scenario.data_timezone, time_format=scenario.data_time_format,
                                policy=GapPolicy(max_fill_steps=scenario.data_fill_steps))
        source, unit, fill = str(scenario.data), scenario.data_unit.value, scenario.data_fill_steps
    elif entry.load_data is None:
        raise ScenarioError(f"feeder {entry.name!r} has no data of its own; give meter data with --data")
    else:
        table = entry.load_data(feeder)
        source, unit, fill = f"own data of feeder {entry.name!r}", "", None
        if (network := scenario.feeder_file) is not None and network.suffix.lower() == ".dss":
            table = _anchored(table, scenario.start_utc)
    median_kw = median_customer_load_kw(table)
    if scenario.data is not None and scenario.data_unit_check:
        check_unit(table, scenario.data_unit,
                   max_median_kw=max(MAX_MEDIAN_KW, feeder.transformer.sn_kva / max(len(feeder.customers), 1)))
    table, coverage = cover(table, feeder, unmetered=scenario.unmetered, unknown_meters=scenario.unknown_meters)
    record = data_record(table, source=source, unit=unit, max_fill_steps=fill, median_customer_load_kw=median_kw,
                         coverage=coverage)
    return feeder, _scaled(table, feeder, scenario), record


def _anchored(table: MeterTable, start_utc: datetime | None) -> MeterTable:
    """An OpenDSS circuit's load shapes carry no date: a ``--start`` outside their default dates starts them."""
    start = pd.Timestamp(start_utc) if start_utc is not None else None
    if start is None or table.start_utc <= start < table.end_utc:
        return table
    note = f"load shapes anchored at --start {start.isoformat()} (their default start: {table.start_utc.isoformat()})"
    log.warning("%s", note)
    quality = table.quality.model_copy(update={"notes": (*table.quality.notes, note)})
    return dataclasses.replace(table, time_utc=table.time_utc + (start - table.start_utc), quality=quality)


def _scaled(table: MeterTable, feeder: Feeder, scenario: Scenario) -> MeterTable:
    """The table with the single-phase customers on ``scenario.scale_phase`` scaled (paper 001 Case II)."""
    if scenario.scale_phase is None or scenario.scale_factor == 1.0:
        return table
    rows = [i for i, c in enumerate(feeder.customers) if c.phases == (scenario.scale_phase,)]
    p_kw, q_kvar = table.p_kw.copy(), table.q_kvar.copy()
    p_kw[:, rows] *= scenario.scale_factor
    q_kvar[:, rows] *= scenario.scale_factor
    return dataclasses.replace(table, p_kw=p_kw, q_kvar=q_kvar,
                               source=f"{table.source}, phase {scenario.scale_phase.name} × {scenario.scale_factor}")


def plan_clock(scenario: Scenario, table: MeterTable) -> TickClock:
    start = scenario.start_utc or table.start_utc.to_pydatetime()
    end = scenario.end_utc or min(start + timedelta(days=1), table.end_utc.to_pydatetime())
    span_s = (end - start).total_seconds()
    if span_s % scenario.tick_s:
        raise ScenarioError(
            f"the period {start.isoformat()} .. {end.isoformat()} ({span_s:.0f} s) is not a whole number "
            f"of {scenario.tick_s} s ticks"
        )
    return TickClock(start_utc=start, tick_s=scenario.tick_s, n_ticks=int(span_s // scenario.tick_s))


HOUSEHOLD_LIMIT_KVA = 60.0
"""Envelope of a reading on an LV feeder, kVA per terminal: a household connection (3 × 80 A at 230 V ≈ 55 kVA)."""


def default_meter_limit_kva(feeder: Feeder) -> float:
    """The envelope a meter reading must fit when the run gives none: a household connection on an LV feeder
    (secondary at most 1 kV), the transformer's rating per phase on an MV one, whose customers are large loads."""
    if feeder.transformer.vn_lv_kv <= 1.0:
        return HOUSEHOLD_LIMIT_KVA
    return max(HOUSEHOLD_LIMIT_KVA, feeder.transformer.sn_kva / 3.0)


def customer_bus_index(feeder: Feeder) -> list[int]:
    """Buses an operator-detail recording keeps: every customer's bus and the transformer's LV bus."""
    position = {b: i for i, b in enumerate(feeder.bus_ids())}
    return sorted({position[c.bus] for c in feeder.customers} | {position[feeder.transformer.lv_bus]})
