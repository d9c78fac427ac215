"""The cost of one day's operation, computed directly (numpy), independent of the MILP that chooses it.

This module *defines* the model the MILP optimises, so the two can be checked against each other and against
brute-force enumeration:

- flows: lossless linearised DistFlow (eqs. 10–12 without the I²·r terms): P_e = Σ_{b below e} p_b per phase;
  squared voltage u_b = u_0 − Σ_{e on the path} 2·(r_e·P_e + x_e·Q_e)/V_e² (eq. 12);
- κ (eq. 9) at the head branch (or averaged over ``case.unbalance_branches``: each branch's unbalanced current
  3·max − Σ on its own reference direction, divided by the head's D̂_t, so a lateral counts by its share of the
  head's current), linearised: the phase currents |I_X| = |S_X|/V are replaced by their projection
  Ĩ_X = (P_X·cos φ_t + Q_X·sin φ_t)/V on the direction φ_t of the head's total power in the reference
  operation (no governance), and the denominator Σ|I_X| by that reference total D̂_t:
      κ̃_t = (3·max_X Ĩ_X,t − Σ_X Ĩ_X,t) / D̂_t.
  Moving a load between phases leaves Σ_X Ĩ_X unchanged (to first order) and the projection is exact for
  in-phase quantities, so κ̃ tracks κ closely; the max is an epigraph variable in the MILP. The exact κ
  (``twin.metrics.current_unbalance`` on |S|/V) is reported beside it;
- losses (eq. 4): r·(P² + Q²)/V² with P² and Q² replaced by the maximum of tangents at ``LOSS_BREAKPOINTS``
  points spread over each flow's proved range (an under-estimate by at most (h/2)² per square, h the spacing;
  the exact quadratic value is reported beside it);
- the curtailment rate (eq. 33) is (W_PV − W_cons)/W_PV in steps with PV; switching operations are counted
  cyclically over the day (the plan repeats daily).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from controllers.planning.sts_siting.case import CandidateKind, CostParams, Operation, SitingCase, SitingError
from twin.metrics import current_unbalance

LOSS_BREAKPOINTS = 7


def rotate(p: np.ndarray, r: int) -> np.ndarray:
    """Phase φ's load moves to φ + r: [..., 3] -> [..., 3]."""
    return np.roll(p, r, axis=-1)


@dataclass(frozen=True)
class FlowRanges:
    """Proved bounds of every flow [T, n, 3] and the reference head direction and total current."""

    p_lo: np.ndarray
    p_hi: np.ndarray
    q_lo: np.ndarray
    q_hi: np.ndarray
    cos_t: np.ndarray  # [T]
    sin_t: np.ndarray  # [T]
    d_ref_a: np.ndarray  # [T] Σ_X |I_X| of the reference operation at the head
    cos_te: np.ndarray  # [T, n] direction of each branch's total power in the reference operation (1 where none)
    sin_te: np.ndarray  # [T, n]
    d_ref_te: np.ndarray  # [T, n] Σ_X |I_X| of each branch in the reference operation (1 where none)

    def kappa_denominator(self, case: SitingCase, t: int | slice, e: int) -> np.ndarray:
        """D̂ of branch e's κ term (``case.kappa_reference``), divided by the number of κ branches (a mean)."""
        d = self.d_ref_te[t, e] if case.kappa_reference == "branch" else self.d_ref_a[t]
        return np.asarray(d) * len(case.kappa_branches)


def flow_ranges(case: SitingCase) -> FlowRanges:
    """Interval bounds on branch flows over every rotation, PESS dispatch and curtailment the model allows."""
    sub = case.network.subtree().astype(float)
    fixed_p = np.einsum("eb,tbx->tex", sub, case.fixed_p_kw)
    fixed_q = np.einsum("eb,tbx->tex", sub, case.fixed_q_kvar)
    p_lo, p_hi, q_lo, q_hi = fixed_p.copy(), fixed_p.copy(), fixed_q.copy(), fixed_q.copy()
    ref_p, ref_q = fixed_p.copy(), fixed_q.copy()
    for c in case.candidates:
        if c.kind is not CandidateKind.LOAD:
            continue
        rots_p = np.stack([rotate(c.p_kw, r) for r in range(3)])  # [3, T, 3]
        rots_q = np.stack([rotate(c.q_kvar, r) for r in range(3)])
        col = sub[:, c.bus][None, :, None]
        p_lo += col * rots_p.min(axis=0)[:, None, :]
        p_hi += col * rots_p.max(axis=0)[:, None, :]
        q_lo += col * rots_q.min(axis=0)[:, None, :]
        q_hi += col * rots_q.max(axis=0)[:, None, :]
        ref_p += col * c.p_kw[:, None, :]
        ref_q += col * c.q_kvar[:, None, :]
    if case.pess is not None:
        s = case.pess
        col = sub[:, s.bus][None, :, None]
        gen_max = np.minimum(s.pv_kw + s.discharge_max_kw, s.inverter_kva)
        p_lo -= col * gen_max[:, None, None]
        p_hi += col * s.charge_max_kw
        q_lo -= col * s.q_max_kvar
        q_hi += col * s.q_max_kvar
        ref = np.zeros((case.n_steps, 3))
        ref[:, s.home_phase] = s.pv_kw
        ref_p -= col * ref[:, None, :]
    h = case.head_branch
    tot_p = ref_p[:, h, :].sum(axis=1)
    tot_q = ref_q[:, h, :].sum(axis=1)
    norm = np.hypot(tot_p, tot_q)
    if np.any(norm <= 0):
        raise SitingError(f"case {case.name}: the head branch carries no power in some step; κ is undefined")
    d_ref = np.hypot(ref_p[:, h, :], ref_q[:, h, :]).sum(axis=1) / case.network.v_ln_kv[h]
    all_p, all_q = ref_p.sum(axis=2), ref_q.sum(axis=2)
    all_n = np.hypot(all_p, all_q)
    safe = np.where(all_n > 0, all_n, 1.0)
    cos_te = np.where(all_n > 0, all_p / safe, 1.0)
    sin_te = np.where(all_n > 0, all_q / safe, 0.0)
    d_te = np.hypot(ref_p, ref_q).sum(axis=2) / case.network.v_ln_kv[None, :]
    d_te = np.where(d_te > 0, d_te, 1.0)
    return FlowRanges(p_lo, p_hi, q_lo, q_hi, tot_p / norm, tot_q / norm, d_ref, cos_te, sin_te, d_te)


def breakpoints(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Tangent points [..., K] spread over [lo, hi] (one point when the range is empty)."""
    frac = (np.arange(LOSS_BREAKPOINTS) + 0.5) / LOSS_BREAKPOINTS
    return lo[..., None] + (hi - lo)[..., None] * frac


def square_pwl(x: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """max(0, max_k (2·a_k·x − a_k²)): the tangent under-estimate of x² used in the MILP."""
    return np.maximum((2.0 * pts * x[..., None] - pts**2).max(axis=-1), 0.0)


@dataclass(frozen=True)
class Evaluation:
    """Cost breakdown (yuan per day) and the physical figures of one operation."""

    s_ins: float
    s_cub: float
    s_lo: float
    s_ab: float
    s_manual: float
    kappa_lin: np.ndarray  # [T]
    kappa: np.ndarray  # [T] exact eq. 9 on the flows
    head_current_a: np.ndarray  # [T, 3]
    loss_kwh: float  # model (tangent) losses
    loss_kwh_exact: float
    curtailment_rate: np.ndarray  # [T]
    switch_operations: int
    v_min_pu: float
    v_max_pu: float
    energy_kwh: np.ndarray  # [T+1]

    @property
    def total(self) -> float:
        return self.s_ins + self.s_cub + self.s_lo + self.s_ab + self.s_manual


def injections(case: SitingCase, op: Operation) -> tuple[np.ndarray, np.ndarray]:
    """Net load per bus and phase [T, n, 3] (kW, kvar) of an operation."""
    p = case.fixed_p_kw.copy()
    q = case.fixed_q_kvar.copy()
    for i, c in enumerate(case.candidates):
        if c.kind is not CandidateKind.LOAD:
            continue
        for t in range(case.n_steps):
            r = int(op.rotation[t, i])
            p[t, c.bus] += rotate(c.p_kw[t], r)
            q[t, c.bus] += rotate(c.q_kvar[t], r)
    if case.pess is not None:
        gen = op.pv_used_kw + op.discharge_kw - op.charge_kw
        q_gen = op.pess_q_kvar if op.pess_q_kvar is not None else np.zeros(case.n_steps)
        for t in range(case.n_steps):
            p[t, case.pess.bus, int(op.pess_phase[t])] -= gen[t]
            q[t, case.pess.bus, int(op.pess_phase[t])] -= q_gen[t]
    return p, q


def switch_operations(case: SitingCase, op: Operation) -> int:
    """Cyclic count of rotation (or PESS phase) changes at STS sites."""
    n = 0
    for i, c in enumerate(case.candidates):
        if i not in op.sites:
            continue
        seq = op.pess_phase if c.kind is CandidateKind.PESS else op.rotation[:, i]
        n += int(np.count_nonzero(seq != np.roll(seq, 1)))
    return n


def evaluate(case: SitingCase, op: Operation, params: CostParams, *, manual: bool = False) -> Evaluation:
    """S_IN of eq. 1 and its parts for ``op``; ``manual`` prices rotations at non-sites as crew visits (S2)."""
    net = case.network
    ranges = flow_ranges(case)
    p, q = injections(case, op)
    sub = net.subtree().astype(float)
    fp = np.einsum("eb,tbx->tex", sub, p)
    fq = np.einsum("eb,tbx->tex", sub, q)
    r = net.z_ohm.real[None, :, :]
    x = net.z_ohm.imag[None, :, :]
    v2 = (net.v_ln_kv**2)[None, :, None]
    drop = 2.0 * (r * fp + x * fq) / (1000.0 * v2)
    drop[:, 0, :] = 0.0
    u = case.v_source_pu**2 - np.einsum("be,tex->tbx", net.path().astype(float), drop)
    vm = np.sqrt(np.clip(u, 0.0, None))

    h = case.head_branch
    v_head = net.v_ln_kv[h]
    kappa_lin = np.zeros(case.n_steps)
    for e in case.kappa_branches:
        cos_e, sin_e = (ranges.cos_t, ranges.sin_t) if e == h else (ranges.cos_te[:, e], ranges.sin_te[:, e])
        proj = (fp[:, e, :] * cos_e[:, None] + fq[:, e, :] * sin_e[:, None]) / net.v_ln_kv[e]
        kappa_lin += (3.0 * proj.max(axis=1) - proj.sum(axis=1)) / ranges.kappa_denominator(case, slice(None), e)
    head_i = np.hypot(fp[:, h, :], fq[:, h, :]) / v_head
    kappa = current_unbalance(head_i)

    scale = (net.z_ohm.real / (1000.0 * net.v_ln_kv[:, None] ** 2))[None, :, :]
    sq_p = square_pwl(fp, breakpoints(ranges.p_lo, ranges.p_hi))
    sq_q = square_pwl(fq, breakpoints(ranges.q_lo, ranges.q_hi))
    loss_model = float((scale * (sq_p + sq_q))[:, 1:, :].sum()) * case.period_h
    loss_exact = float((scale * (fp**2 + fq**2))[:, 1:, :].sum()) * case.period_h

    n_steps = case.n_steps
    curtail = np.zeros(n_steps)
    energy = np.zeros(n_steps + 1)
    if case.pess is not None:
        s = case.pess
        has_pv = s.pv_kw > 1e-9
        curtail[has_pv] = (s.pv_kw[has_pv] - op.pv_used_kw[has_pv]) / s.pv_kw[has_pv]
        energy[0] = s.e_initial_kwh
        for t in range(n_steps):
            energy[t + 1] = energy[t] + (s.eta_charge * op.charge_kw[t]
                                         - op.discharge_kw[t] / s.eta_discharge) * case.period_h

    ops = switch_operations(case, op)
    ns = len(op.sites)
    s_ins = (params.annuity_per_day * ((params.communication_price if ns else 0.0) + params.sts_unit_price * ns)
             + params.maintenance_per_a_day * sum(case.candidates[i].current_a for i in op.sites)
             + params.switching_cost * ops)
    moved = 0
    if manual:
        moved = sum(1 for i in range(len(case.candidates)) if i not in op.sites and np.any(op.rotation[:, i] != 0))
        moved += int(case.pess is not None and np.any(op.pess_phase != case.pess.home_phase)
                     and not any(case.candidates[i].kind is CandidateKind.PESS for i in op.sites))
    return Evaluation(
        s_ins=s_ins,
        s_cub=params.alpha_per_day * float(kappa_lin.sum()),
        s_lo=params.loss_price_per_kwh * loss_model,
        s_ab=params.curtailment_cost * float(curtail.sum()),
        s_manual=params.manual_change_cost / 365.0 * moved,
        kappa_lin=kappa_lin,
        kappa=kappa,
        head_current_a=head_i,
        loss_kwh=loss_model,
        loss_kwh_exact=loss_exact,
        curtailment_rate=curtail,
        switch_operations=ops,
        v_min_pu=float(vm[:, 1:, :].min()),
        v_max_pu=float(vm[:, 1:, :].max()),
        energy_kwh=energy,
    )
