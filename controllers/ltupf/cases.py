"""The paper's Case II on our feeders: every load on one phase doubled at a heavy moment, infeasible at the present
PSD positions, made feasible by Algorithm 1.

Liu et al. double all customer loads on one phase of their 77-customer feeder, which makes the NTUPF diverge,
and two PSD switches restore feasibility. Our feeders are stiffer (the IEEE European LV feeder at its heaviest
minute stays above 0.98 p.u.), so the case is chosen by a stated rule instead of a fixed moment:

- moments are scanned from the heaviest (total active load) down, ``n_moments`` of them;
- at each, the phase with the most load is scaled by the first factor of ``factors`` (2 = doubled; larger ones
  only when doubling violates nothing, and the case says so) that makes the NTUPF at the present positions
  violate a limit or diverge;
- the case is the first such moment where Algorithm 1 with the given switchable customers restores feasibility
  (confirmed by the NTUPF); every moment skipped is listed with the reason (feasible even scaled, or no PSD
  positions can fix it and why).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from controllers.errors import LtupfError
from controllers.ltupf.algorithm import AlgorithmOneResult, NtupfCheck, ntupf_check, restore_feasibility
from controllers.ltupf.fit import Linearisation
from twin.phase import Phase

if TYPE_CHECKING:
    from controllers.ltupf.model import OperatingLimits
    from controllers.ltupf.network import NetworkModel
    from controllers.ltupf.search import SearchOptions
    from twin.network import Feeder
    from twin.phasing import PhaseMap
    from twin.powerflow import PowerFlow

__all__ = ["CaseTwo", "case_two", "farthest_customers", "heaviest_moments", "scale_phase"]


def farthest_customers(feeder: Feeder, n: int, *, single_phase_only: bool = False) -> list[int]:
    """Indices (feeder order) of the ``n`` customers farthest from the transformer, farthest first; ties keep
    feeder order. Raises LtupfError when the feeder has fewer eligible customers."""
    eligible = [i for i, c in enumerate(feeder.customers) if c.n_phases == 1 or not single_phase_only]
    if len(eligible) < n:
        kind = "single-phase customers" if single_phase_only else "customers"
        raise LtupfError(f"feeder {feeder.name!r} has {len(eligible)} {kind}; expected at least {n}")
    return sorted(eligible, key=lambda i: (-feeder.customers[i].distance_km, i))[:n]


def heaviest_moments(p_kw: np.ndarray) -> np.ndarray:
    """Moments of per-network-phase loads [T, n_customers, 3] ordered by total active load, heaviest first."""
    return np.argsort(-p_kw.sum(axis=(1, 2)), kind="stable")


def scale_phase(
    terminal_p_kw: np.ndarray, terminal_q_kvar: np.ndarray, connections: PhaseMap, *, phase: Phase, factor: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per-terminal loads [n_customers, 3] with every terminal connected to ``phase`` scaled by ``factor``."""
    on_phase = np.zeros(terminal_p_kw.shape, dtype=bool)
    for i, conn in enumerate(connections.connections):
        for j, ph in enumerate(conn):
            on_phase[i, j] = ph == phase
    scale = np.where(on_phase, factor, 1.0)
    return terminal_p_kw * scale, terminal_q_kvar * scale


@dataclass(frozen=True)
class CaseTwo:
    """One Case II: the moment, the phase scaled and by how much, its loads, and Algorithm 1's answer."""

    moment: int
    phase: Phase
    factor: float
    terminal_p_kw: np.ndarray  # [n_customers, 3] scaled loads per terminal
    terminal_q_kvar: np.ndarray
    switchable: tuple[int, ...]
    initial: NtupfCheck
    algorithm: AlgorithmOneResult
    skipped: tuple[str, ...]  # why heavier moments were not taken


def case_two(
    powerflow: PowerFlow,
    network: NetworkModel,
    *,
    terminal_p_kw: np.ndarray,
    terminal_q_kvar: np.ndarray,
    connections: PhaseMap,
    switchable: Sequence[int],
    limits: OperatingLimits,
    customer_ids: Sequence[str] | None = None,
    factors: Sequence[float] = (2.0, 2.5, 3.0, 4.0),
    n_moments: int = 100,
    method: Linearisation = Linearisation.LSM,
    options: SearchOptions | None = None,
) -> CaseTwo:
    """Case II by the rule of the module docstring, from a series of per-terminal loads [T, n_customers, 3].

    Raises LtupfError (listing every moment tried and why it was skipped) when none of the ``n_moments``
    heaviest moments gives a case that Algorithm 1 restores.
    """
    per_phase_p = connections.to_phases(terminal_p_kw)
    skipped: list[str] = []
    for moment in heaviest_moments(per_phase_p)[:n_moments].tolist():
        phase = Phase(int(np.argmax(per_phase_p[moment].sum(axis=0))))
        for factor in factors:
            p, q = scale_phase(terminal_p_kw[moment], terminal_q_kvar[moment], connections, phase=phase,
                               factor=factor)
            initial = ntupf_check(powerflow, network, p_kw=connections.to_phases(p),
                                  q_kvar=connections.to_phases(q), limits=limits)
            if not initial.feasible:
                break
        else:
            skipped.append(f"moment {moment}: phase {phase.name} × {factors[-1]} still within limits")
            continue
        result = restore_feasibility(
            powerflow, network, terminal_p_kw=p, terminal_q_kvar=q, connections=connections, switchable=switchable,
            limits=limits, customer_ids=customer_ids, method=method, options=options,
        )
        if result.feasible:
            return CaseTwo(moment=moment, phase=phase, factor=factor, terminal_p_kw=p, terminal_q_kvar=q,
                           switchable=tuple(switchable), initial=initial, algorithm=result, skipped=tuple(skipped))
        why = result.searches[-1].reason if result.searches else result.outcome.value
        skipped.append(f"moment {moment}: phase {phase.name} × {factor}: {initial.summary()}; "
                       f"{result.outcome.value}: {why}")
    numbered = "\n".join(f"  {n}. {s}" for n, s in enumerate(skipped, start=1))
    raise LtupfError(f"no Case II among the {n_moments} heaviest moments:\n{numbered}")
