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

from dataclasses import dataclass

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
    """VUF = 100·|V2|/|V1| per bus: [..., 3] magnitudes and angles -> [...].

    Written in real arithmetic (the twin evaluates it for every bus of every tick); equal to
    ``sequence_components`` of the complex voltages, which the tests check.
    """
    rad = np.deg2rad(va_deg)
    re, im = vm_pu * np.cos(rad), vm_pu * np.sin(rad)
    half, s3 = 0.5, np.sqrt(3.0) / 2.0
    # a·Vb and a²·Vc with a = -1/2 + j√3/2, a² = -1/2 - j√3/2; V2 swaps a and a².
    b_re, b_im, c_re, c_im = re[..., 1], im[..., 1], re[..., 2], im[..., 2]
    common_re = re[..., 0] - half * (b_re + c_re)
    common_im = im[..., 0] - half * (b_im + c_im)
    rot_re, rot_im = s3 * (c_im - b_im), s3 * (b_re - c_re)
    v1 = np.hypot(common_re + rot_re, common_im + rot_im)
    v2 = np.hypot(common_re - rot_re, common_im - rot_im)
    return np.divide(100.0 * v2, v1, out=np.zeros_like(v1), where=v1 > 0)


def voltage_unbalance_factor_pct_of_phasors(v: np.ndarray) -> np.ndarray:
    """VUF = 100·|V2|/|V1| per bus from complex phase voltages [..., 3] -> [...] (0 where V1 is 0): what an
    engine that has the phasors gives without the trigonometry of ``voltage_unbalance_factor_pct``."""
    va, vb, vc = v[..., 0], v[..., 1], v[..., 2]
    common = va - 0.5 * (vb + vc)
    rot = (0.5j * np.sqrt(3.0)) * (vb - vc)  # a·Vb + a²·Vc = common − Va + rot
    v1 = np.abs(common + rot)
    v2 = np.abs(common - rot)
    return np.divide(100.0 * v2, v1, out=np.zeros_like(v1), where=v1 > 0)


def neutral_current(i_complex: np.ndarray) -> np.ndarray:
    """|I_A + I_B + I_C| from complex phase currents [..., 3] -> [...]."""
    return np.abs(i_complex.sum(axis=-1))


# --- Key performance indicators of a run and their change against no control ------------------------------------

KPI_LABELS: dict[str, str] = {
    "p_unb_kwh": "P_unb, kWh (Σ_t eq. 7 · Δt)",
    "peak_neutral_a": "peak neutral current, A",
    "mean_neutral_a": "mean neutral current, A",
    "peak_trafo_loading_pct": "peak transformer-phase loading, %",
    "vm_min_pu": "V_min, p.u.",
    "vm_max_pu": "V_max, p.u.",
    "max_vuf_pct": "max VUF, %",
    "switch_operations": "switch operations",
}
"""Every KPI, in the order tables show them."""

LOWER_IS_BETTER = ("p_unb_kwh", "peak_neutral_a", "mean_neutral_a", "peak_trafo_loading_pct", "max_vuf_pct")
REL_TOL = 1e-3
"""A lower-is-better KPI is worse when it rises by more than this fraction of no control's value (float noise and
rounding of the recorded float32 series stay below it)."""
V_TOL_PU = 1e-3
"""A voltage extreme is worse when it moves towards its limit by more than this (p.u.)."""


@dataclass(frozen=True)
class Kpis:
    """The KPIs of one run. Neutral currents are the highest over the lines at each tick (``i_n_max_a``); the
    mean is over ticks; transformer loading is the highest phase's peak current over its rating."""

    p_unb_kwh: float
    peak_neutral_a: float
    mean_neutral_a: float
    peak_trafo_loading_pct: float
    vm_min_pu: float
    vm_max_pu: float
    max_vuf_pct: float
    switch_operations: int


@dataclass(frozen=True)
class KpiChange:
    """One KPI of a run against the same KPI without control."""

    name: str
    value: float
    baseline: float
    worse: bool
    note: str
    """Why it is flagged (or, for voltages, where it stands against its limit)."""

    @property
    def label(self) -> str:
        return KPI_LABELS[self.name]

    @property
    def change(self) -> float:
        return self.value - self.baseline

    @property
    def change_pct(self) -> float | None:
        return 100.0 * self.change / self.baseline if self.baseline and np.isfinite(self.baseline) else None

    def change_text(self) -> str:
        if not (np.isfinite(self.value) and np.isfinite(self.baseline)):
            return "—"
        if self.name in ("vm_min_pu", "vm_max_pu"):
            return f"{self.change:+.4f}"
        if self.name == "switch_operations":
            return f"{self.change:+.0f}"
        pct = self.change_pct
        return f"{pct:+.1f} %" if pct is not None else f"{self.change:+.3g}"


def kpi_changes(run: Kpis, base: Kpis, *, vm_min_limit_pu: float, vm_max_limit_pu: float) -> list[KpiChange]:
    """Each KPI of ``run`` against ``base`` (no control), flagged ``worse`` when it moves the wrong way:
    a lower-is-better KPI rising by more than ``REL_TOL``; V_min falling or V_max rising by more than ``V_TOL_PU``
    (the note says whether the run stays inside the limits, and whether no control did). Switch operations are
    the price of control, shown but never flagged."""
    out: list[KpiChange] = []
    for name in KPI_LABELS:
        value, ref = float(getattr(run, name)), float(getattr(base, name))
        worse, note = False, ""
        if name in LOWER_IS_BETTER:
            worse = bool(np.isfinite(value) and np.isfinite(ref) and value > ref + REL_TOL * abs(ref) + 1e-9)
            note = "higher than without control" if worse else ""
        elif name in ("vm_min_pu", "vm_max_pu"):
            low = name == "vm_min_pu"
            limit = vm_min_limit_pu if low else vm_max_limit_pu
            towards = (ref - value) if low else (value - ref)
            worse = bool(np.isfinite(value) and np.isfinite(ref) and towards > V_TOL_PU)
            outside = value < limit if low else value > limit
            ref_outside = ref < limit if low else ref > limit
            where = "below" if low else "above"
            if outside:
                note = f"{where} the limit {limit:g}" + (" (so is no control)" if ref_outside else
                                                          " where no control is inside: LIMIT BROKEN")
            else:
                note = f"inside the limit {limit:g}"
        out.append(KpiChange(name=name, value=value, baseline=ref, worse=worse, note=note))
    return out


def breaks_limit(change: KpiChange) -> bool:
    """A voltage outside its limit where no control is inside."""
    return change.note.endswith("LIMIT BROKEN")
