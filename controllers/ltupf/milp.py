"""LTUPF constraints in an OR-Tools MathOpt model: the network, the linearised power balance of every customer,
phase-switch decisions made exact with big-M, and voltage and thermal limits.

Formulation (Liu et al. §2–3, rectangular current-injection form; I in A, v in p.u.):

- Network, eqs. (1), (2a), (5): the exact linear network of ``ltupf.network``, v = (w − Z·I)/V_base, written once
  per *load bus-phase* k (a bus-phase where some current can be drawn). Its voltage is a pair of variables
  (u_re, u_im) in a frame rotated to the bus-phase's reference angle θ_k (operating point or nominal):
  v_k = e^{jθ_k}·(u_re + j·u_im). Lines and buses without customers are eliminated, so the model holds no
  variable per line or per bus. These rows are dense (every current column in every row); with
  ``MilpOptions.network_rows = NODAL`` the same network is written as sparse nodal rows Y·V + I = J at every
  bus-phase instead (``ltupf.nodal``: cheaper for HiGHS on feeders with few buses per load bus, e.g. Liège; far
  dearer on the IEEE feeder's 906 buses).
- Power balance, eq. (4) linearised (``ltupf.fit``): a current drawn with known power S at bus-phase k is
  I = σ·(a + b·v + c·conj v), σ = conj(S)/V_base, affine in (u_re, u_im): I = P + Q_re·u_re + Q_im·u_im.
- Customers without switch variables: their loads are summed per bus-phase, I_k = P_k + …, two equality rows.
- Switchable customers, eqs. (2b)–(2e), (3a)–(3c), (12), (18)–(22): one binary y_m per candidate connection m
  (terminal j on phase m[j]), Σ_m y_m = 1. The PSD terminal voltage Σ_φ y_φ·V_φ of eqs. (18)–(22) is formed
  from the products w = y_m·u_k, one per candidate terminal (k the bus-phase it would sit on), with big-M rows:
      vm_min·y ≤ w_re ≤ vm_max·y,      u_re − vm_max·(1 − y) ≤ w_re ≤ u_re − vm_min·(1 − y)
      −s·y ≤ w_im ≤ s·y,               u_im − s·(1 − y) ≤ w_im ≤ u_im + s·(1 − y)
  The product of eq. (12), the customer current on phase φ = y_φ·I_c, is then linear: g is affine and y² = y, so
  y·σ·g_k(v_k) = P·y + Q_re·w_re + Q_im·w_im, exactly. (The paper fits g per phase, which is why the products are
  formed per candidate.) The customer's injection into each phase (eq. 2b) is a variable pair, the sum of its
  candidates' currents on that phase. Forming the voltage product rather than the current product (big-M on the
  current, eq. 12 directly) is what keeps the LP relaxation tight: with fractional y the current stays near
  y·I_nominal instead of anywhere within ±M; it made the Liège searches 2-3× faster.
- PESS injections: a caller's variable p (kW, load-positive) at (customer, phase) draws I = p·1e3/(V_base·conj v₀)
  with v₀ the bus-phase's centre voltage: a linear term because p is a decision; the error |Δv|/|v| (a few %
  of a few kW) is accepted.

Big-M values and why they are exact. Every load bus-phase voltage is confined to the box
u_re ∈ [vm_min, vm_max], |u_im| ≤ s = vm_max·sin(δ) (variable bounds; δ = ``angle_window_deg``, the paper's VA
assumption; u_re ≥ vm_min is the low-voltage limit itself and u_re ≤ vm_max is implied by |v| ≤ vm_max). The M of
the rows above are these bounds. With y = 1 they reduce to w = u plus vm_min ≤ w_re ≤ vm_max, |w_im| ≤ s, which
the box already implies; with y = 0 to w = 0 plus u_re − vm_max ≤ 0 ≤ u_re − vm_min and |u_im| ≤ s, again implied.
So for binary y the rows are exactly w = y·u: they neither cut off nor admit anything (McCormick's envelope of a
product with a binary factor is the product itself).

Limits.
- Voltage magnitude, low: Re(v·e^{−jθ}) ≥ vm_min, which implies |v| ≥ vm_min (conservative by the factor
  1/cos(∠v − θ), < 1e-4 relative for the < 1° deviations seen between operating point and solution).
- Voltage magnitude, high, and thermal limits |I| ≤ I_max: convex discs, outer-approximated by tangent planes
  Re(x·e^{−jψ}) ≤ limit: at the reference angle to start (voltages) or ``thermal_facets`` evenly spaced (currents),
  then refined lazily with ``LtupfConstraints.add_cuts``: a tangent at the angle of every violating value of a
  solution. Tangents never cut off a feasible point; at convergence every limit holds exactly.

Row reduction (proved, not guessed). Every current in the model lies in an interval: a known load's current
σ·g(v) is affine in (u_re, u_im), so over the box its real and imaginary parts lie between their values at the
four corners; PESS currents between the variable bounds; and a switchable customer contributes the union over its
candidates (exactly one is active). A voltage or current row is affine in these currents, so interval arithmetic
bounds its real and imaginary parts and hence its magnitude. A row whose bound cannot reach its limit is never
added (nor cut later): it holds for every assignment. Line currents that are the same affine function of the
loads (series sections with nothing connected between them and no shunt) share one row, the lowest rating.
The same bounds also prove limits that every assignment violates (``LtupfConstraints.always_violated``), which
answers "infeasible" with the reason and without a solve. On the IEEE feeder at its heaviest minute this leaves
0 of 8004 limit rows; in the stressed IEEE Case II, 35 line rows; nothing else in the model is per bus or line.

With ``MilpOptions.lazy_limits`` the rows that may bind are not added up front either: ``add_cuts`` adds the ones
a solution violates (constraint generation; exact when it returns 0).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import permutations
from typing import TYPE_CHECKING

import numpy as np
from ortools.math_opt.python import mathopt
from pydantic import BaseModel, ConfigDict, Field

from controllers.errors import LtupfError
from controllers.ltupf.model import OperatingLimits, Prediction
from controllers.ltupf.nodal import add_nodal_rows
from controllers.ltupf.rows import DenseRows
from controllers.solver_output import solve_quietly
from twin.phase import Phase

if TYPE_CHECKING:
    from controllers.ltupf.model import LtupfModel
    from twin.phasing import PhaseMap

__all__ = [
    "CutLoopResult",
    "LtupfConstraints",
    "MilpOptions",
    "NetworkRows",
    "VoltageScope",
    "add_ltupf_constraints",
    "candidate_connections",
    "solve_with_cuts",
]

FROZEN = ConfigDict(frozen=True, extra="forbid")
# A pruned row must stay this far inside its limit (p.u. for voltages, A for currents).
PRUNE_MARGIN = 1e-9


class VoltageScope(StrEnum):
    """Where the voltage limits are imposed in the MILP (load bus-phases are always boxed)."""

    ALL_BUSES = "all_buses"
    CUSTOMER_BUSES = "customer_buses"


class NetworkRows(StrEnum):
    """How the network equations enter the MILP (``ltupf.nodal``)."""

    DENSE = "dense"
    """V = (w − Z·I)/V_base at the load bus-phases: few rows, each over every current column."""
    NODAL = "nodal"
    """Y·V + I = J at every bus-phase: more rows and voltage variables, a few non-zeros each."""


class MilpOptions(BaseModel):
    """How the LTUPF is put into a MILP."""

    model_config = FROZEN
    angle_window_deg: float = Field(
        default=10.0, gt=0, lt=45,
        description="load bus-phase voltages stay within ± this angle of their reference (VA assumption of §3.2)",
    )
    thermal_facets: int = Field(default=4, ge=1, le=64, description="initial tangents of each |I| ≤ I_max disc")
    voltage_scope: VoltageScope = VoltageScope.ALL_BUSES
    line_limits: bool = Field(default=True, description="impose line thermal limits")
    trafo_limits: bool = Field(default=True, description="impose the transformer's phase current limit")
    prune: bool = Field(default=True, description="leave out rows that provably cannot bind")
    network_rows: NetworkRows = Field(
        default=NetworkRows.DENSE, description="the network equations dense (V = w − Z·I at the load bus-phases) or "
        "nodal (Y·V + I = J at every bus-phase, sparse; needs ``NetworkModel.y_bus_s``)")
    lazy_limits: bool = Field(
        default=False,
        description="start without the limit rows outside the load boxes; LtupfConstraints.add_cuts adds the ones "
        "a solution violates (solve, add, re-solve until none)",
    )


def candidate_connections(n_phases: int) -> tuple[tuple[Phase, ...], ...]:
    """Every ordered connection of a customer with ``n_phases`` terminals: 3 for one phase, 6 for two or three."""
    return tuple(tuple(p) for p in permutations(Phase, n_phases))


@dataclass
class _Column:
    """A real decision variable that carries load current at one load column: I[col] += alpha · var."""

    col: int
    var: mathopt.Variable
    alpha: complex
    lo: float
    hi: float


@dataclass
class _Box:
    """Voltage variables of a load bus-phase, p.u., in the frame rotated by its reference angle ``theta``."""

    u_re: mathopt.Variable
    u_im: mathopt.Variable
    theta: float


class RowKind(StrEnum):
    """What a limit row bounds: the voltage of a load bus-phase (its box variables), of another bus-phase, a line
    phase current or a transformer phase current."""

    LOAD_VOLTAGE = "load_voltage"
    VOLTAGE = "voltage"
    LINE = "line"
    TRAFO = "trafo"


@dataclass
class _LimitRow:
    """A limit that interval bounds could not prove slack. Voltages: Re(v·e^{−jθ}) ≥ ``low`` (if ``need_low``)
    and |v| ≤ ``high``; currents: |I| ≤ ``high``. ``index`` is the load column (LOAD_VOLTAGE), the bus-phase
    row, the line-phase row or the transformer phase."""

    kind: RowKind
    index: int
    theta: float
    high: float
    need_high: bool
    low: float = -math.inf
    need_low: bool = False
    low_added: bool = False
    n_tangents: int = 0


@dataclass
class LtupfConstraints:
    """What ``add_ltupf_constraints`` added, and how to read and refine a solution of it.

    ``limit_rows`` are the limits that may bind; with ``MilpOptions.lazy_limits`` only the load bus-phase boxes
    are in the model at first and ``add_cuts`` adds the rows a solution violates (constraint generation), else
    every one is in from the start and ``add_cuts`` only refines the tangent approximations of the discs.
    ``always_violated`` lists limits that interval bounds prove violated by every assignment: the model is then
    infeasible, and these say why.
    """

    ltupf: LtupfModel
    limits: OperatingLimits
    options: MilpOptions
    model: mathopt.Model
    columns: list[_Column]
    boxes: dict[int, _Box]
    injections: dict[tuple[int, Phase], tuple[mathopt.Variable, mathopt.Variable]]
    rows: DenseRows
    limit_rows: list[_LimitRow] = field(default_factory=list)
    always_violated: list[str] = field(default_factory=list)
    n_cuts: int = 0
    stats: dict[str, int] = field(default_factory=dict)

    def load_currents(self, result: mathopt.SolveResult) -> np.ndarray:
        """Current drawn at each load column [3·n_load_bus] (complex, A) in a solution."""
        values = result.variable_values([c.var for c in self.columns])
        i_load = np.zeros(3 * self.ltupf.network.n_load_bus, dtype=complex)
        np.add.at(i_load, [c.col for c in self.columns],
                  [c.alpha * value for c, value in zip(self.columns, values, strict=True)])
        return i_load

    def prediction(self, result: mathopt.SolveResult) -> Prediction:
        """The LTUPF state of a solution: voltages and currents from its load currents (exact affine map)."""
        return self.ltupf.prediction_from_currents(self.load_currents(result))

    def add_cuts(self, result: mathopt.SolveResult, *, vm_tol_pu: float = 1e-6, loading_tol: float = 1e-6) -> int:
        """Add the rows a solution violates: a low-voltage row not yet in the model, or a tangent plane at the
        angle of every high voltage or current beyond its limit (plus the tolerance, p.u. or fraction of the
        rating). Returns how many rows were added; 0 means the solution meets every limit of the LTUPF."""
        pred = self.prediction(result)
        net = self.ltupf.network
        v = pred.v_pu.ravel()
        load_rows = net.load_rows()
        added = 0
        for row in self.limit_rows:
            if row.kind is RowKind.LOAD_VOLTAGE:
                value, tol = complex(v[load_rows[row.index]]), vm_tol_pu
            elif row.kind is RowKind.VOLTAGE:
                value, tol = complex(v[row.index]), vm_tol_pu
            elif row.kind is RowKind.LINE:
                value, tol = complex(pred.i_line_a.ravel()[row.index]), loading_tol * row.high
            else:
                value, tol = complex(pred.i_trafo_a[row.index]), loading_tol * row.high
            if row.need_low and not row.low_added and (value * np.exp(-1j * row.theta)).real < row.low - tol:
                self._add_low(row)
                added += 1
            if row.need_high and abs(value) > row.high + tol:
                self._add_tangent(row, float(np.angle(value)))
                added += 1
        self.rows.flush()
        self.n_cuts += added
        return added

    def _add_low(self, row: _LimitRow) -> None:
        const, coef = self._affine(row)
        rot = np.exp(-1j * row.theta)
        self.rows.add((coef * rot).real, lb=row.low - (const * rot).real)
        row.low_added = True

    def _add_tangent(self, row: _LimitRow, psi: float) -> None:
        """Re(value·e^{−jψ}) ≤ high: the tangent of the disc |value| ≤ high at angle ψ."""
        if row.kind is RowKind.LOAD_VOLTAGE:
            box = self.boxes[row.index]
            d = box.theta - psi
            self.model.add_linear_constraint(math.cos(d) * box.u_re - math.sin(d) * box.u_im <= row.high)
        else:
            const, coef = self._affine(row)
            rot = np.exp(-1j * psi)
            self.rows.add((coef * rot).real, ub=row.high - (const * rot).real)
        row.n_tangents += 1

    def _affine(self, row: _LimitRow) -> tuple[complex, np.ndarray]:
        """A row's value as const + Σ coef·column var (complex; p.u. for voltages, A for currents)."""
        net = self.ltupf.network
        cols = np.array([c.col for c in self.columns], dtype=np.intp)
        alpha = np.array([c.alpha for c in self.columns])
        if row.kind is RowKind.VOLTAGE:
            return complex(net.w_v.ravel()[row.index]) / net.vbase_v, -net.z_ohm[row.index, cols] * alpha / net.vbase_v
        if row.kind is RowKind.LINE:
            return complex(net.i0_line_a.ravel()[row.index]), -net.h_line[row.index, cols] * alpha
        if row.kind is RowKind.TRAFO:
            return complex(net.i0_trafo_a[row.index]), -net.h_trafo[row.index, cols] * alpha
        raise LtupfError(f"row kind {row.kind.value!r} has no dense form; expected voltage, line or trafo")


def add_ltupf_constraints(
    model: mathopt.Model,
    *,
    ltupf: LtupfModel,
    terminal_p_kw: np.ndarray,
    terminal_q_kvar: np.ndarray,
    connections: PhaseMap,
    switches: Mapping[int, Mapping[tuple[Phase, ...], mathopt.Variable]] | None = None,
    pess_p_kw: Mapping[tuple[int, Phase], mathopt.Variable] | None = None,
    limits: OperatingLimits,
    options: MilpOptions | None = None,
    prefix: str = "",
) -> LtupfConstraints:
    """Add the LTUPF of one load state to ``model``.

    ``terminal_p_kw``/``terminal_q_kvar`` [n_customers, 3]: each customer's load per terminal (column j =
    terminal j, load-positive; unused columns 0). Customers not in ``switches`` stay on ``connections``.
    ``switches[i]`` maps each allowed connection of customer i to a binary variable of ``model`` (this function
    adds Σ = 1). ``pess_p_kw[(i, φ)]`` is a variable with finite bounds, extra load-positive power of customer i on
    phase φ. Names of added variables start with ``prefix``.

    Raises LtupfError listing every problem with the inputs (shapes, unknown customers, connections of the wrong
    length, unbounded PESS variables).
    """
    options = options or MilpOptions()
    switches = switches or {}
    pess_p_kw = pess_p_kw or {}
    net = ltupf.network
    _validate(ltupf, terminal_p_kw, terminal_q_kvar, connections, switches, pess_p_kw)
    vb = net.vbase_v
    s_terminal = (terminal_p_kw + 1j * terminal_q_kvar) * 1e3

    # Fixed customers' power per load column; candidate terminals of switchable ones.
    s_fixed = np.zeros(3 * net.n_load_bus, dtype=complex)
    candidates: list[tuple[int, int, tuple[Phase, ...], mathopt.Variable, int, complex]] = []
    for i, conn in enumerate(connections.connections):
        lb = int(net.customer_load_bus[i])
        if i in switches:
            for m, (cand, y) in enumerate(switches[i].items()):
                for j, phase in enumerate(cand):
                    if s_terminal[i, j] != 0:
                        candidates.append((i, m, cand, y, 3 * lb + int(phase), complex(s_terminal[i, j])))
        else:
            for j, phase in enumerate(conn):
                s_fixed[3 * lb + int(phase)] += s_terminal[i, j]
    load_cols = sorted(
        set(np.flatnonzero(s_fixed).tolist())
        | {c[4] for c in candidates}
        | {3 * int(net.customer_load_bus[i]) + int(ph) for i, ph in pess_p_kw}
    )

    # Voltage box of every load bus-phase, in a frame rotated to its reference angle.
    rows_of_cols = net.load_rows()
    sin_window = math.sin(math.radians(options.angle_window_deg))
    boxes: dict[int, _Box] = {}
    for k in load_cols:
        bus, ph = divmod(int(rows_of_cols[k]), 3)
        name = f"{prefix}u[{net.bus_ids[bus]}.{Phase(ph).name}]"
        boxes[k] = _Box(
            u_re=model.add_variable(lb=limits.vm_min_pu, ub=limits.vm_max_pu, name=f"{name}.re"),
            u_im=model.add_variable(lb=-limits.vm_max_pu * sin_window, ub=limits.vm_max_pu * sin_window,
                                    name=f"{name}.im"),
            theta=float(ltupf.reference_angle_rad[bus, ph]),
        )
    corners = [(re, im) for re in (limits.vm_min_pu, limits.vm_max_pu)
               for im in (-limits.vm_max_pu * sin_window, limits.vm_max_pu * sin_window)]

    def balance(k: int, s_va: complex) -> tuple[complex, complex, complex]:
        """I = P + Q_re·u_re + Q_im·u_im of power s_va drawn at load column k."""
        sigma = np.conj(s_va) / vb
        rot = np.exp(1j * boxes[k].theta)
        a, b, c = ltupf.fit.a[k], ltupf.fit.b[k], ltupf.fit.c[k]
        q_re = sigma * (b * rot + c * np.conj(rot))
        q_im = 1j * sigma * (b * rot - c * np.conj(rot))
        return complex(sigma * a), complex(q_re), complex(q_im)

    def ranges(p: complex, q_re: complex, q_im: complex) -> tuple[float, float, float, float]:
        values = [p + q_re * re + q_im * im for re, im in corners]
        return (min(x.real for x in values), max(x.real for x in values),
                min(x.imag for x in values), max(x.imag for x in values))

    columns: list[_Column] = []
    # Pruning terms: (col, alpha, lo, hi, group, candidate); group -1 for independent terms.
    prune_terms: list[tuple[int, complex, float, float, int, int]] = []

    def balance_rows(x: mathopt.Variable, y: mathopt.Variable, k: int, p: complex, q_re: complex,
                     q_im: complex) -> None:
        box = boxes[k]
        model.add_linear_constraint(x - q_re.real * box.u_re - q_im.real * box.u_im == p.real)
        model.add_linear_constraint(y - q_re.imag * box.u_re - q_im.imag * box.u_im == p.imag)

    for k in load_cols:
        if s_fixed[k] == 0:
            continue
        p, q_re, q_im = balance(k, complex(s_fixed[k]))
        lo_re, hi_re, lo_im, hi_im = ranges(p, q_re, q_im)
        x = model.add_variable(lb=lo_re, ub=hi_re, name=f"{prefix}i_fixed[{k}].re")
        y = model.add_variable(lb=lo_im, ub=hi_im, name=f"{prefix}i_fixed[{k}].im")
        balance_rows(x, y, k, p, q_re, q_im)
        columns += [_Column(k, x, 1.0, lo_re, hi_re), _Column(k, y, 1j, lo_im, hi_im)]
        prune_terms += [(k, 1.0, lo_re, hi_re, -1, -1), (k, 1j, lo_im, hi_im, -1, -1)]

    # Switchable customers: Σ y = 1; for every candidate terminal the PSD terminal voltage w = y·u (eqs. 18–22,
    # exact for binary y with u in its box); its current y·σ·g(v) = P·y + Q_re·w_re + Q_im·w_im is linear in
    # (y, w), and the injection into each phase (eq. 2b) is the sum of its candidates' currents on that phase.
    injections: dict[tuple[int, Phase], tuple[mathopt.Variable, mathopt.Variable]] = {}
    injection_terms: dict[tuple[int, Phase], list[tuple[complex, mathopt.Variable]]] = {}
    for allowed in switches.values():
        model.add_linear_constraint(mathopt.fast_sum(allowed.values()) == 1)
    v_lo, v_hi = limits.vm_min_pu, limits.vm_max_pu
    s_hi = limits.vm_max_pu * sin_window
    for i, m, cand, y_m, k, s_va in candidates:
        p, q_re, q_im = balance(k, s_va)
        lo_re, hi_re, lo_im, hi_im = ranges(p, q_re, q_im)
        box = boxes[k]
        tag = f"{prefix}w[{i}.{''.join(ph.name for ph in cand)}.{Phase(k % 3).name}]"
        w_re = model.add_variable(lb=0.0, ub=v_hi, name=f"{tag}.re")
        w_im = model.add_variable(lb=-s_hi, ub=s_hi, name=f"{tag}.im")
        model.add_linear_constraint(w_re - v_lo * y_m >= 0)
        model.add_linear_constraint(w_re - v_hi * y_m <= 0)
        model.add_linear_constraint(w_re - box.u_re - v_lo * y_m <= -v_lo)
        model.add_linear_constraint(w_re - box.u_re - v_hi * y_m >= -v_hi)
        model.add_linear_constraint(w_im + s_hi * y_m >= 0)
        model.add_linear_constraint(w_im - s_hi * y_m <= 0)
        model.add_linear_constraint(w_im - box.u_im + s_hi * y_m <= s_hi)
        model.add_linear_constraint(w_im - box.u_im - s_hi * y_m >= -s_hi)
        injection_terms.setdefault((i, Phase(k % 3)), []).extend([(p, y_m), (q_re, w_re), (q_im, w_im)])
        prune_terms += [(k, 1.0, lo_re, hi_re, i, m), (k, 1j, lo_im, hi_im, i, m)]
    for (i, phase), terms in injection_terms.items():
        k = 3 * int(net.customer_load_bus[i]) + int(phase)
        # Bounds of the injection: the widest over candidates (several terminals of one candidate never share a
        # phase, so at most one candidate term is non-zero on it).
        mine = [t for t in prune_terms if t[4] == i and t[0] == k]
        lo_re = min([0.0] + [t[2] for t in mine if t[1] == 1.0])
        hi_re = max([0.0] + [t[3] for t in mine if t[1] == 1.0])
        lo_im = min([0.0] + [t[2] for t in mine if t[1] == 1j])
        hi_im = max([0.0] + [t[3] for t in mine if t[1] == 1j])
        name = f"{prefix}i_inj[{i}.{phase.name}]"
        jx = model.add_variable(lb=lo_re, ub=hi_re, name=f"{name}.re")
        jy = model.add_variable(lb=lo_im, ub=hi_im, name=f"{name}.im")
        model.add_linear_constraint(jx == mathopt.fast_sum(coef.real * var for coef, var in terms))
        model.add_linear_constraint(jy == mathopt.fast_sum(coef.imag * var for coef, var in terms))
        injections[(i, phase)] = (jx, jy)
        columns += [_Column(k, jx, 1.0, lo_re, hi_re), _Column(k, jy, 1j, lo_im, hi_im)]

    for (i, phase), var in pess_p_kw.items():
        k = 3 * int(net.customer_load_bus[i]) + int(phase)
        kappa = complex(1e3 / (vb * np.conj(ltupf.centre_pu[k])))
        p_lo, p_hi = float(var.lower_bound), float(var.upper_bound)
        columns.append(_Column(k, var, kappa, p_lo, p_hi))
        prune_terms.append((k, kappa, p_lo, p_hi, -1, -1))

    constraints = LtupfConstraints(
        ltupf=ltupf, limits=limits, options=options, model=model, columns=columns, boxes=boxes,
        injections=injections, rows=DenseRows(model, [c.var for c in columns]),
    )
    cols = np.array([c.col for c in columns], dtype=np.intp)
    alpha = np.array([c.alpha for c in columns])

    # Network equations: at the load bus-phases, u = e^{−jθ}(w − Z·I)/V_base (dense), or Y·V + E·I = J at every
    # bus-phase (sparse, ``ltupf.nodal``).
    if options.network_rows is NetworkRows.NODAL:
        add_nodal_rows(model, net, boxes={k: (b.u_re, b.u_im, b.theta) for k, b in boxes.items()},
                       columns=[(c.col, c.var, c.alpha) for c in columns], prefix=prefix)
    for k in load_cols:
        box = boxes[k]
        if options.network_rows is NetworkRows.DENSE:
            row = int(rows_of_cols[k])
            rot = np.exp(-1j * box.theta)
            coef = -rot * net.z_ohm[row, cols] * alpha / vb
            const = rot * net.w_v.ravel()[row] / vb
            constraints.rows.add(coef.real, extra=((box.u_re, -1.0),), lb=-const.real, ub=-const.real)
            constraints.rows.add(coef.imag, extra=((box.u_im, -1.0),), lb=-const.imag, ub=-const.imag)
        # The box's u_re ≤ vm_max is the first tangent of |v| ≤ vm_max; u_re ≥ vm_min is the low limit.
        constraints.limit_rows.append(_LimitRow(RowKind.LOAD_VOLTAGE, k, box.theta, limits.vm_max_pu, True))

    bounds = _RowBounds(prune_terms)
    n_proved = _voltage_rows(constraints, bounds, {int(rows_of_cols[k]) for k in load_cols})
    if options.line_limits:
        n_proved += _current_rows(constraints, bounds, kind=RowKind.LINE, const=net.i0_line_a.ravel(),
                                  sens=net.h_line, limit=np.repeat(net.max_i_line_a, 3) * limits.line_loading_max,
                                  ref_angle=ltupf.reference_angle_rad[net.line_from_bus].ravel())
    if options.trafo_limits:
        n_proved += _current_rows(constraints, bounds, kind=RowKind.TRAFO, const=net.i0_trafo_a, sens=net.h_trafo,
                                  limit=np.full(3, net.rated_i_trafo_a * limits.trafo_loading_max),
                                  ref_angle=ltupf.reference_angle_rad[net.root_bus])
    if not options.lazy_limits:
        for limit_row in constraints.limit_rows:
            if limit_row.need_low:
                constraints._add_low(limit_row)
            if limit_row.need_high and limit_row.kind is not RowKind.LOAD_VOLTAGE:
                n_facets = 1 if limit_row.kind is RowKind.VOLTAGE else options.thermal_facets
                for f in range(n_facets):
                    constraints._add_tangent(limit_row, limit_row.theta + 2 * math.pi * f / n_facets)
    constraints.rows.flush()
    open_rows = [r for r in constraints.limit_rows if r.kind is not RowKind.LOAD_VOLTAGE]
    constraints.stats = {
        "load_bus_phases": len(load_cols),
        "current_columns": len(columns),
        "candidate_terminals": len(candidates),
        "limits_proved_slack": n_proved,
        "voltage_limits_open": sum(r.kind is RowKind.VOLTAGE for r in open_rows),
        "current_limits_open": sum(r.kind is not RowKind.VOLTAGE for r in open_rows),
        "limits_always_violated": len(constraints.always_violated),
    }
    return constraints


@dataclass(frozen=True)
class CutLoopResult:
    """The last solve of ``solve_with_cuts``, how many rounds of rows it added, and the total solver time."""

    result: mathopt.SolveResult
    rounds: int
    solve_s: float
    converged: bool  # the last solution met every LTUPF limit (no row left to add)


def solve_with_cuts(
    model: mathopt.Model,
    constraints: Sequence[LtupfConstraints],
    *,
    params: mathopt.SolveParameters | None = None,
    max_rounds: int = 20,
) -> CutLoopResult:
    """Solve ``model`` with HiGHS, add the LTUPF rows the solution violates (every ``constraints``, e.g. one per
    step of a horizon) and solve again until none is violated or ``max_rounds`` re-solves were made.

    Returns the last result whatever its status: check ``result.termination`` first (an infeasible or
    time-limited solve ends the loop).
    """
    solve_s = 0.0
    rounds = 0
    while True:
        result = solve_quietly(model, mathopt.SolverType.HIGHS, params=params)
        solve_s += result.solve_time().total_seconds()
        if not result.has_primal_feasible_solution():
            return CutLoopResult(result, rounds, solve_s, converged=False)
        added = sum(c.add_cuts(result) for c in constraints)
        if added == 0:
            return CutLoopResult(result, rounds, solve_s, converged=True)
        if rounds >= max_rounds:
            return CutLoopResult(result, rounds, solve_s, converged=False)
        rounds += 1


class _RowBounds:
    """Interval bounds of affine rows const + Σ ρ[col]·alpha·var over the pruning terms' ranges."""

    def __init__(self, terms: list[tuple[int, complex, float, float, int, int]]) -> None:
        self.cols = np.array([t[0] for t in terms], dtype=np.intp)
        self.alpha = np.array([t[1] for t in terms], dtype=complex)
        self.lo = np.array([t[2] for t in terms])
        self.hi = np.array([t[3] for t in terms])
        group = np.array([t[4] for t in terms], dtype=np.intp)
        cand = np.array([t[5] for t in terms], dtype=np.intp)
        self.free = group < 0
        keys = sorted({(int(g), int(m)) for g, m in zip(group, cand, strict=True) if g >= 0})
        self.groups = sorted({g for g, _ in keys})
        key_index = {key: n for n, key in enumerate(keys)}
        # indicator[term, group-candidate]
        self.indicator = np.zeros((len(terms), len(keys)))
        for n, (g, m) in enumerate(zip(group, cand, strict=True)):
            if g >= 0:
                self.indicator[n, key_index[(int(g), int(m))]] = 1.0
        self.key_group = np.array([g for g, _ in keys], dtype=np.intp)

    def box(self, const: np.ndarray, sens: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Bounds (re_lo, re_hi, im_lo, im_hi) of the complex rows const + Σ sens[:, col]·alpha·var."""
        re_lo, re_hi, im_lo, im_hi = const.real.copy(), const.real.copy(), const.imag.copy(), const.imag.copy()
        if self.cols.size == 0:
            return re_lo, re_hi, im_lo, im_hi
        g = sens[:, self.cols] * self.alpha
        for part, lo, hi in ((g.real, re_lo, re_hi), (g.imag, im_lo, im_hi)):
            a, b = part * self.lo, part * self.hi
            t_lo, t_hi = np.minimum(a, b), np.maximum(a, b)
            lo += t_lo[:, self.free].sum(axis=1)
            hi += t_hi[:, self.free].sum(axis=1)
            if self.indicator.shape[1]:
                c_lo, c_hi = t_lo @ self.indicator, t_hi @ self.indicator
                for grp in self.groups:
                    sel = self.key_group == grp
                    lo += c_lo[:, sel].min(axis=1)
                    hi += c_hi[:, sel].max(axis=1)
        return re_lo, re_hi, im_lo, im_hi


def _min_modulus(re_lo: np.ndarray, re_hi: np.ndarray, im_lo: np.ndarray, im_hi: np.ndarray) -> np.ndarray:
    """Smallest |x| over the boxes (0 when a box contains the origin)."""
    def gap(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        return np.where((lo <= 0) & (hi >= 0), 0.0, np.minimum(abs(lo), abs(hi)))
    return np.asarray(np.hypot(gap(re_lo, re_hi), gap(im_lo, im_hi)))


def _max_modulus(re_lo: np.ndarray, re_hi: np.ndarray, im_lo: np.ndarray, im_hi: np.ndarray) -> np.ndarray:
    """Largest |x| over the boxes re ∈ [re_lo, re_hi], im ∈ [im_lo, im_hi] (at a corner)."""
    return np.asarray(np.hypot(np.maximum(abs(re_lo), abs(re_hi)), np.maximum(abs(im_lo), abs(im_hi))))


def _voltage_rows(constraints: LtupfConstraints, bounds: _RowBounds, boxed_rows: set[int]) -> int:
    """Register the voltage limits of the bus-phases outside the load boxes that interval bounds do not prove
    slack: Re(v·e^{−jθ}) ≥ vm_min (θ the reference angle) and |v| ≤ vm_max. Returns how many were proved slack."""
    ltupf, limits, options = constraints.ltupf, constraints.limits, constraints.options
    net = ltupf.network
    scope = np.arange(3 * net.n_bus) if options.voltage_scope is VoltageScope.ALL_BUSES else net.load_rows()
    rows = np.array([r for r in scope if int(r) not in boxed_rows], dtype=np.intp)
    if rows.size == 0:
        return 0
    theta = ltupf.reference_angle_rad.ravel()[rows]
    rot = np.exp(-1j * theta)
    sens = -rot[:, None] * net.z_ohm[rows] / net.vbase_v
    const = rot * net.w_v.ravel()[rows] / net.vbase_v
    re_lo, re_hi, im_lo, im_hi = bounds.box(const, sens)
    vm_bound = _max_modulus(re_lo, re_hi, im_lo, im_hi)
    vm_least = _min_modulus(re_lo, re_hi, im_lo, im_hi)
    for n in np.flatnonzero(vm_bound < limits.vm_min_pu - PRUNE_MARGIN):
        bus, ph = divmod(int(rows[n]), 3)
        constraints.always_violated.append(
            f"voltage at bus {net.bus_ids[bus]!r} phase {Phase(ph).name} is at most {vm_bound[n]:.4f} p.u. for "
            f"every assignment (limit {limits.vm_min_pu})")
    for n in np.flatnonzero(vm_least > limits.vm_max_pu + PRUNE_MARGIN):
        bus, ph = divmod(int(rows[n]), 3)
        constraints.always_violated.append(
            f"voltage at bus {net.bus_ids[bus]!r} phase {Phase(ph).name} is at least {vm_least[n]:.4f} p.u. for "
            f"every assignment (limit {limits.vm_max_pu})")
    keep_all = np.full(rows.size, not options.prune)
    need_low = keep_all | (re_lo < limits.vm_min_pu + PRUNE_MARGIN)
    need_high = keep_all | (vm_bound > limits.vm_max_pu - PRUNE_MARGIN)
    for n in np.flatnonzero(need_low | need_high):
        constraints.limit_rows.append(_LimitRow(
            RowKind.VOLTAGE, int(rows[n]), float(theta[n]), limits.vm_max_pu, bool(need_high[n]),
            low=limits.vm_min_pu, need_low=bool(need_low[n]),
        ))
    return int((~need_low).sum() + (~need_high).sum())


def _current_rows(
    constraints: LtupfConstraints,
    bounds: _RowBounds,
    *,
    kind: RowKind,
    const: np.ndarray,
    sens: np.ndarray,
    limit: np.ndarray,
    ref_angle: np.ndarray,
) -> int:
    """Register |I| ≤ limit for the phase currents const − sens·I_load that interval bounds do not prove below
    their limit. Returns how many were proved slack."""
    box = bounds.box(const, -sens)
    i_bound = _max_modulus(*box)
    i_least = _min_modulus(*box)
    net = constraints.ltupf.network
    for r in np.flatnonzero(i_least > limit + PRUNE_MARGIN).tolist():
        where = (f"line {net.line_ids[r // 3]!r} phase {Phase(r % 3).name}" if kind is RowKind.LINE
                 else f"transformer {net.transformer_id!r} phase {Phase(r).name}")
        constraints.always_violated.append(
            f"{where} carries at least {i_least[r]:.1f} A for every assignment (limit {limit[r]:.1f} A)")
    need = np.full(limit.shape, not constraints.options.prune) | (i_bound > limit - PRUNE_MARGIN)
    # Currents that are the same affine function of the loads (lines in series with nothing connected between
    # them, on a feeder without shunt capacitance) need one row: the one with the lowest rating.
    scale = max(float(np.abs(sens).max()), 1e-30)
    kept: dict[bytes, int] = {}
    for r in np.flatnonzero(need).tolist():
        key = np.round(np.concatenate([[const[r]], sens[r]]) / scale, 9).tobytes()
        if key not in kept or limit[r] < limit[kept[key]]:
            kept[key] = r
    for r in sorted(kept.values()):
        constraints.limit_rows.append(_LimitRow(kind, r, float(ref_angle[r]), float(limit[r]), True))
    return int((~need).sum())


def _validate(
    ltupf: LtupfModel,
    terminal_p_kw: np.ndarray,
    terminal_q_kvar: np.ndarray,
    connections: PhaseMap,
    switches: Mapping[int, Mapping[tuple[Phase, ...], mathopt.Variable]],
    pess_p_kw: Mapping[tuple[int, Phase], mathopt.Variable],
) -> None:
    n = ltupf.n_customers
    problems: list[str] = []
    for name, arr in (("terminal_p_kw", terminal_p_kw), ("terminal_q_kvar", terminal_q_kvar)):
        if not isinstance(arr, np.ndarray) or arr.shape != (n, 3):
            shape = list(arr.shape) if isinstance(arr, np.ndarray) else type(arr).__name__
            problems.append(f"{name} has shape {shape}; expected [{n}, 3] (customers in feeder order, terminals)")
        elif not np.isfinite(arr).all():
            problems.append(f"{name} has a non-finite value at {np.argwhere(~np.isfinite(arr))[0].tolist()}")
    if len(connections.connections) != n:
        problems.append(f"connections cover {len(connections.connections)} customers; expected {n}")
    for i, opts in switches.items():
        if not 0 <= i < n:
            problems.append(f"switches: customer index {i} is out of range 0..{n - 1}")
            continue
        if not opts:
            problems.append(f"switches[{i}] offers no connection; expected at least one")
        n_ph = len(connections.connections[i]) if i < len(connections.connections) else 0
        for cand in opts:
            if len(cand) != n_ph or len(set(cand)) != len(cand):
                problems.append(f"switches[{i}]: connection {''.join(p.name for p in cand)!r} has "
                                f"{len(cand)} phase(s); expected {n_ph} distinct phases")
    for (i, phase), var in pess_p_kw.items():
        if not 0 <= i < n:
            problems.append(f"pess_p_kw: customer index {i} is out of range 0..{n - 1}")
        if not (math.isfinite(var.lower_bound) and math.isfinite(var.upper_bound)):
            problems.append(f"pess_p_kw[({i}, {Phase(phase).name})]: variable {var.name!r} has bounds "
                            f"[{var.lower_bound}, {var.upper_bound}]; expected finite bounds")
    if problems:
        numbered = "\n".join(f"  {n}. {p}" for n, p in enumerate(problems, start=1))
        raise LtupfError(f"invalid LTUPF MILP inputs:\n{numbered}")
