"""Which customers carry which device, and the simulated device models built for them.

A fleet is an explicit list (a CSV: ``customer_id,kind[,access]``; an STS may also sit at a two-phase customer,
a line-to-line load it turns as a unit, A→B→C→A) or a rule: ``psd=10`` puts PSDs on the 10
single-phase customers farthest from the transformer, then ``sts`` on the next farthest, then ``pess`` on the
next farthest (any connection); ``placement=impact`` puts the switches where their phase choice moves P_unb most
instead (``impact_scores``, from the data). Device ids are ``<kind>-<customer id>``.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from devices.device import Device
from devices.limits import LeaseConfig, PessParams, SwitchLimits, psd_limits, sts_limits
from devices.pess import Pess
from devices.psd import Psd
from devices.sts import Sts
from streams.messages import DeviceKind
from twin.csv_rows import read_rows
from twin.errors import ScenarioError
from twin.network import Customer, Feeder
from twin.phase import Phase

FROZEN = ConfigDict(frozen=True, extra="forbid")


class PessAccess(StrEnum):
    """How a PESS connects: on all three phases, on one fixed phase, or on one phase behind an STS."""

    THREE = "three"
    SINGLE = "single"
    SWITCHABLE = "switchable"


class Placement(StrEnum):
    """Where the ``psd``/``sts``/``pess`` rules put devices."""

    FARTHEST = "farthest"
    """On the customers farthest from the transformer (``Customer.distance_km``)."""
    IMPACT = "impact"
    """On the single-phase customers whose phase choice moves P_unb most (``impact_scores``, from the run's data);
    PESS then on the farthest of the rest."""


class DeviceSpec(BaseModel):
    model_config = FROZEN
    customer_id: str = Field(min_length=1)
    kind: DeviceKind
    access: PessAccess = PessAccess.SWITCHABLE

    @property
    def device_id(self) -> str:
        return f"{self.kind.value}-{self.customer_id}"


class FleetSpec(BaseModel):
    """The devices of a run and their parameters (the same objects the controller plans with)."""

    model_config = FROZEN
    psd: int = Field(default=0, ge=0, description="PSDs on the farthest single-phase customers")
    sts: int = Field(default=0, ge=0, description="STSs on the next farthest single-phase customers")
    pess: int = Field(default=0, ge=0, description="PESS on the next farthest customers")
    pess_access: PessAccess = PessAccess.SWITCHABLE
    placement: Placement = Field(default=Placement.FARTHEST, description="where the psd/sts rules put switches")
    explicit: tuple[DeviceSpec, ...] = Field(default=(), description="devices listed by customer (replaces rules)")
    psd_limits: SwitchLimits = Field(default_factory=psd_limits)
    sts_limits: SwitchLimits = Field(default_factory=sts_limits)
    pess_params: PessParams = Field(default_factory=PessParams)
    lease: LeaseConfig = Field(default_factory=LeaseConfig)

    @property
    def empty(self) -> bool:
        return not (self.psd or self.sts or self.pess or self.explicit)


def impact_scores(feeder: Feeder, load_kw: np.ndarray) -> np.ndarray:
    """Per customer, the P_unb (paper 000 eq. 7, kWh per step hour) its phase choice alone could save: at every
    step of ``load_kw`` [T, n_customers] (each customer's total load, in ``feeder.customers`` order, on its
    present phase), the feeder's Σ_φ |A_φ − μ| with the customer where it is, minus the least of it with the
    customer on any phase, summed over the steps. 0 for customers not single-phase."""
    customers = feeder.customers
    n_t = load_kw.shape[0]
    feeder_of = np.array([c.feeder for c in customers])
    phase_of = np.array([int(c.phases[0]) for c in customers])
    n_f = int(feeder_of.max()) + 1 if len(customers) else 1
    a = np.zeros((n_t, n_f, 3))
    for j, c in enumerate(customers):  # every terminal's load shared equally over a multi-phase customer's phases
        for ph in c.phases:
            a[:, c.feeder, int(ph)] += load_kw[:, j] / c.n_phases

    def unbalance(x: np.ndarray) -> np.ndarray:
        return np.abs(x - x.mean(axis=-1, keepdims=True)).sum(axis=-1)

    scores = np.zeros(len(customers))
    single = np.array([c.n_phases == 1 for c in customers])
    for k in np.flatnonzero(single):
        i = int(k)
        own = a[:, feeder_of[i], :]  # [T, 3]
        u0 = unbalance(own)
        best = u0.copy()
        for phi in range(3):
            if phi == phase_of[i]:
                continue
            moved = own.copy()
            moved[:, phase_of[i]] -= load_kw[:, i]
            moved[:, phi] += load_kw[:, i]
            best = np.minimum(best, unbalance(moved))
        scores[i] = float((u0 - best).sum())
    return scores


def choose_devices(feeder: Feeder, spec: FleetSpec, *, load_kw: np.ndarray | None = None) -> list[DeviceSpec]:
    """The device list of a fleet on a feeder; ScenarioError when the feeder cannot host it. ``load_kw``
    [T, n_customers] (``impact_scores``) is required by ``Placement.IMPACT``."""
    if spec.explicit:
        return _checked(feeder, list(spec.explicit))
    by_distance = sorted(feeder.customers, key=lambda c: (-c.distance_km, c.id))
    if spec.placement is Placement.IMPACT and (spec.psd or spec.sts):
        if load_kw is None or load_kw.shape[1:] != (len(feeder.customers),):
            raise ScenarioError("placement 'impact' needs the customers' load data [steps, customers]; "
                                f"got {None if load_kw is None else load_kw.shape}")
        score = dict(zip((c.id for c in feeder.customers), impact_scores(feeder, load_kw), strict=True))
        switch_order = sorted(feeder.customers, key=lambda c: (-score[c.id], -c.distance_km, c.id))
    else:
        switch_order = by_distance
    single = [c for c in switch_order if c.n_phases == 1]
    if spec.psd + spec.sts > len(single):
        raise ScenarioError(
            f"psd={spec.psd} + sts={spec.sts} switches need that many single-phase customers; "
            f"feeder {feeder.name!r} has {len(single)}"
        )
    chosen: list[DeviceSpec] = [DeviceSpec(customer_id=c.id, kind=DeviceKind.PSD) for c in single[:spec.psd]]
    chosen += [DeviceSpec(customer_id=c.id, kind=DeviceKind.STS) for c in single[spec.psd:spec.psd + spec.sts]]
    taken = {d.customer_id for d in chosen}
    rest = [c for c in by_distance if c.id not in taken]
    if spec.pess > len(rest):
        raise ScenarioError(f"pess={spec.pess} needs that many customers without a switch; {len(rest)} are left")
    chosen += [DeviceSpec(customer_id=c.id, kind=DeviceKind.PESS, access=spec.pess_access) for c in rest[:spec.pess]]
    return chosen


def _checked(feeder: Feeder, specs: list[DeviceSpec]) -> list[DeviceSpec]:
    ids = {c.id: c for c in feeder.customers}
    problems = []
    seen: set[str] = set()
    for d in specs:
        c = ids.get(d.customer_id)
        if c is None:
            problems.append(f"{d.device_id}: customer {d.customer_id!r} is not on feeder {feeder.name!r}")
        elif d.kind == DeviceKind.PSD and c.n_phases != 1:
            problems.append(f"{d.device_id}: a psd needs a single-phase customer; {c.id} is connected {c.connection}")
        elif d.kind == DeviceKind.STS and c.n_phases > 2:
            problems.append(f"{d.device_id}: an sts needs a single-phase or two-phase (line-to-line) customer; "
                            f"{c.id} is connected {c.connection}")
        if d.device_id in seen:
            problems.append(f"{d.device_id}: listed twice")
        seen.add(d.device_id)
    if problems:
        raise ScenarioError("device list: " + "; ".join(problems))
    return specs


def read_device_list(path: Path) -> tuple[DeviceSpec, ...]:
    """A CSV with columns ``customer_id,kind`` and optionally ``access`` (PESS: three|single|switchable)."""
    return tuple(read_rows(path, DeviceSpec, what="device list", columns="customer_id,kind[,access]"))


def build_devices(feeder: Feeder, specs: list[DeviceSpec], fleet: FleetSpec) -> list[Device]:
    """Simulated models for the devices, each starting at its customer's present phase."""
    v_phase_v = feeder.transformer.vn_lv_kv * 1e3 / 3**0.5
    devices: list[Device] = []
    for d in specs:
        c = feeder.customer(d.customer_id)
        if d.kind == DeviceKind.PESS:
            devices.append(Pess(
                device_id=d.device_id, customer_id=c.id, params=fleet.pess_params, phases=_pess_phases(c, d.access),
                switch=fleet.sts_limits if d.access == PessAccess.SWITCHABLE else None, lease=fleet.lease,
                v_phase_v=v_phase_v,
            ))
        else:
            kind, limits = (Psd, fleet.psd_limits) if d.kind == DeviceKind.PSD else (Sts, fleet.sts_limits)
            devices.append(kind(device_id=d.device_id, customer_id=c.id, phase=c.phases[0], limits=limits,
                                lease=fleet.lease, v_phase_v=v_phase_v))
    return devices


def _pess_phases(customer: Customer, access: PessAccess) -> tuple[Phase, ...]:
    return (Phase.A, Phase.B, Phase.C) if access == PessAccess.THREE else (customer.phases[0],)
