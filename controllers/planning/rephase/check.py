"""Before/after check of a re-phasing plan with the nonlinear three-phase power flow (the paper's Table III).

For each LV feeder and phase: the highest and lowest bus voltage over the period and the line losses. Line
losses are I²R over the feeder's lines, split per phase conductor as R1·|I_φ|² and a neutral part
(R0 − R1)/3·|I_A + I_B + I_C|²: for a line with sequence impedances this sum is exactly Re(Iᴴ Z I), the
active power the line dissipates (shunt capacitance aside), and the split attributes the phase-coupling term to
the return path. Energies are kWh over the period (kW summed over steps × step length).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from controllers.errors import PlanningError
from streams.meters.table import MeterTable
from twin.network import Feeder
from twin.phase import Phase
from twin.phasing import PhaseMap
from twin.powerflow import Engine, PowerFlow, create_powerflow

__all__ = ["FeederCheck", "PowerFlowCheck", "check_plan", "feeder_of_branch"]


@dataclass(frozen=True)
class FeederCheck:
    """One LV feeder, one state of the plan (before or after); arrays per phase A, B, C."""

    feeder: int
    vm_max_pu: np.ndarray
    vm_min_pu: np.ndarray
    phase_loss_kwh: np.ndarray
    neutral_loss_kwh: float

    @property
    def line_loss_kwh(self) -> float:
        return float(self.phase_loss_kwh.sum() + self.neutral_loss_kwh)


@dataclass(frozen=True)
class PowerFlowCheck:
    before: tuple[FeederCheck, ...]
    after: tuple[FeederCheck, ...]
    n_steps: int
    engine: Engine

    def rows(self) -> list[dict[str, float | int | str]]:
        """Table III as rows: feeder, phase, v max/min before/after, phase-conductor losses before/after."""
        out: list[dict[str, float | int | str]] = []
        for b, a in zip(self.before, self.after, strict=True):
            for p in Phase:
                out.append({"feeder": b.feeder, "phase": p.name,
                            "vm_max_before_pu": float(b.vm_max_pu[p]), "vm_max_after_pu": float(a.vm_max_pu[p]),
                            "vm_min_before_pu": float(b.vm_min_pu[p]), "vm_min_after_pu": float(a.vm_min_pu[p]),
                            "loss_before_kwh": float(b.phase_loss_kwh[p]),
                            "loss_after_kwh": float(a.phase_loss_kwh[p])})
            out.append({"feeder": b.feeder, "phase": "N", "loss_before_kwh": b.neutral_loss_kwh,
                        "loss_after_kwh": a.neutral_loss_kwh})
        return out


def feeder_of_branch(feeder: Feeder) -> dict[int, int]:
    """The customers' feeder label of each branch of the radial tree (``tree.branch_of`` numbers the root's
    lines in search order, which need not follow the feeder labels of the data).

    Raises PlanningError when one branch holds customers of two feeders.
    """
    tree = feeder.tree()
    out: dict[int, int] = {}
    for c in feeder.customers:
        branch = tree.branch_of.get(c.bus)
        if branch is None:
            continue
        if out.setdefault(branch, c.feeder) != c.feeder:
            raise PlanningError(f"customer {c.id!r}: feeder {c.feeder} shares branch {branch} of the radial tree "
                                f"with feeder {out[branch]}; expected one feeder per branch")
    return out


def _state(pf: PowerFlow, feeder: Feeder, data: MeterTable, steps: np.ndarray,
           connections: list[tuple[Phase, ...]], batch: int) -> tuple[FeederCheck, ...]:
    tree = feeder.tree()
    label = feeder_of_branch(feeder)
    bus_branch = np.array([label.get(tree.branch_of.get(b.id, -1), -1) for b in feeder.buses])
    line_branch = np.array([label.get(tree.branch_of.get(ln.to_bus, -1), -1) for ln in feeder.lines])
    r1_ohm = np.array([ln.r1_ohm_per_km * ln.length_km for ln in feeder.lines])
    rn_ohm = np.array([(ln.r0_ohm_per_km - ln.r1_ohm_per_km) / 3.0 * ln.length_km for ln in feeder.lines])
    ids = feeder.feeder_ids()
    vmax = np.full((len(ids), 3), -np.inf)
    vmin = np.full((len(ids), 3), np.inf)
    phase_kw = np.zeros((len(ids), 3))
    neutral_kw = np.zeros(len(ids))
    mapping = PhaseMap.of(connections)
    for start in range(0, steps.size, batch):
        rows = steps[start:start + batch]
        res = pf.solve(p_kw=mapping.to_phases(data.p_kw[rows]), q_kvar=mapping.to_phases(data.q_kvar[rows]))
        # kA² · Ω = MW; × 1e3 for kW.
        line_phase_kw = res.i_ka**2 * r1_ohm[None, :, None] * 1e3
        line_neutral_kw = res.i_n_ka**2 * rn_ohm[None, :] * 1e3
        for k, f in enumerate(ids):
            buses, lines = bus_branch == f, line_branch == f
            vmax[k] = np.maximum(vmax[k], res.vm_pu[:, buses, :].max(axis=(0, 1)))
            vmin[k] = np.minimum(vmin[k], res.vm_pu[:, buses, :].min(axis=(0, 1)))
            phase_kw[k] += line_phase_kw[:, lines, :].sum(axis=(0, 1))
            neutral_kw[k] += float(line_neutral_kw[:, lines].sum())
    hours = data.step_s / 3600.0
    return tuple(FeederCheck(f, vmax[k], vmin[k], phase_kw[k] * hours, neutral_kw[k] * hours)
                 for k, f in enumerate(ids))


def check_plan(feeder: Feeder, data: MeterTable, *, after: dict[str, tuple[Phase, ...]],
               steps: np.ndarray | None = None, engine: Engine = Engine.PGM, batch: int = 2048) -> PowerFlowCheck:
    """Solve the power flow of every chosen step before (the feeder's connections) and after the plan.

    ``data`` are per-terminal (MeterTable) in any customer order; ``steps`` index its rows (all when None).
    Raises what the power flow raises (PowerFlowError, PowerFlowNotConverged).
    """
    data = data.select([c.id for c in feeder.customers])
    steps = np.arange(data.n_steps) if steps is None else np.asarray(steps)
    pf = create_powerflow(feeder, engine=engine)
    before = [c.phases for c in feeder.customers]
    planned = [tuple(after.get(c.id, c.phases)) for c in feeder.customers]
    return PowerFlowCheck(before=_state(pf, feeder, data, steps, before, batch),
                          after=_state(pf, feeder, data, steps, planned, batch),
                          n_steps=int(steps.size), engine=engine)
