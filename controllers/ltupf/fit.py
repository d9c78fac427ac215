"""Linear approximations of 1/conj(V), the only non-linear part of the customer power balance (Liu et al. §3.2).

A constant-power load draws I = conj(S) / conj(V) = conj(S) · f(V), f(V) = 1/conj(V). Both methods replace f by a
real-affine function of V, written here in one complex form

    f(V) ≈ a + b·V + c·conj(V)        (V in p.u.; a, b, c complex)

which is the paper's pair Re f ≈ α₁·Vr + β₁·Vi + γ₁, Im f ≈ α₂·Vr + β₂·Vi + γ₂ (eqs. 25a–b) with
α₁ = Re b + Re c, β₁ = Im c − Im b, γ₁ = Re a, α₂ = Im b + Im c, β₂ = Re b − Re c, γ₂ = Im a.

- CBM, complex-based method (eq. 24): the first-order expansion of f around a centre V₀ in the complex domain,
  f(V) ≈ 2/conj(V₀) − conj(V)/conj(V₀)², i.e. a = 2/conj(V₀), b = 0, c = −1/conj(V₀)². Exact at V₀; the error is
  second order in |V − V₀|, |Δf| = |V − V₀|² / (|V|·|V₀|²).
- LSM, least-squares method (eqs. 23, 25): the affine least-squares fit of Re f and Im f over a sampled region
  |V| ∈ [m_lo, m_hi]·|V₀|, ∠V ∈ ∠V₀ ± δ around a centre V₀ (the paper: |V₀| = 1 p.u. at each phase's nominal
  angle, |V| ∈ [0.85, 1.10], δ = 10°).

f is homogeneous, f(z₀·u) = f(u)/conj(z₀), so one canonical fit around u = 1 serves every centre z₀:
a = a₁/conj(z₀), b = b₁/|z₀|², c = c₁/conj(z₀)². The paper's per-phase fits are the canonical fit rotated to
each phase's nominal angle.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Self

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "LOCAL_REGION",
    "PAPER_REGION",
    "CurrentFit",
    "FitRegion",
    "Linearisation",
    "canonical_fit",
    "fit_current",
    "region_samples",
]

FROZEN = ConfigDict(frozen=True, extra="forbid")


class Linearisation(StrEnum):
    """How 1/conj(V) is made linear."""

    CBM = "cbm"  # complex-domain first-order expansion at the centre voltage (eq. 24)
    LSM = "lsm"  # least-squares affine fit over a sampled region around the centre (eqs. 23, 25)


class FitRegion(BaseModel):
    """Sampled region of the LSM fit, relative to the centre voltage V₀: |V|/|V₀| ∈ [vm_min_ratio, vm_max_ratio],
    ∠V − ∠V₀ ∈ ±angle_half_width_deg. With the nominal centre (1 p.u.) the ratios are p.u. magnitudes."""

    model_config = FROZEN
    vm_min_ratio: float = Field(default=0.85, gt=0, description="lowest sampled |V| / |V₀|")
    vm_max_ratio: float = Field(default=1.10, gt=0, description="highest sampled |V| / |V₀|")
    angle_half_width_deg: float = Field(default=10.0, ge=0, lt=60, description="sampled angle range ± around ∠V₀")
    n_vm: int = Field(default=26, ge=2, description="magnitude samples")
    n_angle: int = Field(default=21, ge=1, description="angle samples")

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.vm_min_ratio >= self.vm_max_ratio:
            raise ValueError(
                f"vm_min_ratio {self.vm_min_ratio} must be below vm_max_ratio {self.vm_max_ratio}"
            )
        return self


PAPER_REGION = FitRegion()
"""The paper's region around each phase's nominal voltage: |V| ∈ [0.85, 1.10] p.u., angle ± 10°."""
LOCAL_REGION = FitRegion(vm_min_ratio=0.90, vm_max_ratio=1.10, angle_half_width_deg=5.0, n_vm=21, n_angle=11)
"""A region around a solved operating point: ± 10 % in magnitude, ± 5° in angle. Chosen among five regions
(± 3 %/3°, ± 5 %/5°, −10/+5 %/5°, ± 10 %/5°, the paper's) on the Liège states of benchmarks/ltupf_accuracy.py, where
the loads move ±30 % around the operating point and voltages reach 0.67 p.u.: largest error 4.2e-3 p.u. against
5.3e-3 to 7.1e-3 for the others."""


@dataclass(frozen=True)
class CurrentFit:
    """1/conj(v) ≈ a + b·v + c·conj(v) per bus-phase (v in p.u.), arrays of one shape."""

    a: np.ndarray
    b: np.ndarray
    c: np.ndarray

    def __call__(self, v_pu: np.ndarray) -> np.ndarray:
        return np.asarray(self.a + self.b * v_pu + self.c * np.conj(v_pu))


def region_samples(region: FitRegion) -> np.ndarray:
    """Grid of sample points u of the canonical region around u = 1 (complex, flattened)."""
    vm = np.linspace(region.vm_min_ratio, region.vm_max_ratio, region.n_vm)
    half = np.radians(region.angle_half_width_deg)
    angle = np.linspace(-half, half, region.n_angle) if region.n_angle > 1 else np.zeros(1)
    return np.asarray((vm[:, None] * np.exp(1j * angle[None, :])).ravel())


def canonical_fit(method: Linearisation, region: FitRegion) -> tuple[complex, complex, complex]:
    """(a₁, b₁, c₁) of the approximation of 1/conj(u) around u = 1."""
    if method is Linearisation.CBM:
        return 2.0 + 0j, 0j, -1.0 + 0j
    u = region_samples(region)
    target = 1.0 / np.conj(u)
    design = np.column_stack([u.real, u.imag, np.ones_like(u.real)])
    (alpha1, beta1, gamma1), *_ = np.linalg.lstsq(design, target.real, rcond=None)
    (alpha2, beta2, gamma2), *_ = np.linalg.lstsq(design, target.imag, rcond=None)
    b = complex((alpha1 + beta2) / 2, (alpha2 - beta1) / 2)
    c = complex((alpha1 - beta2) / 2, (alpha2 + beta1) / 2)
    return complex(gamma1, gamma2), b, c


def fit_current(method: Linearisation, *, centre_pu: np.ndarray, region: FitRegion = PAPER_REGION) -> CurrentFit:
    """The approximation of 1/conj(v) around each centre voltage (complex p.u., any shape, none zero)."""
    a1, b1, c1 = canonical_fit(method, region)
    conj_z = np.conj(centre_pu)
    return CurrentFit(a=a1 / conj_z, b=b1 / (centre_pu * conj_z), c=c1 / conj_z**2)
