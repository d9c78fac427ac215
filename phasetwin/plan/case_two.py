"""Paper 001's Case II as the paper runs it, on the Liège year: a doubled-load moment where the nonlinear power
flow diverges, two PSD customers, and the repair with the fewest switches.

Liu et al. double every load on one phase of their feeder so that the NTUPF does not converge, and two PSD
switches restore a feasible state. Here:

1. every quarter-hour of the data is solved (power-grid-model, one batch) with the loads on its most loaded
   network phase doubled; the moments whose power flow diverges are the candidates, lightest (total active
   load) first: the heaviest ones are beyond what two PSDs can repair (measured: none of the 60 heaviest is);
   a candidate must diverge with pandapower too (power-grid-model alone diverges at moments where pandapower's
   Newton-Raphson converges, far below 0.9 p.u.: those are counted and skipped);
2. the PSDs are at the ``n_psd`` single-phase customers farthest from the transformer (a stated rule: the paper
   does not say where its two PSDs are);
3. at each candidate, every position of the PSD customers is solved with the NTUPF (3ⁿ states). As in the
   paper's Case II, *repaired* means the power flow converges again; the limits it still violates are reported
   (the Liège feeders, doubled, stay far outside the ±10 % band: measured, 20 or more violations at every
   converging position of the case). The exhaustive answer gives the fewest switches any repair needs (ties
   broken by fewer violations, then the highest minimum voltage);
4. Algorithm 1 (``controllers.ltupf.restore_feasibility``: LTUPF positions confirmed by the NTUPF, within the
   limits) runs with the PSDs switchable and its outcome is reported beside the exhaustive answer;
5. the case is the first candidate the exhaustive search can repair; the others are counted by reason.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from controllers.ltupf import (
    NetworkModel,
    OperatingLimits,
    build_network_model,
    farthest_customers,
    ntupf_check,
    restore_feasibility,
)
from controllers.ltupf.algorithm import AlgorithmOneResult, NtupfCheck
from streams.meters.table import MeterTable
from twin.network import Feeder
from twin.phase import Phase
from twin.phasing import PhaseMap
from twin.powerflow import Engine, PowerFlow, PowerFlowNotConverged, create_powerflow

__all__ = ["PaperCaseTwo", "divergent_doubled_moments", "paper_case_two"]


@dataclass(frozen=True)
class PaperCaseTwo:
    moment: int
    phase: Phase
    n_divergent: int
    """Moments of the data whose power flow diverges with their most loaded phase doubled."""
    psd_ids: tuple[str, ...]
    initial: NtupfCheck
    converging_positions: int
    """Positions of the PSD customers (of 3ⁿ) at which the NTUPF converges."""
    repair: tuple[str, ...]
    """The repair: fewest switches, then fewest violations, then highest minimum voltage (``id: from → to``)."""
    repair_check: NtupfCheck
    repair_confirmed: NtupfCheck
    """The repair solved by pandapower."""
    algorithm: AlgorithmOneResult
    skipped: dict[str, int]

    @property
    def fewest_switches(self) -> int:
        return len(self.repair)


def _doubled(terminal_p: np.ndarray, terminal_q: np.ndarray, mapping: PhaseMap) -> tuple[np.ndarray, ...]:
    """Per-phase loads [T, n, 3] with the most loaded network phase of each moment doubled, and that phase."""
    p, q = mapping.to_phases(terminal_p), mapping.to_phases(terminal_q)
    phase = np.argmax(p.sum(axis=1), axis=1)
    factor = np.ones((p.shape[0], 1, 3))
    factor[np.arange(p.shape[0]), 0, phase] = 2.0
    return p * factor, q * factor, phase


def divergent_doubled_moments(feeder: Feeder, data: MeterTable, *, engine: Engine = Engine.PGM
                              ) -> tuple[np.ndarray, np.ndarray]:
    """(moments, doubled phase) of every quarter-hour whose power flow diverges with its most loaded phase
    doubled, lightest (total active load) first."""
    data = data.select([c.id for c in feeder.customers])
    mapping = PhaseMap.initial(feeder.customers)
    p, q, phase = _doubled(data.p_kw, data.q_kvar, mapping)
    try:
        create_powerflow(feeder, engine=engine).solve(p_kw=p, q_kvar=q)
        failed = np.zeros(0, dtype=int)
    except PowerFlowNotConverged as err:
        failed = np.asarray(sorted(err.failed_indices), dtype=int)
    order = np.argsort(p[failed].sum(axis=(1, 2)), kind="stable")
    return failed[order], phase[failed[order]]


def _check(pf: PowerFlow, net: NetworkModel, mapping: PhaseMap, p: np.ndarray, q: np.ndarray,
           limits: OperatingLimits) -> NtupfCheck:
    return ntupf_check(pf, net, p_kw=mapping.to_phases(p), q_kvar=mapping.to_phases(q), limits=limits)


def _min_vm(check: NtupfCheck, net: NetworkModel) -> float:
    return float(check.result.vm_pu[0, net.bus_positions].min()) if check.result is not None else -np.inf


def paper_case_two(feeder: Feeder, data: MeterTable, *, n_psd: int = 2, limits: OperatingLimits | None = None,
                   max_candidates: int = 300) -> PaperCaseTwo:
    """The case by the rule of the module docstring. Raises ValueError when no divergent doubled moment exists
    or none of the first ``max_candidates`` can be repaired by the PSDs (the reasons are counted in the message).
    """
    limits = limits or OperatingLimits()
    data = data.select([c.id for c in feeder.customers])
    ids = [c.id for c in feeder.customers]
    mapping = PhaseMap.initial(feeder.customers)
    moments, phases = divergent_doubled_moments(feeder, data)
    if moments.size == 0:
        raise ValueError(f"feeder {feeder.name!r}: no moment diverges with its most loaded phase doubled")
    psd = farthest_customers(feeder, n_psd, single_phase_only=True)
    pf = create_powerflow(feeder, engine=Engine.PGM)
    reference = create_powerflow(feeder, engine=Engine.PANDAPOWER)
    net = build_network_model(feeder)
    skipped: dict[str, int] = {}
    for moment, ph in zip(moments[:max_candidates].tolist(), phases[:max_candidates].tolist(), strict=True):
        scale = np.where(np.array([[p == ph for p in conn] + [False] * (3 - len(conn))
                                   for conn in mapping.connections]), 2.0, 1.0)
        p, q = data.p_kw[moment] * scale, data.q_kvar[moment] * scale
        initial = _check(pf, net, mapping, p, q, limits)
        if initial.converged:  # the single-state solve converged where the batch did not: not a divergent case
            skipped["converges when solved alone"] = skipped.get("converges when solved alone", 0) + 1
            continue
        if _check(reference, net, mapping, p, q, limits).converged:
            skipped["converges with pandapower (a power-grid-model divergence only)"] = (
                skipped.get("converges with pandapower (a power-grid-model divergence only)", 0) + 1)
            continue
        converging: list[tuple[int, int, float, PhaseMap, NtupfCheck]] = []
        for combo in itertools.product(tuple(Phase), repeat=len(psd)):
            trial = mapping
            for i, phase in zip(psd, combo, strict=True):
                trial = trial.with_connection(i, (phase,))
            check = _check(pf, net, trial, p, q, limits)
            if check.converged:
                moved = sum(trial.connections[i] != mapping.connections[i] for i in psd)
                converging.append((moved, len(check.violations), -_min_vm(check, net), trial, check))
        if not converging:
            skipped["no PSD position makes it converge (exhaustive)"] = (
                skipped.get("no PSD position makes it converge (exhaustive)", 0) + 1)
            continue
        _, _, _, best, best_check = min(converging, key=lambda c: c[:3])
        confirmed = _check(reference, net, best, p, q, limits)
        algo = restore_feasibility(pf, net, terminal_p_kw=p, terminal_q_kvar=q, connections=mapping,
                                   switchable=psd, limits=limits, customer_ids=ids)
        repair = tuple(f"{ids[i]}: {''.join(x.name for x in mapping.connections[i])} → "
                       f"{''.join(x.name for x in best.connections[i])}" for i in psd
                       if best.connections[i] != mapping.connections[i])
        return PaperCaseTwo(moment=int(moment), phase=Phase(int(ph)), n_divergent=int(moments.size),
                            psd_ids=tuple(ids[i] for i in psd), initial=initial,
                            converging_positions=len(converging), repair=repair, repair_check=best_check,
                            repair_confirmed=confirmed,
                            algorithm=algo, skipped=skipped)
    tried = min(max_candidates, moments.size)
    raise ValueError(f"feeder {feeder.name!r}: {moments.size} divergent doubled moments, none of the first {tried} "
                     f"made to converge by PSDs at {[ids[i] for i in psd]}: {skipped}")
