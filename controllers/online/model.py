"""The rolling-horizon MILP: switchable customers (PSD), PESS with PV, battery and optional STS, over T steps.

Formulation (T steps of h = step_s/3600 h; f feeder, φ phase, t step):
- x_{c,t,φ} ∈ {0,1}, Σ_φ x = 1, x = 0 on phases not allowed; customers that are not free in this model (fixed by
  the caller, or unable to switch at all) enter as constants.
- switch s_{c,t} ∈ [0,1] with s ≥ x_{c,t,φ} − x_{c,t−1,φ} (x_{c,−1} = phase now): continuous is enough, since
  integral x make the cheapest feasible s the switch indicator; s_{c,t} = 0 where the interlock forbids it;
  dwell Σ_{k=t}^{t+D−1} s_{c,k} ≤ 1; per UTC day Σ s ≤ ops limit (see ``online.interlocks``).
- PESS (paper 003): P_c ≤ m·P_c^max, P_d ≤ (1−m)·P_d^max with m binary (eq. 35); E_{t+1} = E_t + (η_c P_c −
  P_d/η_d)·h (eq. 34) within [e_min, E^max] (eq. 36; e_min is relaxed to the present energy if that is lower)
  and within the device's end-of-day envelope (``evaluate.end_of_day_envelope_kwh``: E_0 at UTC midnight);
  0 ≤ curt ≤ PV; |PV − curt + P_d − P_c| ≤ inverter kVA; terminal energy per ``TerminalMode``.
  Injection per phase: three-phase units split equally (no effect on A − μ at all); single-phase on their phase;
  STS units through y_{t,φ} binaries and big-M linking −S·y ≤ inj_φ ≤ S·y, Σ_φ inj_φ = net (eqs. 25–29, M = the
  inverter rating S, which bounds |net|), with the same switch interlocks as a customer.
- unbalance: since Σ_φ (A_φ − μ) = 0, Σ_φ |A_φ − μ| = 2 Σ_φ (A_φ − μ)^+, so one auxiliary d ≥ A_φ − μ, d ≥ 0 per
  phase suffices (half the rows of the ±linearisation, same LP bound); objective 2·λP·h·Σ d.

The same builder makes the sub-models of the improvement steps: only some customers free (the others held at
an incumbent's phases, their switching cost a constant), STS phases held (``sts_free=False``: the unit is then a
single-phase unit with a known phase per step), mode binaries relaxed (``modes_binary=False``, a relaxation whose
answer is checked for simultaneous charge and discharge). ``constant_phases`` (the static baseline) gives each
customer one phase for the whole horizon, entered at t = 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from controllers.online.evaluate import end_of_day_envelope_kwh, energy_kwh, pess_param_arrays, phase_loads_kw
from controllers.online.interlocks import Interlock, pess_interlocks, switch_interlocks, switch_steps
from controllers.online.problem import ControlProblem, ControlWeights, Decisions, PessConnection, TerminalMode
from controllers.sparse_milp import SparseModel

_CLEAN_KW = 1e-7


@dataclass
class _SwitchBlock:
    x: np.ndarray
    """[T, 3] variable ids (the same ids on every row in constant mode)."""
    s: np.ndarray
    """[T] switch variable ids, -1 where a switch is impossible."""


def _switch_block(sm: SparseModel, lock: Interlock, *, n_steps: int, constant: bool, cost: float) -> _SwitchBlock:
    """Phase binaries and switch indicators of one device with its interlock rows."""
    now = np.zeros(3)
    now[lock.phase_now] = 1.0
    allowed = lock.allowed.astype(float)
    if constant:
        x1 = sm.add_vars(3, lb=0.0, ub=allowed, integer=True)
        x = np.broadcast_to(x1, (n_steps, 3))
        can = np.zeros(n_steps, dtype=bool)
        can[0] = lock.can_switch[0] and lock.ops_limit[0] > 0
    else:
        can = lock.can_switch.copy()
        # before the first step a switch is possible, the device stays where it is
        first = int(np.argmax(can)) if can.any() else n_steps
        lb = np.zeros((n_steps, 3))
        ub = np.broadcast_to(allowed, (n_steps, 3)).copy()
        lb[:first] = now
        ub[:first] = now
        x = sm.add_vars((n_steps, 3), lb=lb, ub=ub, integer=True)
    one = sm.add_rows(n_steps if not constant else 1, lb=1.0, ub=1.0)
    sm.add_terms(one[:, None], x[: one.size], 1.0)
    s = np.full(n_steps, -1, dtype=np.int64)
    steps = np.flatnonzero(can)
    if steps.size:
        s[steps] = sm.add_vars(steps.size, lb=0.0, ub=1.0)
        phases = np.flatnonzero(lock.allowed)
        # s_t − x_{t,φ} + x_{t−1,φ} ≥ 0 (x_{−1} = now, a constant)
        rows = sm.add_rows((steps.size, phases.size), lb=np.where(steps[:, None] == 0, -now[phases][None, :], 0.0))
        sm.add_terms(rows, s[steps][:, None], 1.0)
        sm.add_terms(rows, x[steps][:, phases], -1.0)
        later = steps > 0
        if later.any():
            sm.add_terms(rows[later], x[steps[later] - 1][:, phases], 1.0)
        sm.add_objective(s[steps], cost)
        if lock.dwell_steps > 1 and steps.size > 1:
            for t in range(max(1, n_steps - lock.dwell_steps + 1)):
                window = s[t : t + lock.dwell_steps]
                window = window[window >= 0]
                if window.size > 1:
                    sm.add_terms(sm.add_rows(1, ub=1.0), window, 1.0)
        days = lock.day_of_step[steps]
        for day in np.unique(days):
            if int((days == day).sum()) > lock.ops_limit[day]:
                sm.add_terms(sm.add_rows(1, ub=float(lock.ops_limit[day])), s[steps[days == day]], 1.0)
    return _SwitchBlock(x=x, s=s)


@dataclass
class BuiltModel:
    """A built MILP and the maps between its variables and ``Decisions``."""

    sm: SparseModel
    problem: ControlProblem
    incumbent: Decisions
    free: np.ndarray
    """indices of the switchable customers that are variables here; the others keep ``incumbent``'s phases."""
    switch: list[_SwitchBlock]
    pess_switch: dict[int, _SwitchBlock]
    pc: np.ndarray
    pd: np.ndarray
    mode: np.ndarray
    curt: np.ndarray
    e: np.ndarray
    """[n_pess, T] energy at the end of each step."""
    short: np.ndarray
    """[n_pess] terminal shortfall ids, -1 where not SOFT."""
    inj: dict[int, np.ndarray]
    dev: np.ndarray
    """[T, n_feeders, 3] ids of (A − μ)^+."""
    dev_t: np.ndarray
    """[T, 3] ids of the transformer's (Σ_f A − μ)^+ (empty without λT)."""
    peak: int
    """id of the highest transformer-phase load (-1 without λM)."""
    excess: np.ndarray
    """[T, 3] ids of (Σ_f A − balanced peak)^+ (empty without λE)."""

    def hint(self, d: Decisions) -> np.ndarray:
        """A full variable assignment equal to the (feasible) plan ``d``."""
        p = self.problem
        x = np.zeros(self.sm.n_vars)
        for block, c in zip(self.switch, self.free, strict=True):
            lock_now = int(p.switch_devices[c].switch.phase_now)
            _set_switch_hint(x, block, d.phase[:, c], lock_now)
        for u, block in self.pess_switch.items():
            switch = p.pess_units[u].switch
            assert switch is not None
            _set_switch_hint(x, block, d.pess_phase[:, u], int(switch.phase_now))
            net = p.pv_kw[:, u] - d.curtail_kw[:, u] + d.discharge_kw[:, u] - d.charge_kw[:, u]
            inj = np.zeros((p.n_steps, 3))
            inj[np.arange(p.n_steps), d.pess_phase[:, u]] = net
            x[self.inj[u]] = inj
        if p.n_pess:
            x[self.pc.T] = d.charge_kw
            x[self.pd.T] = d.discharge_kw
            x[self.curt.T] = d.curtail_kw
            x[self.mode.T] = (d.charge_kw > 0).astype(float)
            e = energy_kwh(p, d)
            x[self.e.T] = e[1:]
            target = pess_param_arrays(p)["target"]
            soft = self.short >= 0
            x[self.short[soft]] = np.maximum(0.0, target - e[-1])[soft]
        loads = phase_loads_kw(p, d)
        x[self.dev] = np.maximum(0.0, loads - loads.mean(axis=-1, keepdims=True))
        total = loads.sum(axis=1)
        if self.dev_t.size:
            x[self.dev_t] = np.maximum(0.0, total - total.mean(axis=-1, keepdims=True))
        if self.peak >= 0:
            x[self.peak] = total.max()
        if self.excess.size:
            x[self.excess] = np.maximum(0.0, total - p.balanced_peak_kw)
        return x

    def simultaneous(self, values: np.ndarray) -> bool:
        """True when an assignment charges and discharges a battery in the same step (possible only with the
        mode binaries relaxed)."""
        if not self.pc.size:
            return False
        return bool(((values[self.pc] > _CLEAN_KW) & (values[self.pd] > _CLEAN_KW)).any())

    def decisions(self, values: np.ndarray) -> Decisions:
        """The plan of a solver assignment, binaries rounded and sub-``_CLEAN_KW`` powers zeroed."""
        p = self.problem
        phase = np.array(self.incumbent.phase, copy=True)
        for block, c in zip(self.switch, self.free, strict=True):
            phase[:, c] = np.argmax(values[block.x], axis=1)
        pess_phase = np.array(self.incumbent.pess_phase, copy=True)
        for u, block in self.pess_switch.items():
            pess_phase[:, u] = np.argmax(values[block.x], axis=1)

        def clean(ids: np.ndarray, upper: np.ndarray) -> np.ndarray:
            v = values[ids.T] if ids.size else np.zeros((p.n_steps, 0))
            return np.clip(np.where(v < _CLEAN_KW, 0.0, v), 0.0, upper)

        params = pess_param_arrays(p)
        charge = clean(self.pc, params["charge_max"][None, :])
        discharge = clean(self.pd, params["discharge_max"][None, :])
        # the mode binary makes one of the two zero up to the solver's integrality tolerance
        both = (charge > 0) & (discharge > 0)
        charge = np.where(both & (charge < discharge), 0.0, charge)
        discharge = np.where(both & (discharge <= charge), 0.0, discharge)
        return Decisions(
            phase=phase,
            pess_phase=pess_phase,
            charge_kw=charge,
            discharge_kw=discharge,
            curtail_kw=clean(self.curt, p.pv_kw),
        )


def _set_switch_hint(x: np.ndarray, block: _SwitchBlock, seq: np.ndarray, phase_now: int) -> None:
    onehot = np.zeros((seq.size, 3))
    onehot[np.arange(seq.size), seq] = 1.0
    x[block.x] = onehot
    sw = switch_steps(seq, phase_now).astype(float)
    ok = block.s >= 0
    x[block.s[ok]] = sw[ok]


def build_model(
    problem: ControlProblem,
    weights: ControlWeights,
    *,
    incumbent: Decisions,
    free: np.ndarray | None = None,
    constant_phases: bool = False,
    sts_free: bool = True,
    modes_binary: bool = True,
) -> BuiltModel:
    """The MILP with the switchable customers ``free`` (indices; default all that can switch) as variables and
    the others fixed at ``incumbent``'s phases. Battery powers are always variables; STS phases are variables
    when ``sts_free`` (else held at ``incumbent``'s). ``modes_binary=False`` relaxes the charge/discharge mode
    binaries to [0, 1] (a relaxation: check exclusivity in the result)."""
    p = problem
    n_t, n_f = p.n_steps, p.n_feeders
    h = p.step_h
    sm = SparseModel()
    locks = switch_interlocks(p)
    candidates = np.arange(p.n_switch) if free is None else np.asarray(free, dtype=np.int64)
    free_idx = np.array([c for c in candidates if not locks[c].frozen], dtype=np.int64)
    t_idx = np.arange(n_t)

    # constants of A_φ − μ: fixed load, fixed customers at their incumbent phase, −L/3 of each free customer
    base = p.fixed_load_kw.copy()
    fixed_mask = np.ones(p.n_switch, dtype=bool)
    fixed_mask[free_idx] = False
    for c in np.flatnonzero(fixed_mask):
        feeder_idx = np.full_like(t_idx, p.switch_devices[c].feeder)
        np.add.at(base, (t_idx, feeder_idx, incumbent.phase[:, c]), p.switch_load_kw[:, c])
        seq = incumbent.phase[:, c]
        k = int(switch_steps(seq, int(p.switch_devices[c].switch.phase_now)).sum())
        sm.offset += k * (weights.switch_per_operation + locks[c].cost_per_operation)
    rhs = base - base.mean(axis=-1, keepdims=True)
    for c in free_idx:
        rhs[:, p.switch_devices[c].feeder, :] -= p.switch_load_kw[:, c, None] / 3.0

    dev = sm.add_vars((n_t, n_f, 3), lb=0.0, ub=np.inf)
    sm.add_objective(dev, 2.0 * weights.unbalance_per_kwh * h)
    # the unbalance rows d − V ≥ K get their right-hand side once every constant is known (below)
    blocks = []
    var_terms: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (t, f·3+φ, ...) kept as (row-index, col, coef)
    for c in free_idx:
        dev_c = p.switch_devices[c]
        block = _switch_block(
            sm, locks[c], n_steps=n_t, constant=constant_phases,
            cost=weights.switch_per_operation + locks[c].cost_per_operation,
        )
        blocks.append(block)
        # −L·x_φ in the row of feeder f, phase φ
        var_terms.append((_dev_index(t_idx[:, None], dev_c.feeder, np.arange(3)[None, :], n_f),
                          block.x, -np.repeat(p.switch_load_kw[:, c, None], 3, axis=1)))

    n_u = p.n_pess
    par = pess_param_arrays(p)
    pc = sm.add_vars((n_u, n_t), lb=0.0, ub=np.repeat(par["charge_max"][:, None], n_t, axis=1))
    pd = sm.add_vars((n_u, n_t), lb=0.0, ub=np.repeat(par["discharge_max"][:, None], n_t, axis=1))
    mode = sm.add_vars((n_u, n_t), lb=0.0, ub=1.0, integer=modes_binary)
    curt = sm.add_vars((n_u, n_t), lb=0.0, ub=p.pv_kw.T)
    e_lo, e_hi = end_of_day_envelope_kwh(p)  # the device's end-of-day target too: it overrides a plan outside
    e = sm.add_vars((n_u, n_t), lb=e_lo.T, ub=e_hi.T)
    short = np.full(n_u, -1, dtype=np.int64)
    inj: dict[int, np.ndarray] = {}
    pess_blocks: dict[int, _SwitchBlock] = {}
    pess_locks = pess_interlocks(p)
    if n_u:
        sm.add_objective(pc, (par["throughput"] * h)[:, None])
        sm.add_objective(pd, (par["throughput"] * h)[:, None])
        sm.add_objective(curt, (par["curtailment"] * h)[:, None])
        r = sm.add_rows((n_u, n_t), ub=0.0)  # P_c − P_c^max·m ≤ 0
        sm.add_terms(r, pc, 1.0)
        sm.add_terms(r, mode, -par["charge_max"][:, None])
        r = sm.add_rows((n_u, n_t), ub=np.repeat(par["discharge_max"][:, None], n_t, axis=1))  # P_d + P_d^max·m
        sm.add_terms(r, pd, 1.0)
        sm.add_terms(r, mode, par["discharge_max"][:, None])
        # E_t − E_{t−1} − η_c·h·P_c + h/η_d·P_d = 0, E_{−1} = e_now
        rhs_e = np.zeros((n_u, n_t))
        rhs_e[:, 0] = par["e_now"]
        r = sm.add_rows((n_u, n_t), lb=rhs_e, ub=rhs_e)
        sm.add_terms(r, e, 1.0)
        sm.add_terms(r[:, 1:], e[:, :-1], -1.0)
        sm.add_terms(r, pc, -(par["eta_c"] * h)[:, None])
        sm.add_terms(r, pd, (h / par["eta_d"])[:, None])
        # −S − PV ≤ −curt + P_d − P_c ≤ S − PV
        s_kva = par["inverter"][:, None]
        r = sm.add_rows((n_u, n_t), lb=-s_kva - p.pv_kw.T, ub=s_kva - p.pv_kw.T)
        sm.add_terms(r, curt, -1.0)
        sm.add_terms(r, pd, 1.0)
        sm.add_terms(r, pc, -1.0)
    for u, unit in enumerate(p.pess_units):
        target = par["target"][u]
        if unit.terminal is TerminalMode.SOFT:
            short[u] = sm.add_vars(1, lb=0.0, ub=np.inf)[0]
            sm.add_objective(short[u], weights.terminal_shortfall_per_kwh)
            row = sm.add_rows(1, lb=target)
            sm.add_terms(row, np.array([short[u], e[u, -1]]), 1.0)
        else:
            row = sm.add_rows(1, lb=target, ub=target if unit.terminal is TerminalMode.EQUAL else np.inf)
            sm.add_terms(row, e[u, -1], 1.0)
        if unit.connection is PessConnection.THREE_PHASE:
            continue  # an equal split leaves every A_φ − μ unchanged
        rows = _dev_index(t_idx[:, None], unit.feeder, np.arange(3)[None, :], n_f)
        net_vars = np.stack([curt[u], pd[u], pc[u]], axis=1)  # net = PV − curt + P_d − P_c
        net_sign = np.array([-1.0, 1.0, -1.0])
        lock = pess_locks[u]
        if lock is None or not sts_free or lock.frozen:
            # a known phase per step: the fixed phase, or the STS held at the incumbent's phases
            seq = incumbent.pess_phase[:, u]
            if lock is not None:
                k_sw = int(switch_steps(seq, lock.phase_now).sum())
                sm.offset += k_sw * (weights.switch_per_operation + lock.cost_per_operation)
            g = -(np.eye(3)[seq] - 1.0 / 3.0)  # [T, 3] ∂(A_φ − μ)/∂net
            rhs[:, unit.feeder, :] += p.pv_kw[:, u, None] * g
            for k in range(3):
                var_terms.append((rows, np.repeat(net_vars[:, k, None], 3, axis=1), -net_sign[k] * g))
            continue
        block = _switch_block(
            sm, lock, n_steps=n_t, constant=constant_phases,
            cost=weights.switch_per_operation + lock.cost_per_operation,
        )
        pess_blocks[u] = block
        s_u = par["inverter"][u]
        inj_u = sm.add_vars((n_t, 3), lb=-s_u, ub=s_u)
        inj[u] = inj_u
        r = sm.add_rows((n_t, 3), ub=0.0)  # inj − S·y ≤ 0
        sm.add_terms(r, inj_u, 1.0)
        sm.add_terms(r, block.x, -s_u)
        r = sm.add_rows((n_t, 3), lb=0.0)  # inj + S·y ≥ 0
        sm.add_terms(r, inj_u, 1.0)
        sm.add_terms(r, block.x, s_u)
        r = sm.add_rows(n_t, lb=p.pv_kw[:, u], ub=p.pv_kw[:, u])  # Σ inj + curt − P_d + P_c = PV
        sm.add_terms(r[:, None], inj_u, 1.0)
        sm.add_terms(r[:, None], net_vars, -net_sign[None, :])
        # A_φ − μ gains −inj_φ + net/3: row terms +inj_φ and −net/3
        var_terms.append((rows, inj_u, np.ones((n_t, 3))))
        rhs[:, unit.feeder, :] += p.pv_kw[:, u, None] / 3.0
        for k in range(3):
            var_terms.append((rows, np.repeat(net_vars[:, k, None], 3, axis=1), -net_sign[k] / 3.0 * np.ones((n_t, 3))))

    unb = sm.add_rows((n_t, n_f, 3), lb=rhs)
    sm.add_terms(unb, dev, 1.0)
    flat = unb.ravel()
    for row_index, cols, coefs in var_terms:
        sm.add_terms(flat[row_index], cols, coefs)
    dev_t, peak, excess = _transformer_terms(sm, p, weights, rhs, var_terms, pess=(curt, pd, pc))
    return BuiltModel(
        sm=sm, problem=p, incumbent=incumbent, free=free_idx, switch=blocks, pess_switch=pess_blocks,
        pc=pc, pd=pd, mode=mode, curt=curt, e=e, short=short, inj=inj, dev=dev, dev_t=dev_t, peak=peak,
        excess=excess,
    )


def _transformer_terms(
    sm: SparseModel, p: ControlProblem, weights: ControlWeights, rhs: np.ndarray,
    var_terms: list[tuple[np.ndarray, np.ndarray, np.ndarray]], *, pess: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> tuple[np.ndarray, int, np.ndarray]:
    """The transformer's unbalance (λT), peak phase load (λM) and draw above the balanced peak (λE): rows on
    Σ_f (A − μ)_{t,f,φ}, which are the feeder rows' terms summed at (t, φ); the peak and the excess add μ of the
    transformer, Σ load / 3, which a PESS moves by −net/3. Returns the ids of (Σ_f A − μ)^+ [T, 3] (empty without
    λT), of the peak (-1 without λM) and of (Σ_f A − balanced peak)^+ [T, 3] (empty without λE).

    The peak is one variable above 3·T rows: every step's loads reach it, so each neighbourhood MILP couples the
    whole horizon through it and its LP optimum is degenerate (only the highest step counts); the excess is one
    variable per row, step by step like the unbalance terms."""
    n_t, n_f = p.n_steps, p.n_feeders
    empty = np.zeros((n_t, 0), dtype=np.int64)
    if not (weights.transformer_unbalance_per_kwh or weights.peak_phase_per_kw or weights.peak_excess_per_kwh):
        return empty, -1, empty
    rhs_t = rhs.sum(axis=1)  # [T, 3]

    def at_transformer(row_index: np.ndarray) -> np.ndarray:
        return (row_index // (3 * n_f)) * 3 + row_index % 3

    dev_t = empty
    if weights.transformer_unbalance_per_kwh:
        dev_t = sm.add_vars((n_t, 3), lb=0.0, ub=np.inf)
        sm.add_objective(dev_t, 2.0 * weights.transformer_unbalance_per_kwh * p.step_h)
        rows = sm.add_rows((n_t, 3), lb=rhs_t).ravel()
        sm.add_terms(rows.reshape(n_t, 3), dev_t, 1.0)
        for row_index, cols, coefs in var_terms:
            sm.add_terms(rows[at_transformer(row_index)], cols, coefs)
    # A_φ = (A − μ)_φ + μ, μ = (Σ fixed + Σ switch loads − Σ PV)/3 + Σ_u (curt − P_d + P_c)/3
    mu = (p.fixed_load_kw.sum(axis=(1, 2)) + p.switch_load_kw.sum(axis=1) - p.pv_kw.sum(axis=1)) / 3.0

    def above_rows(upper: np.ndarray, level: float) -> None:
        """Rows upper_{t,φ} − A_{t,φ} ≥ −level (``upper`` [T, 3] variable ids)."""
        rows = sm.add_rows((n_t, 3), lb=rhs_t + mu[:, None] - level).ravel()
        sm.add_terms(rows.reshape(n_t, 3), upper, 1.0)
        for row_index, cols, coefs in var_terms:
            sm.add_terms(rows[at_transformer(row_index)], cols, coefs)
        curt, pd, pc = pess
        for ids, sign in ((curt, -1.0), (pd, 1.0), (pc, -1.0)):  # net = PV − curt + P_d − P_c
            for u in range(p.n_pess):
                sm.add_terms(rows.reshape(n_t, 3), np.repeat(ids[u][:, None], 3, axis=1), sign / 3.0)

    peak = -1
    if weights.peak_phase_per_kw:  # z − A_φ ≥ 0
        # free: under PV export every phase load of the horizon can be negative, and so its peak (a hint of it
        # below a bound of 0 made HiGHS fail with an internal error on Liège June days)
        peak = int(sm.add_vars(1, lb=-np.inf, ub=np.inf)[0])
        sm.add_objective(np.array([peak]), weights.peak_phase_per_kw)
        above_rows(np.full((n_t, 3), peak), 0.0)
    excess = empty
    if weights.peak_excess_per_kwh:  # x_{t,φ} − A_{t,φ} ≥ −balanced peak, x ≥ 0
        excess = sm.add_vars((n_t, 3), lb=0.0, ub=np.inf)
        sm.add_objective(excess, weights.peak_excess_per_kwh * p.step_h)
        above_rows(excess, p.balanced_peak_kw)
    return dev_t, peak, excess


def _dev_index(t: np.ndarray, f: int, phase: np.ndarray, n_feeders: int) -> np.ndarray:
    return (t * n_feeders + f) * 3 + phase
