"""Builds a power-flow engine by name. The engines import the interface, never this module, so there is no circle."""

from __future__ import annotations

from typing import TYPE_CHECKING

from twin.errors import PowerFlowError
from twin.powerflow.interface import Engine, PowerFlow

if TYPE_CHECKING:
    from twin.network import Feeder

__all__ = ["create_powerflow"]


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
