"""Builds a power-flow engine by name. The engines import the interface, never this module, so there is no circle."""

from __future__ import annotations

from typing import TYPE_CHECKING

from twin.errors import PowerFlowError
from twin.powerflow.interface import Engine, PowerFlow

if TYPE_CHECKING:
    from twin.network import Feeder

__all__ = ["create_powerflow"]


def create_powerflow(feeder: Feeder, *, engine: Engine) -> PowerFlow:
    """Build ``engine``'s network model of ``feeder`` once. Raises PowerFlowError if the engine cannot model it."""
    # Imported here so that the twin does not pay for pandapower's import (seconds) unless it uses it.
    if engine is Engine.PGM:
        from twin.powerflow.pgm import PgmPowerFlow

        return PgmPowerFlow(feeder)
    if engine is Engine.PANDAPOWER:
        from twin.powerflow.pandapower_3ph import PandapowerPowerFlow

        return PandapowerPowerFlow(feeder)
    raise PowerFlowError(f"unknown power-flow engine {engine!r}; expected one of {', '.join(e.value for e in Engine)}")
