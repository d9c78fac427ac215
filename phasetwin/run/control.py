"""The online controller of a run built from its scenario: what it sees of the feeder, its devices, its forecast."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from controllers.ltupf import build_network_model
from controllers.online.controller import OnlineController
from controllers.online.decision import ControlledDevice, FeederView
from controllers.online.feasibility import LtupfGuard
from controllers.online.forecast import Forecaster, PerfectForesight, Persistence, SameTimeYesterday, step_means
from controllers.online.problem import PessConnection
from controllers.online.settings import ControllerSettings, ForecastKind
from devices.agent import PvSource
from devices.fleet import DeviceSpec, FleetSpec, PessAccess
from phasetwin.run.scenario import Scenario
from streams.bus import Bus
from streams.messages import DeviceKind
from streams.meters.replay import MeterReplay
from twin.clock import TickClock
from twin.errors import ScenarioError
from twin.feeders import FeederEntry
from twin.network import Feeder
from twin.solar import tick_mean_kw_per_kwp

log = logging.getLogger(__name__)


def _view(feeder: Feeder) -> FeederView:
    return FeederView(name=feeder.name, customer_ids=tuple(c.id for c in feeder.customers),
                      feeder_of=tuple(c.feeder for c in feeder.customers),
                      connections=tuple(c.phases for c in feeder.customers),
                      v_ln_v=feeder.transformer.vn_lv_kv * 1e3 / 3**0.5,
                      lv_buses=tuple(i for i, b in enumerate(feeder.buses) if b.id != feeder.transformer.hv_bus))


_CONNECTION = {PessAccess.THREE: PessConnection.THREE_PHASE, PessAccess.SINGLE: PessConnection.SINGLE_PHASE,
               PessAccess.SWITCHABLE: PessConnection.SWITCHABLE}


def _controlled(specs: list[DeviceSpec], fleet: FleetSpec) -> list[ControlledDevice]:
    out = []
    for d in specs:
        if d.kind == DeviceKind.PESS:
            out.append(ControlledDevice(
                device_id=d.device_id, kind=d.kind, customer_id=d.customer_id, pess=fleet.pess_params,
                switch=fleet.sts_limits if d.access == PessAccess.SWITCHABLE else None,
                connection=_CONNECTION[d.access]))
        else:
            limits = fleet.psd_limits if d.kind == DeviceKind.PSD else fleet.sts_limits
            out.append(ControlledDevice(device_id=d.device_id, kind=d.kind, customer_id=d.customer_id,
                                        switch=limits))
    return out


def _forecaster(
    scenario: Scenario, meters: MeterReplay, clock: TickClock, controlled: list[ControlledDevice],
    pv_source: PvSource | None,
) -> Forecaster:
    """Series: every customer's three terminals, then each PESS's available PV."""
    n_series = meters.n_customers * 3 + sum(1 for d in controlled if d.kind == DeviceKind.PESS)
    ticks_per_step = scenario.controller.period_s // clock.tick_s
    kind = scenario.controller.forecast
    if kind is ForecastKind.PERSISTENCE:
        return Persistence(n_series=n_series)
    if kind is ForecastKind.SAME_TIME_YESTERDAY:
        return SameTimeYesterday(n_series=n_series, steps_per_day=86400 // scenario.controller.period_s)
    terminal, _ = meters.lookahead(0, clock.n_ticks)
    pv = np.array([[pv_source(d.device_id, k) if pv_source is not None else 0.0
                    for d in controlled if d.kind == DeviceKind.PESS] for k in range(clock.n_ticks)])
    data = np.concatenate([terminal.reshape(clock.n_ticks, -1), pv.reshape(clock.n_ticks, -1)], axis=1)
    whole = (clock.n_ticks // ticks_per_step) * ticks_per_step
    if whole == 0:  # a run shorter than one control period: no decision is ever due, no forecast is asked for
        return Persistence(n_series=n_series)
    return PerfectForesight(step_means(data[:whole], ticks_per_step))


def pess_pv_source(entry: FeederEntry, clock: TickClock, pv_kwp: dict[str, float],
                   site: tuple[float, float] | None = None, profile: Path | None = None) -> PvSource | None:
    """PV of each PESS per tick: ``profile`` (--pv-profile) if given, else clear sky at ``site`` (--site), else
    the feeder's own PV shape if it has one, else clear sky at the feeder's site."""
    if not pv_kwp:
        return None
    if profile is not None:
        from phasetwin.run.pv_profile import read_pv_profile

        per_kwp = read_pv_profile(profile, clock)
    elif site is not None:
        per_kwp = tick_mean_kw_per_kwp(pd.Timestamp(clock.start_utc), tick_s=clock.tick_s, n_ticks=clock.n_ticks,
                                       lat_deg=site[0], lon_deg=site[1])
    elif entry.pv_kw_per_kwp is not None:
        per_kwp = entry.pv_kw_per_kwp(pd.Timestamp(clock.start_utc), tick_s=clock.tick_s, n_ticks=clock.n_ticks)
    else:
        per_kwp = tick_mean_kw_per_kwp(pd.Timestamp(clock.start_utc), tick_s=clock.tick_s, n_ticks=clock.n_ticks,
                                       lat_deg=entry.lat_deg, lon_deg=entry.lon_deg)

    def pv_kw(device_id: str, tick: int) -> float:
        return float(per_kwp[tick] * pv_kwp[device_id])

    return pv_kw


def _capped(settings: ControllerSettings, threads: int | None) -> ControllerSettings:
    """``settings`` with the neighbourhood MILPs on at most ``threads`` threads (a study worker has one core); the
    plan is the same with any number."""
    solver = settings.solver
    if threads is None or solver.neighbourhood_threads <= threads:
        return settings
    return settings.model_copy(update={"solver": solver.model_copy(update={"neighbourhood_threads": threads})})


def build_controller(scenario: Scenario, *, bus: Bus, feeder: Feeder, specs: list[DeviceSpec], meters: MeterReplay,
                     clock: TickClock, pv_source: PvSource | None, threads: int | None) -> OnlineController:
    """The online controller of the run, with its LTUPF guard when the settings ask for one."""
    turned = [d.device_id for d in specs if d.kind == DeviceKind.STS and feeder.customer(d.customer_id).n_phases > 1]
    if turned:
        raise ScenarioError(f"the online controller moves single-phase loads only; {', '.join(turned)} sit(s) at "
                            "two-phase customers: replay them with a schedule and --controller none")
    controlled = _controlled(specs, scenario.fleet)
    guard = None
    if scenario.controller.ltupf_check:
        guard = LtupfGuard(network=build_network_model(feeder), limits=scenario.controller.limits,
                           search_time_s=scenario.controller.repair_time_limit_s if scenario.speed > 0 else None,
                           node_limit=scenario.controller.repair_node_limit,
                           network_rows=scenario.controller.repair_network_rows)
    return OnlineController(
        bus=bus, view=_view(feeder), devices=controlled, settings=_capped(scenario.controller, threads),
        forecaster=_forecaster(scenario, meters, clock, controlled, pv_source), tick_s=clock.tick_s,
        start_utc=clock.start_utc, n_ticks=clock.n_ticks, guard=guard,
        tick_loads=(lambda tick, n: meters.lookahead(tick, n)[0])
        if scenario.controller.forecast is ForecastKind.PERFECT else None, real_time=scenario.speed > 0,
        stale_after_ticks=max(1, math.ceil(scenario.stale_after_s / clock.tick_s)),
    )
