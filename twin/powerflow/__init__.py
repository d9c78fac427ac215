"""Three-phase unbalanced power flow: the interface (``interface``), the engines (``zbus``, the default for
radial feeders with one source; ``pgm``, the general one and the first fallback; ``pandapower_3ph``, the
reference) and the factory that builds one by name (``factory``).

The engines import ``interface`` only; this package re-exports the public names so that callers write
``from twin.powerflow import Engine, create_powerflow``.
"""

from __future__ import annotations

from twin.powerflow.factory import build_engine, create_powerflow, engine_summary
from twin.powerflow.fallback import DivergencePolicy, FallbackPowerFlow, default_rungs
from twin.powerflow.interface import (
    RESULT_ARRAYS,
    DeferredArrays,
    Engine,
    FallbackKind,
    PowerFlow,
    PowerFlowNotConverged,
    PowerFlowResult,
    check_line_states,
    check_loads,
    source_impedance_ohm,
)

__all__ = [
    "RESULT_ARRAYS",
    "DeferredArrays",
    "DivergencePolicy",
    "Engine",
    "FallbackKind",
    "FallbackPowerFlow",
    "PowerFlow",
    "PowerFlowNotConverged",
    "PowerFlowResult",
    "build_engine",
    "check_line_states",
    "check_loads",
    "create_powerflow",
    "default_rungs",
    "engine_summary",
    "source_impedance_ohm",
]
