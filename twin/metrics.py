"""Unbalance indices, vectorised over ticks. Every function takes per-phase arrays with the phase last.

- P_unb (re-phasing paper 000, eqs. 7-9): Σ_φ |A_φ,f,t − μ_f,t| with A the aggregate customer load of feeder f on
  phase φ and μ its mean over the three phases; kW, per feeder and tick.
- κ (STS paper 003, eq. 9): current unbalance of a branch, max_X (3|I_X| − Σ_Y |I_Y|) / Σ_Y |I_Y|, i.e. the largest
  phase current over the mean, minus one. The extracted text shows |Σ I| in the denominator; we read it as the
  sum of magnitudes (the phasor sum is the neutral current, zero for a balanced load, which would make κ
  infinite exactly when there is no unbalance). κ is 0 for a branch carrying no current.
- VUF: |V2| / |V1| in percent, from the complex phase-to-neutral voltages (IEC 61000-4-30 definition).
"""

from __future__ import annotations

import numpy as np

_A = np.exp(2j * np.pi / 3)


def phase_loads_kw(p_phase_kw: np.ndarray, feeder_of_customer: np.ndarray, n_feeders: int) -> np.ndarray:
    """Aggregate load per feeder and phase (eq. 8): [k, n_customers, 3] -> [k, n_feeders, 3]."""
    k = p_phase_kw.shape[0]
    out = np.zeros((k, n_feeders, 3))
    for f in range(n_feeders):
        out[:, f, :] = p_phase_kw[:, feeder_of_customer == f, :].sum(axis=1)
    return out


def p_unb_kw(phase_loads: np.ndarray) -> np.ndarray:
    """Eq. 7 summand per feeder and tick: [..., 3] -> [...]."""
    mean = phase_loads.mean(axis=-1, keepdims=True)
    return np.abs(phase_loads - mean).sum(axis=-1)


def current_unbalance(i_abs: np.ndarray) -> np.ndarray:
    """κ per branch: [..., 3] current magnitudes -> [...]; 0 where no current flows."""
    total = i_abs.sum(axis=-1)
    worst = (3.0 * i_abs - total[..., None]).max(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        kappa = np.where(total > 0, worst / np.where(total > 0, total, 1.0), 0.0)
    return kappa


def sequence_components(v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Zero, positive and negative sequence of complex phase quantities [..., 3] (phases A, B, C)."""
    va, vb, vc = v[..., 0], v[..., 1], v[..., 2]
    v0 = (va + vb + vc) / 3
    v1 = (va + _A * vb + _A**2 * vc) / 3
    v2 = (va + _A**2 * vb + _A * vc) / 3
    return v0, v1, v2


def voltage_unbalance_factor_pct(vm_pu: np.ndarray, va_deg: np.ndarray) -> np.ndarray:
    """VUF = 100·|V2|/|V1| per bus: [..., 3] magnitudes and angles -> [...]."""
    v = vm_pu * np.exp(1j * np.deg2rad(va_deg))
    _, v1, v2 = sequence_components(v)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(np.abs(v1) > 0, 100.0 * np.abs(v2) / np.where(np.abs(v1) > 0, np.abs(v1), 1.0), 0.0)


def neutral_current(i_complex: np.ndarray) -> np.ndarray:
    """|I_A + I_B + I_C| from complex phase currents [..., 3] -> [...]."""
    return np.abs(i_complex.sum(axis=-1))
