"""What an STS siting study is: a radial feeder, its daily loads, the candidate STS sites, a PESS, and the prices.

Conventions: bus 0 is the source (the distribution transformer of the paper's bus 1); every other bus b is fed by
exactly one branch, indexed by b (its parent ``parent[b]``). Powers are kW/kvar per phase, load-positive; a
candidate's base connection is its load per phase; rotation r ∈ {0, 1, 2} moves phase φ's load to phase φ + r
(A→B→C→A), which is what an STS does to a single-phase (or line-to-line) load.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from devices.limits import sts_limits


class SitingError(Exception):
    """Base error of the siting package: a bad case, or a solve that found no plan."""


class CandidateKind(StrEnum):
    LOAD = "load"
    PESS = "pess"


class Scenario(StrEnum):
    """The paper's scenarios (§7.1)."""

    S1 = "S1"  # no governance
    S2 = "S2"  # manual phase change: one fixed phase per single-phase load for the day, no devices
    S3 = "S3"  # STS only (PV may be curtailed, the battery stays idle)
    S4 = "S4"  # STS + PESS


@dataclass(frozen=True)
class Candidate:
    """A bus where an STS may be installed: a single-phase load, or the PESS's single-phase access (eq. 6)."""

    bus: int
    kind: CandidateKind
    p_kw: np.ndarray  # [T, 3] base connection (PESS: zeros, its injection is a decision)
    q_kvar: np.ndarray  # [T, 3]
    current_a: float  # I_STS,u of eqs. 2 and 7: the largest current the STS would carry


@dataclass(frozen=True)
class PessSpec:
    """PV + battery at one bus, single-phase access on ``home_phase`` unless an STS sits there (eqs. 23–36)."""

    bus: int
    pv_kw: np.ndarray  # [T] available PV
    energy_kwh: float
    e_min_kwh: float
    e_initial_kwh: float
    charge_max_kw: float
    discharge_max_kw: float
    eta_charge: float
    eta_discharge: float
    inverter_kva: float
    home_phase: int = 0
    pv_kwp: float | None = None  # PV rating (pv_kw = pv_kwp × a per-kWp shape); None = the largest pv_kw
    # Q_CC^max of eqs. 28–29: reactive power the inverter may inject (+) or absorb (−) on the phase it is connected
    # to, within its apparent-power limit; only where the PESS takes part in the governance (S4). 0: unity pf.
    q_max_kvar: float = 0.0


@dataclass(frozen=True)
class SitingNetwork:
    """A radial feeder: ``parent[b]`` feeds bus b through branch b; impedances per phase in Ω at b's voltage."""

    bus_names: tuple[str, ...]
    parent: np.ndarray  # [n] int, parent[0] = -1
    z_ohm: np.ndarray  # [n, 3] complex, row 0 unused
    v_ln_kv: np.ndarray  # [n] nominal phase-to-neutral voltage of each bus

    @property
    def n_bus(self) -> int:
        return len(self.bus_names)

    def subtree(self) -> np.ndarray:
        """[n, n] bool: ``sub[e, b]`` is True when bus b is fed through branch e (b in e's subtree, e included)."""
        n = self.n_bus
        sub = np.zeros((n, n), dtype=bool)
        for b in range(n):
            a = b
            while a > 0:
                sub[a, b] = True
                a = int(self.parent[a])
        return sub

    def path(self) -> np.ndarray:
        """[n, n] bool: ``path[b, e]`` is True when branch e lies between the source and bus b."""
        return self.subtree().T.copy()


@dataclass(frozen=True)
class SitingCase:
    network: SitingNetwork
    fixed_p_kw: np.ndarray  # [T, n, 3] loads that no STS can move
    fixed_q_kvar: np.ndarray  # [T, n, 3]
    candidates: tuple[Candidate, ...]
    pess: PessSpec | None
    period_h: float = 1.0
    v_source_pu: float = 1.0
    v_min_pu: float = 0.9
    v_max_pu: float = 1.1
    head_branch: int = 1
    name: str = "case"
    notes: tuple[str, ...] = field(default_factory=tuple)
    # The branches l whose unbalance κ_l enters S_cub (eq. 3, "unbalance of distribution branches"); each is
    # weighted by its share of the head's current (see ``evaluation``). Empty: the head branch alone.
    unbalance_branches: tuple[int, ...] = ()
    # How each branch's unbalanced current is normalised (eq. 9): "head" divides it by the head's reference total
    # Σ|I_X| (a lateral counts by its share of the head's current); "branch" by the branch's own reference total,
    # as eq. 9 is written (κ_l of every branch in [0, 2], each branch counting alike).
    kappa_reference: str = "head"

    @property
    def n_steps(self) -> int:
        return int(self.fixed_p_kw.shape[0])

    @property
    def kappa_branches(self) -> tuple[int, ...]:
        return self.unbalance_branches or (self.head_branch,)


def governed_branches(network: SitingNetwork, fixed_p_kw: np.ndarray,
                      candidate_buses: Iterable[int]) -> tuple[int, ...]:
    """The branches whose unbalance the STS can change: they feed at least one candidate and at least one other
    load (a second candidate or a fixed load); a branch feeding a single candidate has the same κ whatever its
    phase (a lone single-phase load is always fully unbalanced)."""
    sub = network.subtree()
    cands = list(candidate_buses)
    loaded = np.abs(fixed_p_kw).sum(axis=(0, 2)) > 0
    out = []
    for e in range(1, network.n_bus):
        n_cand = sum(1 for b in cands if sub[e, b])
        if n_cand >= 2 or (n_cand == 1 and bool((sub[e] & loaded).any())):
            out.append(e)
    return tuple(out)


_SITING = ConfigDict(frozen=True, extra="forbid")


class CostParams(BaseModel):
    """Prices of the upper level (eqs. 1–5); money in yuan, S_IN per day (eq. 2 annualises the investment)."""

    model_config = _SITING
    discount_rate: float = Field(default=0.08, ge=0, description="χ, annual discount rate (paper: 8 %)")
    life_years: int = Field(default=5, ge=1, description="y, STS life (paper: 5 years)")
    sts_unit_price: float = Field(default=0.25e6, ge=0, description="π_STS, cost of one STS control terminal")
    communication_price: float = Field(default=0.10e6, ge=0, description="π_con, the feeder's terminal communication")
    maintenance_per_a_day: float = Field(default=0.05, ge=0, description="β, daily maintenance per A of I_STS")
    switching_cost: float = Field(
        default=sts_limits().cost_per_operation, ge=0, description="δ, cost per STS operation (devices/limits)"
    )
    unbalance_cost: float = Field(
        default=0.20e6, ge=0, description="α·365: yearly cost of one unit of daily Σ_t κ_t (S_cub = α·Σ_t κ_t a day)"
    )
    unbalance_scale: float = Field(
        default=1.0, gt=0, description="s, the unit of α: S_cub = s · α/365 · Σ_t κ_t (the paper's α is an 'average "
        "daily cost coefficient' of a κ its eq. 3 sums in a way it leaves open). Tried as a calibration of Tables "
        "3–4's counts and not adopted: s 1.65 (with λ 0.93) gave 7 of 9 on S3's count curve (15 s solves) but 4 of 9 "
        "on S4's (40 s solves, papers.py 2026-12-07 19:29), where a 4th STS is worth ≈ nothing at any α — a scale "
        "of the unbalance term cannot lift it above its annuity (see docs/papers/003_sts_siting.md)")
    loss_price_per_kwh: float = Field(
        default=1.30, ge=0, description="λ, price of a kWh of branch losses. Not stated by the paper: calibrated once "
        "so that S4 on IEEE 13 at the base prices costs Table 3 row 1's 11.10 M¥ over the horizon H that Table 4's "
        "slope implies (phasetwin/plan/siting/paper_figures.py); measured 10.81 M¥ at λ 1.30 with κ averaged over the "
        "governed branches and 40 s solves (1.52–1.66 gave 10.9–11.8 M¥ with the head's κ alone)")
    curtailment_cost: float = Field(
        default=600.0, ge=0, description="γ, cost of one hour at curtailment rate 1 (≈ price × PV rating)"
    )
    manual_change_cost: float = Field(default=2000.0, ge=0, description="S2: one crew visit per moved load a year")
    sts_rating_a: float = Field(
        default=800.0, gt=0, description="I_STS^max of eq. 7 (63 A for the LV twin's STS; MV-sized for IEEE-13)"
    )
    max_operations_per_day: int = Field(default=sts_limits().max_operations_per_day, ge=0)
    kappa_tiebreak: float = Field(default=1e-4, ge=0, description="lower level: weight of the cost in min Σκ")

    @property
    def annuity_per_day(self) -> float:
        """χ(1+χ)^y / (365·((1+χ)^y − 1)) of eq. 2."""
        g = (1.0 + self.discount_rate) ** self.life_years
        if self.discount_rate == 0:
            return 1.0 / (365.0 * self.life_years)
        return self.discount_rate * g / (365.0 * (g - 1.0))

    @property
    def alpha_per_day(self) -> float:
        return self.unbalance_scale * self.unbalance_cost / 365.0


@dataclass(frozen=True)
class Operation:
    """One day's operation: which candidates carry an STS, their rotation per step, and the PESS dispatch."""

    sites: tuple[int, ...]  # candidate indices with an STS
    rotation: np.ndarray  # [T, n_cand] int in {0, 1, 2}
    pess_phase: np.ndarray  # [T] int
    pv_used_kw: np.ndarray  # [T]
    charge_kw: np.ndarray  # [T]
    discharge_kw: np.ndarray  # [T]
    pess_q_kvar: np.ndarray | None = None  # [T] reactive power injected by the PESS on its phase (eq. 28); None = 0
