"""The yearly re-phasing problem of Vassallo et al. (paper 000, eqs. 6-11) as arrays, per LV feeder.

For a customer c and a feasible configuration k, ``deviation_kw[o, t, φ]`` (o the flat option index of (c, k)) is
what c adds to A_φ,f,t − μ_f,t (eqs. 8-9) when it is on k: its terminal powers placed on the phases of k, minus
their mean. The deviation of a feeder is the sum over its customers' chosen options, so

    objective = Σ_f [ λP · Σ_t Σ_φ |Σ_c deviation_kw[o_c, t, φ]|  +  Σ_c changed_c · (λΨ + λD / dist_c) ]

which is eq. 6a with eq. 7 (P_unb), eq. 10 (Ψ_chg) and eq. 11 (D_wgt). Feeders share nothing but the weights,
so each is planned on its own and the objectives add up.

Weights default to what the authors' code sets: λP = 80 / (T·N), λΨ = 4 / N, λD = 1 / N with N the number of
customers of the network and T the number of steps (``RephaseWeights.paper``). Distances are in km, as the
feeder model holds them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from controllers.errors import PlanningError
from controllers.planning.configurations import CONFIGURATIONS, configuration_index, feasible_configurations
from streams.meters.table import MeterTable
from twin.network import Feeder
from twin.phase import Phase, connection_text

__all__ = [
    "FeederProblem",
    "ObjectiveParts",
    "RephaseProblem",
    "RephaseWeights",
    "build_problem",
]


class RephaseWeights(BaseModel):
    """λP per kW of P_unb per step, λΨ per change, λD per change and 1/km (eq. 6a)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    lambda_p: float = Field(ge=0, description="per kW of P_unb summed over steps (eq. 7)")
    lambda_psi: float = Field(ge=0, description="per configuration change (eq. 10)")
    lambda_d: float = Field(ge=0, description="per change, times 1/distance in km (eq. 11)")

    @classmethod
    def paper(cls, *, n_customers: int, n_steps: int, p_scale: float = 80.0, psi_scale: float = 4.0,
              d_scale: float = 1.0) -> RephaseWeights:
        """The authors' weights: λP = p_scale/(T·N), λΨ = psi_scale/N, λD = d_scale/N."""
        if n_customers < 1 or n_steps < 1:
            raise PlanningError(f"weights need n_customers >= 1 and n_steps >= 1, got {n_customers}, {n_steps}")
        return cls(lambda_p=p_scale / (n_steps * n_customers), lambda_psi=psi_scale / n_customers,
                   lambda_d=d_scale / n_customers)


@dataclass(frozen=True)
class ObjectiveParts:
    """The terms of eq. 6a for one feeder (or summed over feeders)."""

    p_unb_kw: float
    """Σ_t Σ_φ |A − μ| (eq. 7), kW summed over steps."""
    changes: int
    """Ψ_chg (eq. 10)."""
    inverse_distance_per_km: float
    """D_wgt (eq. 11): Σ over changed customers of 1/dist."""
    objective: float

    def __add__(self, other: ObjectiveParts) -> ObjectiveParts:
        return ObjectiveParts(self.p_unb_kw + other.p_unb_kw, self.changes + other.changes,
                              self.inverse_distance_per_km + other.inverse_distance_per_km,
                              self.objective + other.objective)


@dataclass(frozen=True)
class FeederProblem:
    """One LV feeder's customers, their options and what each option adds to the feeder's phase deviation.

    A *choice* is an int array [n_customers]: the position of the chosen configuration in ``options[i]``.
    """

    feeder: int
    customer_ids: tuple[str, ...]
    options: tuple[tuple[int, ...], ...]
    """Per customer, indices into CONFIGURATIONS of its feasible configurations."""
    initial: np.ndarray
    """[n_customers] choice of the initial configurations."""
    offsets: np.ndarray
    """[n_customers] flat option index of each customer's first option."""
    deviation_kw: np.ndarray
    """[n_options, T, 3] what each option adds to A_φ,f,t − μ_f,t, kW."""
    change_cost: np.ndarray
    """[n_options] λΨ + λD/dist for every option but the initial one, which costs 0."""
    inverse_distance_per_km: np.ndarray
    """[n_customers] 1/dist."""
    lambda_p: float

    @property
    def n_customers(self) -> int:
        return len(self.customer_ids)

    @property
    def n_options(self) -> int:
        return int(self.deviation_kw.shape[0])

    @property
    def n_steps(self) -> int:
        return int(self.deviation_kw.shape[1])

    @property
    def n_choices(self) -> int:
        """How many assignments exist (the size of the search space)."""
        return int(np.prod([len(o) for o in self.options], dtype=float))

    def flat(self, choice: np.ndarray) -> np.ndarray:
        """Flat option indices of a choice."""
        return self.offsets + np.asarray(choice, dtype=np.int64)

    def deviation_of(self, choice: np.ndarray) -> np.ndarray:
        """[T, 3] A_φ,f,t − μ_f,t of the feeder under ``choice``."""
        return np.asarray(self.deviation_kw[self.flat(choice)].sum(axis=0))

    def parts(self, choice: np.ndarray) -> ObjectiveParts:
        """Every term of eq. 6a for ``choice``, evaluated over all steps."""
        p_unb = float(np.abs(self.deviation_of(choice)).sum())
        changed = np.asarray(choice) != self.initial
        return ObjectiveParts(
            p_unb_kw=p_unb,
            changes=int(changed.sum()),
            inverse_distance_per_km=float(self.inverse_distance_per_km[changed].sum()),
            objective=self.lambda_p * p_unb + float(self.change_cost[self.flat(choice)].sum()),
        )

    def objective(self, choice: np.ndarray) -> float:
        return self.parts(choice).objective

    def configurations(self, choice: np.ndarray) -> dict[str, tuple[Phase, ...]]:
        """Customer id -> chosen configuration."""
        return {cid: CONFIGURATIONS[self.options[i][int(k)]] for i, (cid, k) in
                enumerate(zip(self.customer_ids, choice, strict=True))}

    def choice_of(self, configs: dict[str, tuple[Phase, ...]]) -> np.ndarray:
        """The choice that puts every customer on ``configs[id]`` (customers not named keep their initial one).

        Raises PlanningError naming every configuration a customer cannot take.
        """
        choice = self.initial.copy()
        problems = []
        for i, cid in enumerate(self.customer_ids):
            if cid not in configs:
                continue
            k = configuration_index(configs[cid])
            if k not in self.options[i]:
                problems.append(f"customer {cid!r} cannot take {connection_text(configs[cid])!r} (it has "
                                f"{len(CONFIGURATIONS[self.options[i][0]])} phase(s))")
            else:
                choice[i] = self.options[i].index(k)
        if problems:
            raise PlanningError("invalid configuration(s): " + "; ".join(problems))
        return choice


@dataclass(frozen=True)
class RephaseProblem:
    """The whole network: one FeederProblem per LV feeder, over the same steps."""

    feeder_name: str
    feeders: tuple[FeederProblem, ...]
    weights: RephaseWeights
    time_utc: pd.DatetimeIndex
    step_s: int

    @property
    def n_steps(self) -> int:
        return len(self.time_utc)

    def initial_choices(self) -> list[np.ndarray]:
        return [fp.initial.copy() for fp in self.feeders]

    def parts(self, choices: list[np.ndarray]) -> ObjectiveParts:
        total = ObjectiveParts(0.0, 0, 0.0, 0.0)
        for fp, choice in zip(self.feeders, choices, strict=True):
            total = total + fp.parts(choice)
        return total

    def configurations(self, choices: list[np.ndarray]) -> dict[str, tuple[Phase, ...]]:
        out: dict[str, tuple[Phase, ...]] = {}
        for fp, choice in zip(self.feeders, choices, strict=True):
            out.update(fp.configurations(choice))
        return out


def _phase_loads(terminal_kw: np.ndarray, config: tuple[Phase, ...]) -> np.ndarray:
    """[T, 3] terminal powers -> [T, 3] phase loads with terminal j on phase config[j]."""
    out = np.zeros_like(terminal_kw)
    for j, phase in enumerate(config):
        out[:, phase] = terminal_kw[:, j]
    return out


def build_problem(feeder: Feeder, table: MeterTable, *, weights: RephaseWeights | None = None,
                  steps: np.ndarray | slice | None = None) -> RephaseProblem:
    """The re-phasing problem of ``feeder`` over ``steps`` of ``table`` (all steps when None).

    ``table`` holds per-terminal data (``MeterTable``): terminal j of a customer is the j-th phase of its
    *initial* connection, which is the feeder's current one. Weights default to ``RephaseWeights.paper`` with N
    the feeder's customers and T the chosen steps.
    Raises PlanningError listing customers without data, without a positive distance, or with data that are
    not finite.
    """
    ids = [c.id for c in feeder.customers]
    missing = [c for c in ids if c not in table.customer_ids]
    problems = [f"customer {c!r} has no meter data" for c in missing]
    problems += [f"customer {c.id!r} has distance_km {c.distance_km}; eq. 11 needs a positive distance"
                 for c in feeder.customers if not c.distance_km > 0]
    if problems:
        raise PlanningError(f"cannot plan re-phasing of {feeder.name!r}: " + "; ".join(problems))
    data = table.select(ids)
    index = np.arange(data.n_steps)[steps if steps is not None else slice(None)]
    if index.size == 0:
        raise PlanningError(f"cannot plan re-phasing of {feeder.name!r}: the chosen period has no steps")
    p_kw = data.p_kw[index]
    if not np.isfinite(p_kw).all():
        raise PlanningError(f"cannot plan re-phasing of {feeder.name!r}: meter data have NaN in the period")
    weights = weights or RephaseWeights.paper(n_customers=len(ids), n_steps=int(index.size))
    feeders = []
    for f in feeder.feeder_ids():
        members = [i for i, c in enumerate(feeder.customers) if c.feeder == f]
        options: list[tuple[int, ...]] = []
        initial: list[int] = []
        offsets: list[int] = []
        deviations: list[np.ndarray] = []
        costs: list[float] = []
        inv_dist: list[float] = []
        for i in members:
            c = feeder.customers[i]
            opts = feasible_configurations(c.n_phases)
            start = configuration_index(c.phases)
            offsets.append(sum(len(o) for o in options))
            options.append(opts)
            initial.append(opts.index(start))
            inv_dist.append(1.0 / c.distance_km)
            for k in opts:
                loads = _phase_loads(p_kw[:, i, :], CONFIGURATIONS[k])
                deviations.append(loads - loads.mean(axis=1, keepdims=True))
                costs.append(0.0 if k == start else weights.lambda_psi + weights.lambda_d / c.distance_km)
        feeders.append(FeederProblem(
            feeder=f,
            customer_ids=tuple(feeder.customers[i].id for i in members),
            options=tuple(options),
            initial=np.array(initial, dtype=np.int64),
            offsets=np.array(offsets, dtype=np.int64),
            deviation_kw=np.stack(deviations),
            change_cost=np.array(costs),
            inverse_distance_per_km=np.array(inv_dist),
            lambda_p=weights.lambda_p,
        ))
    return RephaseProblem(feeder_name=feeder.name, feeders=tuple(feeders), weights=weights,
                          time_utc=data.time_utc[index], step_s=data.step_s)
