"""The non-convergence policy: states the fast engine cannot solve are retried by a ladder of fallbacks.

power-grid-model's default method (iterative current, 30 iterations) fails on a few heavily loaded states whose
solution exists: on the Liège year, three quarter-hours with voltages of 0.55-0.60 p.u. (2016-12-10 10:00,
2016-12-19 14:00 and 16:45 UTC) converge with 32 iterations, or with Newton-Raphson, and agree with pandapower
to 1e-5 p.u. ``FallbackPowerFlow`` solves a batch with the primary engine and retries only the states that did
not converge, rung by rung (behind the zbus engine, power-grid-model's default method comes first,
``power_grid_model``):

1. ``more_iterations``: the same engine and method with ``RETRY_MAX_ITERATIONS`` iterations;
2. ``newton_raphson``: power-grid-model's Newton-Raphson;
3. ``reference``: pandapower ``runpp_3ph``.

Each rung's engine is built the first time it is needed. The result says which rung solved each state
(``PowerFlowResult.fallbacks``); states no rung solves stay NaN and raise ``PowerFlowNotConverged`` as before.
What the twin then does with such a tick is ``DivergencePolicy`` (the grid role applies it).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING

import numpy as np

from twin.errors import PowerFlowError
from twin.powerflow.interface import (
    RESULT_ARRAYS,
    Engine,
    FallbackKind,
    PowerFlow,
    PowerFlowNotConverged,
    PowerFlowResult,
)

if TYPE_CHECKING:
    from twin.network import Feeder

log = logging.getLogger(__name__)

RETRY_MAX_ITERATIONS = 100
"""Iterations of the first retry: the hardest Liège state needs 32 with iterative current; failures cost little."""


class DivergencePolicy(StrEnum):
    """What a run does with a tick that no engine solves."""

    ABORT = "abort"
    """Stop the run with an error naming the tick."""
    SKIP = "skip"
    """Record the tick as missing (no grid state; NaN in the run folder), count it, keep running."""


@dataclasses.dataclass(frozen=True)
class Rung:
    """One fallback: its kind and how to build its engine (called once, on first use)."""

    kind: FallbackKind
    build: Callable[[], PowerFlow]


def default_rungs(feeder: Feeder, *, engine: Engine) -> list[Rung]:
    """The ladder behind ``engine``: more iterations, Newton-Raphson, then pandapower for power-grid-model;
    power-grid-model's own method first, then that ladder, for zbus; nothing behind pandapower, which is the
    reference itself."""
    if engine not in (Engine.PGM, Engine.ZBUS):
        return []
    from power_grid_model import CalculationMethod

    from twin.powerflow.pgm import DEFAULT_METHOD, PgmPowerFlow

    def reference() -> PowerFlow:
        from twin.powerflow.pandapower_3ph import PandapowerPowerFlow

        return PandapowerPowerFlow(feeder)

    first = [Rung(FallbackKind.POWER_GRID_MODEL, lambda: PgmPowerFlow(feeder))] if engine is Engine.ZBUS else []
    return [
        *first,
        Rung(FallbackKind.MORE_ITERATIONS,
             lambda: PgmPowerFlow(feeder, calculation_method=DEFAULT_METHOD, max_iterations=RETRY_MAX_ITERATIONS)),
        Rung(FallbackKind.NEWTON_RAPHSON,
             lambda: PgmPowerFlow(feeder, calculation_method=CalculationMethod.newton_raphson)),
        Rung(FallbackKind.REFERENCE, reference),
    ]


class FallbackPowerFlow:
    """A ``PowerFlow`` that retries the states its primary engine cannot solve (see the module docstring)."""

    def __init__(self, primary: PowerFlow, *, rungs: Sequence[Rung]) -> None:
        self.primary = primary
        self.engine = primary.engine
        self._rungs = list(rungs)
        self._built: dict[FallbackKind, PowerFlow | None] = {}

    def solve(self, *, p_kw: np.ndarray, q_kvar: np.ndarray, line_closed: np.ndarray | None = None) -> PowerFlowResult:
        """See ``twin.powerflow.PowerFlow.solve``; ``fallbacks`` of the result maps each state a rung solved to
        that rung. Raises PowerFlowNotConverged only for the states no rung solved."""
        try:
            return self.primary.solve(p_kw=p_kw, q_kvar=q_kvar, line_closed=line_closed)
        except PowerFlowNotConverged as err:
            first = err
        failed = list(first.failed_indices)
        arrays = {name: np.array(getattr(first.partial, name), copy=True) for name in RESULT_ARRAYS}
        solved_by: dict[int, FallbackKind] = {}
        for rung in self._rungs:
            if not failed:
                break
            engine = self._engine(rung)
            if engine is None:
                continue
            idx = np.asarray(failed)
            try:
                sub = engine.solve(p_kw=p_kw[idx], q_kvar=q_kvar[idx],
                                   line_closed=line_closed[idx] if line_closed is not None else None)
            except PowerFlowNotConverged as err:
                sub = err.partial
            for j in np.flatnonzero(sub.converged):
                i = failed[int(j)]
                for name, values in arrays.items():
                    values[i] = getattr(sub, name)[j]
                solved_by[i] = rung.kind
            failed = [failed[int(j)] for j in np.flatnonzero(~sub.converged)]
        result = PowerFlowResult(**arrays, fallbacks=solved_by)
        if failed:
            tried = ", ".join(r.kind.value for r in self._rungs) or "none"
            raise PowerFlowNotConverged(engine=self.engine, failed_indices=failed, partial=result,
                                        reason=f"no fallback solved them either (tried: {tried})")
        return result

    def _engine(self, rung: Rung) -> PowerFlow | None:
        if rung.kind not in self._built:
            try:
                self._built[rung.kind] = rung.build()
            except PowerFlowError as err:
                log.warning("power flow: fallback %s is not available for this feeder: %s", rung.kind.value, err)
                self._built[rung.kind] = None
        return self._built[rung.kind]
