"""Builds a power-flow engine by name. The engines import the interface, never this module, so there is no circle."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from twin.errors import PowerFlowError
from twin.powerflow.interface import Engine, PowerFlow

if TYPE_CHECKING:
    from twin.network import Feeder

__all__ = ["build_engine", "create_powerflow", "engine_summary"]

log = logging.getLogger(__name__)


def create_powerflow(feeder: Feeder, *, engine: Engine, threads: int | None = None) -> PowerFlow:
    """Build ``engine``'s network model of ``feeder`` once. Raises PowerFlowError if the engine cannot model it.

    ``threads``: power-grid-model's batch threads (None: one per hardware thread; 1: sequential), for several
    twins sharing a machine (a study's workers). Results do not depend on it; pandapower and zbus
    ignore it."""
    # Imported here so that the twin does not pay for pandapower's import (seconds) unless it uses it.
    if engine is Engine.PGM:
        from twin.powerflow.pgm import DEFAULT_THREADING, PgmPowerFlow

        threading = DEFAULT_THREADING if threads is None else (-1 if threads <= 1 else threads)
        return PgmPowerFlow(feeder, threading=threading)
    if engine is Engine.ZBUS:
        from twin.powerflow.zbus import ZbusPowerFlow

        return ZbusPowerFlow(feeder)
    if engine is Engine.PANDAPOWER:
        from twin.powerflow.pandapower_3ph import PandapowerPowerFlow

        return PandapowerPowerFlow(feeder)
    raise PowerFlowError(f"unknown power-flow engine {engine!r}; expected one of {', '.join(e.value for e in Engine)}")


def build_engine(feeder: Feeder, *, engine: Engine, threads: int | None = None) -> tuple[PowerFlow, str]:
    """``engine``'s model of ``feeder`` and a note for the run's summary. ``Engine.ZBUS`` (the default) needs a
    radial feeder fed by one Dyn or YNyn transformer from one source; on any other feeder this builds
    power-grid-model instead, logs why and returns the reason as the note (empty when ``engine`` was built)."""
    if engine is not Engine.ZBUS:
        return create_powerflow(feeder, engine=engine, threads=threads), ""
    try:
        return create_powerflow(feeder, engine=engine, threads=threads), ""
    except PowerFlowError as err:
        note = f"zbus not used, {Engine.PGM.value} instead: {err}"
        log.warning("power flow: %s", note)
        return create_powerflow(feeder, engine=Engine.PGM, threads=threads), note


def engine_summary(engine: PowerFlow, *, note: str) -> dict[str, object]:
    """What a run's summary says about its primary engine: which it is, why (when it is not the one asked for),
    and how many times it rebuilt its network model after the first build (a new set of closed lines)."""
    return {"engine": str(engine.engine), "engine_note": note, "rebuilds": int(getattr(engine, "rebuilds", 0))}
