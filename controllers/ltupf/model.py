"""The LTUPF of a feeder at one linearisation point: predicted voltages, currents and limit violations of a
given set of customer loads (the feasibility check a controller runs on a plan).

The model couples the exact linear network (``ltupf.network``, V = w − Z·I) with the linearised customer power
balance (``ltupf.fit``): the current drawn at bus-phase k is I_k = conj(S_k) · (a_k + b_k·v_k + c_k·conj(v_k)) / V_base
(S_k the sum of the loads on it, v_k its voltage in p.u.). For known loads both are linear in the load currents,
so one real linear system of size 2·m (m = loaded bus-phases, ≤ 165 on the IEEE feeder) gives them; the voltages
of all buses and the currents of all lines follow from the dense sensitivities. With CBM centred at a solved
power-flow state the model reproduces that state exactly.

Latency: a check costs about 1 ms on the 906-bus IEEE feeder (0.15 ms on Liège). It stays there on a busy
machine because nothing in it goes through multi-threaded OpenBLAS, whose worker threads wait for a time slice
when the cores are taken (10-60 ms per call measured on this shared 2-core machine): the load currents come from a
fixed-point iteration (9-14 small products), the large products from einsum. Processes that call numpy's BLAS
elsewhere in the hot loop should still run with ``OPENBLAS_NUM_THREADS=1``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Self

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from threadpoolctl import ThreadpoolController

from controllers.errors import LtupfError
from controllers.ltupf.fit import PAPER_REGION, CurrentFit, FitRegion, Linearisation, fit_current
from twin.phase import Phase

if TYPE_CHECKING:
    from controllers.ltupf.network import NetworkModel
    from twin.powerflow import PowerFlowResult

__all__ = [
    "FeasibilityReport",
    "LtupfModel",
    "OperatingLimits",
    "OperatingPoint",
    "Prediction",
    "Violation",
    "ViolationKind",
    "linearise",
    "violations",
    "violations_of_state",
]

FROZEN = ConfigDict(frozen=True, extra="forbid")
# Fixed-point solve of the load currents: relative step below which it stops, and when it gives up for LAPACK.
FIXED_POINT_TOLERANCE = 1e-14
FIXED_POINT_MAX_ITERATIONS = 60


class OperatingLimits(BaseModel):
    """Limits a feasible state keeps: bus-phase voltage magnitudes, line and transformer phase currents."""

    model_config = FROZEN
    vm_min_pu: float = Field(default=0.90, gt=0, description="lowest line-to-neutral voltage, p.u.")
    vm_max_pu: float = Field(default=1.10, gt=0, description="highest line-to-neutral voltage, p.u.")
    line_loading_max: float = Field(default=1.0, gt=0, description="highest line phase current / max_i_ka")
    trafo_loading_max: float = Field(
        default=1.0, gt=0, description="highest transformer LV phase current / rated current sn/(3·V_ln)"
    )

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.vm_min_pu >= self.vm_max_pu:
            raise ValueError(f"vm_min_pu {self.vm_min_pu} must be below vm_max_pu {self.vm_max_pu}")
        return self

_BLAS = ThreadpoolController()
"""One BLAS thread for the batched products of ``check_states`` (see ``_matmul``)."""


@dataclass(frozen=True)
class OperatingPoint:
    """A solved state to linearise at: voltages of every feeder bus (``feeder.buses`` order, MV bus included)."""

    vm_pu: np.ndarray  # [n_feeder_bus, 3]
    va_deg: np.ndarray  # [n_feeder_bus, 3]

    @classmethod
    def from_result(cls, result: PowerFlowResult, state: int = 0) -> OperatingPoint:
        """State ``state`` of a power-flow result; LtupfError if it did not converge."""
        if not bool(result.converged[state]):
            raise LtupfError(f"power-flow state {state} did not converge; expected a solved state to linearise at")
        return cls(vm_pu=np.array(result.vm_pu[state]), va_deg=np.array(result.va_deg[state]))


class ViolationKind(StrEnum):
    VOLTAGE_LOW = "voltage_low"
    VOLTAGE_HIGH = "voltage_high"
    LINE_OVERLOAD = "line_overload"
    TRAFO_OVERLOAD = "trafo_overload"


@dataclass(frozen=True)
class Violation:
    """One limit exceeded: ``value`` and ``limit`` are p.u. voltages or loadings (current / rating)."""

    kind: ViolationKind
    element: str  # bus id, line id or transformer id
    phase: Phase
    value: float
    limit: float

    @property
    def excess(self) -> float:
        """How far beyond the limit, in the limit's unit (positive)."""
        return self.limit - self.value if self.kind is ViolationKind.VOLTAGE_LOW else self.value - self.limit

    def __str__(self) -> str:
        unit = "p.u." if self.kind in (ViolationKind.VOLTAGE_LOW, ViolationKind.VOLTAGE_HIGH) else "of rating"
        return f"{self.kind.value} at {self.element!r} phase {self.phase.name}: {self.value:.4f} {unit} " \
               f"(limit {self.limit:.4f})"


@dataclass(frozen=True)
class Prediction:
    """LTUPF state of one set of loads. Buses in ``network.bus_ids`` order (LV only), lines in feeder order."""

    v_pu: np.ndarray  # [n_bus, 3] complex line-to-neutral voltage, p.u.
    i_line_a: np.ndarray  # [n_line, 3] complex from-end current, A
    i_trafo_a: np.ndarray  # [3] complex current the transformer delivers into the LV bus, A
    s_trafo_kva: np.ndarray  # [3] complex power the transformer delivers into the LV bus, kVA
    i_load_a: np.ndarray  # [3·n_load_bus] complex current drawn at each load bus-phase, A

    @property
    def vm_pu(self) -> np.ndarray:
        return np.abs(self.v_pu)

    @property
    def va_deg(self) -> np.ndarray:
        return np.degrees(np.angle(self.v_pu))

    @property
    def i_line_ka(self) -> np.ndarray:
        return np.abs(self.i_line_a) * 1e-3

    @property
    def p_trafo_kw(self) -> np.ndarray:
        return np.asarray(self.s_trafo_kva.real)

    @property
    def q_trafo_kvar(self) -> np.ndarray:
        return np.asarray(self.s_trafo_kva.imag)


@dataclass(frozen=True)
class FeasibilityReport:
    """A predicted state and every limit it violates, worst first."""

    prediction: Prediction
    violations: tuple[Violation, ...]
    limits: OperatingLimits

    @property
    def feasible(self) -> bool:
        return not self.violations


@dataclass(frozen=True)
class LtupfModel:
    """The network with the customers' power balance linearised around ``centre_pu``.

    ``fit`` holds 1/conj(v) ≈ a + b·v + c·conj(v) for every load bus-phase (flattened like the load columns);
    ``reference_angle_rad`` [n_bus, 3] is the angle each bus-phase is linearised around (the operating point's,
    or the nominal phase angle), which the MILP uses to linearise voltage magnitudes.
    """

    network: NetworkModel
    method: Linearisation
    region: FitRegion
    centre_pu: np.ndarray  # [3·n_load_bus] complex
    fit: CurrentFit
    reference_angle_rad: np.ndarray  # [n_bus, 3]
    from_operating_point: bool

    @property
    def n_customers(self) -> int:
        return int(self.network.customer_load_bus.shape[0])

    def load_power_va(self, p_kw: np.ndarray, q_kvar: np.ndarray) -> np.ndarray:
        """Complex power drawn at each load bus-phase, VA, [3·n_load_bus], from per-customer per-phase loads."""
        s = np.zeros((self.network.n_load_bus, 3), dtype=complex)
        np.add.at(s, self.network.customer_load_bus, (p_kw + 1j * q_kvar) * 1e3)
        return s.ravel()

    def predict(
        self,
        *,
        p_kw: np.ndarray,
        q_kvar: np.ndarray,
        pess_p_kw: np.ndarray | None = None,
        pess_q_kvar: np.ndarray | None = None,
    ) -> Prediction:
        """LTUPF state for per-customer per-network-phase loads [n_customers, 3] (load-positive, customers in
        feeder order), plus optional PESS injections of the same shape (load-positive: charging > 0).

        Raises LtupfError naming the array when a shape is wrong or a value is not finite.
        """
        p, q = self._loads(p_kw=p_kw, q_kvar=q_kvar, pess_p_kw=pess_p_kw, pess_q_kvar=pess_q_kvar)
        return self.predict_from_load_power(self.load_power_va(p, q))

    def predict_from_load_power(self, s_va: np.ndarray) -> Prediction:
        """LTUPF state for the complex power drawn at each load bus-phase [3·n_load_bus], VA."""
        return self.prediction_from_currents(self._solve_load_currents(s_va))

    def prediction_from_currents(self, i_load: np.ndarray) -> Prediction:
        """The state the network is in when the load bus-phases draw ``i_load`` [3·n_load_bus] (complex, A)."""
        net = self.network
        v_pu = (net.w_v.ravel() - _matvec(net.z_ohm, i_load)) / net.vbase_v
        i_line = net.i0_line_a - _matvec(net.h_line, i_load).reshape(net.n_line, 3)
        i_trafo = net.i0_trafo_a - net.h_trafo @ i_load
        s_trafo = v_pu.reshape(net.n_bus, 3)[net.root_bus] * net.vbase_v * np.conj(i_trafo) * 1e-3
        return Prediction(
            v_pu=v_pu.reshape(net.n_bus, 3), i_line_a=i_line, i_trafo_a=i_trafo, s_trafo_kva=s_trafo, i_load_a=i_load
        )

    def check(
        self,
        *,
        p_kw: np.ndarray,
        q_kvar: np.ndarray,
        limits: OperatingLimits,
        pess_p_kw: np.ndarray | None = None,
        pess_q_kvar: np.ndarray | None = None,
    ) -> FeasibilityReport:
        """Predict the state of these loads and list every violated limit, worst first (see ``predict``)."""
        prediction = self.predict(p_kw=p_kw, q_kvar=q_kvar, pess_p_kw=pess_p_kw, pess_q_kvar=pess_q_kvar)
        return FeasibilityReport(
            prediction=prediction,
            violations=violations(self.network, prediction, limits),
            limits=limits,
        )

    def check_states(
        self,
        *,
        p_kw: np.ndarray,
        q_kvar: np.ndarray,
        limits: OperatingLimits,
        pess_p_kw: np.ndarray | None = None,
    ) -> list[FeasibilityReport]:
        """``check`` of k states at once: ``p_kw``, ``q_kvar`` [k, n_customers, 3], ``pess_p_kw`` [n_customers, 3]
        the same in every state, or [k, n_customers, 3] one per state. Each state's load currents are solved on
        their own; the network's sensitivity matrices are applied to all k in one product each (they are read once,
        not k times: most of the cost of k separate checks). Raises LtupfError as ``predict`` does, naming the state."""
        if p_kw.ndim != 3 or q_kvar.shape != p_kw.shape:
            raise LtupfError(f"invalid LTUPF states: p_kw has shape {list(p_kw.shape)} and q_kvar "
                             f"{list(q_kvar.shape)}; expected both [k, {self.n_customers}, 3]")
        currents = []
        for k in range(p_kw.shape[0]):
            try:
                pess = pess_p_kw[k] if pess_p_kw is not None and pess_p_kw.ndim == 3 else pess_p_kw
                p, q = self._loads(p_kw=p_kw[k], q_kvar=q_kvar[k], pess_p_kw=pess, pess_q_kvar=None)
            except LtupfError as err:
                raise LtupfError(f"state {k}: {err}") from err
            currents.append(self._solve_load_currents(self.load_power_va(p, q)))
        if not currents:
            return []
        net = self.network
        i_load = np.stack(currents, axis=1)  # [3·n_load_bus, k]
        v_pu = (net.w_v.ravel()[:, None] - _matmul(net.z_ohm, i_load)) / net.vbase_v
        i_line = net.i0_line_a.ravel()[:, None] - _matmul(net.h_line, i_load)
        i_trafo = net.i0_trafo_a[:, None] - _matmul(net.h_trafo, i_load)
        reports = []
        for k in range(i_load.shape[1]):
            v = v_pu[:, k].reshape(net.n_bus, 3)
            prediction = Prediction(
                v_pu=v, i_line_a=i_line[:, k].reshape(net.n_line, 3), i_trafo_a=i_trafo[:, k],
                s_trafo_kva=v[net.root_bus] * net.vbase_v * np.conj(i_trafo[:, k]) * 1e-3, i_load_a=i_load[:, k],
            )
            reports.append(FeasibilityReport(prediction=prediction, violations=violations(net, prediction, limits),
                                             limits=limits))
        return reports

    def _loads(
        self,
        *,
        p_kw: np.ndarray,
        q_kvar: np.ndarray,
        pess_p_kw: np.ndarray | None,
        pess_q_kvar: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        n = self.n_customers
        problems = []
        arrays = {"p_kw": p_kw, "q_kvar": q_kvar, "pess_p_kw": pess_p_kw, "pess_q_kvar": pess_q_kvar}
        for name, arr in arrays.items():
            if arr is None:
                continue
            if not isinstance(arr, np.ndarray) or arr.shape != (n, 3):
                shape = list(arr.shape) if isinstance(arr, np.ndarray) else type(arr).__name__
                problems.append(f"{name} has shape {shape}; expected [{n}, 3] (customers in feeder order, "
                                "network phases A/B/C)")
            elif not np.isfinite(arr).all():
                problems.append(f"{name} has a non-finite value at [customer, phase] = "
                                f"{np.argwhere(~np.isfinite(arr))[0].tolist()}")
        if problems:
            raise LtupfError("invalid LTUPF loads: " + "; ".join(problems))
        p = p_kw if pess_p_kw is None else p_kw + pess_p_kw
        q = q_kvar if pess_q_kvar is None else q_kvar + pess_q_kvar
        return p, q

    def _solve_load_currents(self, s_va: np.ndarray) -> np.ndarray:
        """Load currents of the linearised power balance: I = σ·(a + b·v + c·conj v), v = (w − Z·I)/V_base,
        σ = conj(S)/V_base, solved as one real system over the loaded bus-phases."""
        net = self.network
        active = np.flatnonzero(s_va != 0)
        i_load = np.zeros(s_va.shape[0], dtype=complex)
        if active.size == 0:
            return i_load
        sigma = np.conj(s_va[active]) / net.vbase_v
        beta = sigma * self.fit.b[active] / net.vbase_v
        gamma = sigma * self.fit.c[active] / net.vbase_v
        w = net.w_v.ravel()[net.load_rows()[active]]
        rhs = sigma * self.fit.a[active] + beta * w + gamma * np.conj(w)
        z = net.z_ohm[net.load_rows()[active]][:, active]
        # I + β⊙(Z·I) + γ⊙conj(Z·I) = rhs, with I = x + jy, Z·I = P + jQ, P = Zr·x − Zi·y, Q = Zi·x + Zr·y.
        zr, zi = z.real, z.imag
        d1, d2 = (beta.real + gamma.real)[:, None], (gamma.imag - beta.imag)[:, None]
        d3, d4 = (beta.imag + gamma.imag)[:, None], (beta.real - gamma.real)[:, None]
        m = active.size
        coupling = np.empty((2 * m, 2 * m))  # the system is (identity + coupling)·[x; y] = [Re rhs; Im rhs]
        coupling[:m, :m] = d1 * zr + d2 * zi
        coupling[:m, m:] = -d1 * zi + d2 * zr
        coupling[m:, :m] = d3 * zr + d4 * zi
        coupling[m:, m:] = -d3 * zi + d4 * zr
        xy = _solve_near_identity(coupling, np.concatenate([rhs.real, rhs.imag]), total_kva=abs(s_va.sum()) * 1e-3)
        i_load[active] = xy[:m] + 1j * xy[m:]
        return i_load


def _solve_near_identity(coupling: np.ndarray, rhs: np.ndarray, *, total_kva: float) -> np.ndarray:
    """Solve (I + C)·x = rhs. C is the load currents' response to their own voltage drop; its spectral radius is
    the relative drop, 0.02-0.12 on the IEEE feeder and at most 0.31 on Liège even with loads doubled, so the
    fixed point x = rhs − C·x converges in 8-30 products (0.1-0.3 ms, no BLAS: see ``_matvec``). LAPACK (whose
    multi-threaded LU waits 40 ms for a time slice on a busy machine) is the fallback when it does not.

    Raises LtupfError when the system is singular (loads far outside the linearisation's range)."""
    x = rhs
    scale = max(float(np.abs(rhs).max()), 1e-300)
    for _ in range(FIXED_POINT_MAX_ITERATIONS):
        x_next = rhs - _matvec(coupling, x)
        step = float(np.abs(x_next - x).max())
        x = x_next
        if step <= FIXED_POINT_TOLERANCE * scale:
            return np.asarray(x)
        if not np.isfinite(step):
            break
    try:
        return np.asarray(np.linalg.solve(np.eye(rhs.shape[0]) + coupling, rhs))
    except np.linalg.LinAlgError as err:
        raise LtupfError(
            f"the LTUPF of these loads is singular ({err}); total load {total_kva:.1f} kVA is far outside the "
            "linearisation's range: relinearise at a solved state closer to it"
        ) from err


def _matvec(matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """matrix @ vector without BLAS. numpy hands a 2718 × 165 product to multi-threaded OpenBLAS, whose worker
    threads, on a machine whose cores are busy, wait for a time slice: a 0.1 ms product then takes 10-60 ms.
    einsum's own loop takes 0.6 ms whatever the load, which keeps a check's latency predictable."""
    return np.asarray(np.einsum("ij,j->i", matrix, vector))


def _matmul(matrix: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """matrix @ columns on one BLAS thread (see ``_matvec``; einsum has no fast matrix-matrix loop): a 2718 × 165
    matrix times 15 columns took 2.3 ms of CPU, against 7.6 ms for 15 einsum products and 20 ms for einsum's
    "ij,jk" (IEEE network, load average 8.6)."""
    with _BLAS.limit(limits=1, user_api="blas"):
        return np.asarray(matrix @ columns)


def violations(net: NetworkModel, prediction: Prediction, limits: OperatingLimits) -> tuple[Violation, ...]:
    """Every limit the predicted state violates, worst (largest excess) first."""
    return violations_of_state(
        net,
        vm_pu=prediction.vm_pu,
        line_loading=np.abs(prediction.i_line_a) / net.max_i_line_a[:, None],
        trafo_loading=np.abs(prediction.i_trafo_a) / net.rated_i_trafo_a,
        limits=limits,
    )


def violations_of_state(
    net: NetworkModel,
    *,
    vm_pu: np.ndarray,
    line_loading: np.ndarray,
    trafo_loading: np.ndarray,
    limits: OperatingLimits,
) -> tuple[Violation, ...]:
    """Every limit a state violates, worst first: ``vm_pu`` [n_bus, 3] of the LV buses (``net.bus_ids`` order),
    ``line_loading`` [n_line, 3] and ``trafo_loading`` [3] as fractions of the ratings."""
    found: list[Violation] = []
    for kind, mask, limit in (
        (ViolationKind.VOLTAGE_LOW, vm_pu < limits.vm_min_pu, limits.vm_min_pu),
        (ViolationKind.VOLTAGE_HIGH, vm_pu > limits.vm_max_pu, limits.vm_max_pu),
    ):
        for bus, phase in np.argwhere(mask):
            found.append(Violation(kind, net.bus_ids[bus], Phase(int(phase)), float(vm_pu[bus, phase]), limit))
    for line, phase in np.argwhere(line_loading > limits.line_loading_max):
        found.append(Violation(ViolationKind.LINE_OVERLOAD, net.line_ids[line], Phase(int(phase)),
                               float(line_loading[line, phase]), limits.line_loading_max))
    for phase in np.flatnonzero(trafo_loading > limits.trafo_loading_max):
        found.append(Violation(ViolationKind.TRAFO_OVERLOAD, net.transformer_id, Phase(int(phase)),
                               float(trafo_loading[phase]), limits.trafo_loading_max))
    return tuple(sorted(found, key=lambda v: -v.excess))


def linearise(
    network: NetworkModel,
    *,
    method: Linearisation,
    operating_point: OperatingPoint | None = None,
    region: FitRegion = PAPER_REGION,
) -> LtupfModel:
    """The LTUPF around ``operating_point`` (a solved state), or around the nominal voltages (1 p.u. at each
    phase's no-load angle, the paper's centre) when it is None. Cheap (no factorisation): relinearise at every
    new operating point.

    Raises LtupfError when the operating point's arrays do not cover the feeder's buses or hold a voltage that is
    not finite and positive at a customer bus.
    """
    net = network
    if operating_point is None:
        reference = np.broadcast_to(net.nominal_angle_rad, (net.n_bus, 3)).copy()
        centre = np.exp(1j * reference[net.load_buses]).ravel()
    else:
        vm, va = operating_point.vm_pu, operating_point.va_deg
        n_feeder_bus = int(net.bus_positions.max()) + 1
        for name, arr in (("vm_pu", vm), ("va_deg", va)):
            if arr.ndim != 2 or arr.shape[1] != 3 or arr.shape[0] < n_feeder_bus:
                raise LtupfError(f"operating point {name} has shape {list(arr.shape)}; expected [n_feeder_bus, 3] "
                                 "with every bus of the feeder (feeder.buses order)")
        vm_lv, va_lv = vm[net.bus_positions], np.radians(va[net.bus_positions])
        bad = ~(np.isfinite(vm_lv) & np.isfinite(va_lv) & (vm_lv > 0))
        if bad[net.load_buses].any():
            bus, phase = np.argwhere(bad[net.load_buses])[0]
            raise LtupfError(f"operating point voltage at bus {net.bus_ids[net.load_buses[bus]]!r} phase "
                             f"{Phase(int(phase)).name} is {vm_lv[net.load_buses[bus], phase]} p.u.; "
                             "expected a finite positive magnitude")
        reference = np.where(bad, net.nominal_angle_rad[None, :], va_lv)
        centre = (vm_lv * np.exp(1j * va_lv))[net.load_buses].ravel()
    return LtupfModel(
        network=net,
        method=method,
        region=region,
        centre_pu=centre,
        fit=fit_current(method, centre_pu=centre, region=region),
        reference_angle_rad=reference,
        from_operating_point=operating_point is not None,
    )
