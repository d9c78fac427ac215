"""Fast engine: power-grid-model asymmetric power flow, many states per call.

The PGM input and the ``PowerGridModel`` are built once from the Feeder. ``solve`` writes the loads into
pre-allocated columnar update arrays and runs k > 1 states as one batch; a single state (the twin's per-tick
call) updates the model in place and runs one non-batch calculation, which is about twice as fast as a batch of
one. Line switching: a batch whose states share one topology updates the lines' status in the model in place
(the fast paths stay as they are); a batch whose states differ in topology sends each state's ``from_status`` and
``to_status`` of the lines as part of the batch update.

Circuit (same as pandapower's, see twin/powerflow/): an ideal source (u_ref = Source.vm_pu, angle 0) on an
auxiliary EMF node, an explicit line carrying the MV source impedance to the feeder's MV bus, the transformer
without magnetising branch (i0 = p0 = 0), the feeder's lines, and one constant-power asym_load per customer.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
from power_grid_model import (
    BranchSide,
    CalculationMethod,
    ComponentType,
    DatasetType,
    LoadGenType,
    PowerGridModel,
    WindingType,
    initialize_array,
)
from power_grid_model.errors import IterationDiverge, MaxIterationReached, PowerGridError, SparseMatrixError
from power_grid_model.typing import ComponentAttributeMapping
from power_grid_model.validation import ValidationException, assert_valid_input_data

from twin.errors import PowerFlowError
from twin.metrics import voltage_unbalance_factor_pct
from twin.network import VectorGroup
from twin.powerflow.feeder_engine import FeederEngine
from twin.powerflow.interface import (
    Engine,
    PowerFlowNotConverged,
    PowerFlowResult,
    check_line_states,
    check_loads,
    source_impedance_ohm,
)
from twin.row_chunks import for_row_chunks

if TYPE_CHECKING:
    from twin.network import Feeder

# PGM's source impedance is u_rated²/sk; 1e15 VA leaves ~1e-8 of the real (explicit) source impedance.
IDEAL_SOURCE_SK_VA = 1e15

# Method and threading, measured with benchmarks/powerflow_engines.py --compare-methods on the IEEE European LV
# feeder (907 buses, 55 loads, the 1440 states of load_day), 2 cores, PGM 1.12 (shared machine: best of 3):
#                      batch of 1440, threading -1 / 0 / 2        k = 1 per call
#   newton_raphson     4.2 s / 2.2 s / 2.2 s   (340-660 states/s)   3.1 ms
#   iterative_current  1.6 s / 1.05 s / 1.1 s (880-1370 states/s)  1.4 ms
# Both agree with pandapower to < 1e-7 p.u. (and with each other to 5e-10 p.u.) at the 1e-8 p.u. tolerance.
# iterative_current wins because its system matrix does not depend on the loads: PGM factorises it once and
# reuses the factorisation across iterations and across batch scenarios that only change load powers (PGM
# performance guide), whereas Newton-Raphson refactorises the Jacobian at every iteration of every state.
# The linear method (one solve, no iterations) costs 0.5 ms/state, so per-scenario overhead, not iterations,
# dominates. threading 0 (one thread per hardware thread) is ~1.5x faster than sequential from 15 states on
# and no slower at 2; pass threading=-1 when many twins share one machine.
DEFAULT_METHOD = CalculationMethod.iterative_current
DEFAULT_THREADING = 0
ERROR_TOLERANCE_PU = 1e-8
MAX_ITERATIONS = 30

# What PGM raises when a state has no solution (voltage collapse) rather than a bad model.
NOT_CONVERGED = (IterationDiverge, MaxIterationReached, SparseMatrixError)

WINDINGS = {
    VectorGroup.DYN: (WindingType.delta, WindingType.wye_n),
    VectorGroup.YNYN: (WindingType.wye_n, WindingType.wye_n),
    VectorGroup.YYN: (WindingType.wye, WindingType.wye_n),
}

# Columnar output of only what the result needs: less to allocate and fill than full rows.
OUTPUT_ATTRIBUTES: dict[ComponentType, list[str]] = {
    ComponentType.node: ["u_pu", "u", "u_angle"],
    ComponentType.line: ["i_from", "p_from", "q_from", "p_to"],
    ComponentType.transformer: ["p_from", "p_to", "q_to"],
}
OUTPUT_REQUEST: ComponentAttributeMapping = {comp: list(attrs) for comp, attrs in OUTPUT_ATTRIBUTES.items()}


class PgmPowerFlow(FeederEngine):
    """power-grid-model asymmetric power flow of a Feeder. Not thread-safe: the update buffers are shared."""

    engine = Engine.PGM

    def __init__(
        self,
        feeder: Feeder,
        *,
        calculation_method: CalculationMethod = DEFAULT_METHOD,
        threading: int = DEFAULT_THREADING,
        max_iterations: int = MAX_ITERATIONS,
    ) -> None:
        if max_iterations < 1:
            raise PowerFlowError(f"max_iterations {max_iterations} must be at least 1")
        super().__init__(feeder)
        self.calculation_method = calculation_method
        self.threading = threading
        self.max_iterations = max_iterations
        index = {b.id: i for i, b in enumerate(feeder.buses)}
        self._from_node = np.array([index[ln.from_bus] for ln in feeder.lines])
        input_data = _build_input(feeder)
        try:
            assert_valid_input_data(input_data, calculation_type=None, symmetric=False)
        except ValidationException as err:
            raise PowerFlowError(f"feeder {feeder.name!r} is not a valid power-grid-model network: {err}") from err
        self.model = PowerGridModel(input_data)
        self._line_ids = input_data[ComponentType.line]["id"][: self.n_line].copy()
        self._model_closed = self._normal_closed.copy()
        # Grown on demand and reused; solve() writes the loads of k states into the first k rows.
        self._p_w = np.zeros((0, self.n_customers, 3))
        self._q_var = np.zeros((0, self.n_customers, 3))

    def solve(self, *, p_kw: np.ndarray, q_kvar: np.ndarray, line_closed: np.ndarray | None = None) -> PowerFlowResult:
        """See ``twin.powerflow.PowerFlow.solve``. k > 1 states run as one PGM batch, k = 1 as a single run."""
        k = check_loads(p_kw=p_kw, q_kvar=q_kvar, n_customers=self.n_customers)
        closed = check_line_states(line_closed, k=k, normal=self._normal_closed)
        per_state = line_closed is not None and k > 1 and not (closed == closed[0]).all()
        if not per_state:
            self._set_lines(closed[0])
        if self._p_w.shape[0] < k:
            self._p_w = np.zeros((k, self.n_customers, 3))
            self._q_var = np.zeros((k, self.n_customers, 3))
        p_w, q_var = self._p_w[:k], self._q_var[:k]
        np.multiply(p_kw, 1e3, out=p_w)
        np.multiply(q_kvar, 1e3, out=q_var)
        if k == 1:
            output, failed, reason = self._run_single(p_w[0], q_var[0])
        else:
            output, failed, reason = self._run_batch(p_w, q_var, closed if per_state else None)
        result = self._result(output, failed)
        if failed.any():
            raise PowerFlowNotConverged(
                engine=self.engine, failed_indices=result.failed_indices(), partial=result, reason=reason
            )
        return result

    def _calculate(self, **batch_options: Any) -> dict[Any, Any]:
        """PGM's asymmetric power flow with this engine's method, tolerance and outputs; ``batch_options`` are
        PGM's own batch arguments (update_data, threading, continue_on_batch_error)."""
        return self.model.calculate_power_flow(
            symmetric=False,
            error_tolerance=ERROR_TOLERANCE_PU,
            max_iterations=self.max_iterations,
            calculation_method=self.calculation_method,
            output_component_types=OUTPUT_REQUEST,
            **batch_options,
        )

    def _set_lines(self, closed: np.ndarray) -> None:
        """Put the lines' status in the model (kept between calls) to ``closed`` unless it is there already."""
        if np.array_equal(closed, self._model_closed):
            return
        status = closed.astype(np.int8)
        try:
            self.model.update(update_data={ComponentType.line: {"id": self._line_ids, "from_status": status,
                                                                "to_status": status}})
        except PowerGridError as err:
            raise PowerFlowError(f"power-grid-model rejected the line states on {self.feeder.name!r}: {err}") from err
        self._model_closed = closed.copy()

    def _run_batch(self, p_w: np.ndarray, q_var: np.ndarray,
                   closed: np.ndarray | None) -> tuple[dict[Any, Any], np.ndarray, str]:
        # A uniform, dense update needs no ids: PGM matches rows to loads by position.
        update: dict[Any, Any] = {ComponentType.asym_load: {"p_specified": p_w, "q_specified": q_var}}
        if closed is not None:
            # Only the feeder's lines (not the source impedance line): a partial update needs their ids.
            status = closed.astype(np.int8)
            update[ComponentType.line] = {"id": np.broadcast_to(self._line_ids, status.shape),
                                          "from_status": status, "to_status": status}
        try:
            output: dict[Any, Any] = self._calculate(
                update_data=update, threading=self.threading, continue_on_batch_error=True
            )
        except PowerGridError as err:
            raise PowerFlowError(f"power-grid-model failed on feeder {self.feeder.name!r}: {err}") from err
        failed = np.zeros(p_w.shape[0], dtype=bool)
        batch_error = self.model.batch_error
        if batch_error is None:
            return output, failed, ""
        failed[batch_error.failed_scenarios] = True
        first = batch_error.error_messages[0] if batch_error.error_messages else ""
        return output, failed, f"first failure: {_first_line(first)}"

    def _run_single(self, p_w: np.ndarray, q_var: np.ndarray) -> tuple[dict[Any, Any], np.ndarray, str]:
        # Updating the model in place and running one non-batch calculation costs about half of a batch of one:
        # PGM keeps its prepared solver between calls as long as only loads change. Every solve() overwrites
        # all loads, so the state left in the model does not leak into the next call.
        try:
            self.model.update(update_data={ComponentType.asym_load: {"p_specified": p_w, "q_specified": q_var}})
        except PowerGridError as err:
            raise PowerFlowError(f"power-grid-model rejected the load update on {self.feeder.name!r}: {err}") from err
        try:
            output: dict[Any, Any] = self._calculate()
        except NOT_CONVERGED as err:
            return self._nan_output(), np.ones(1, dtype=bool), _first_line(str(err))
        except PowerGridError as err:
            raise PowerFlowError(f"power-grid-model failed on feeder {self.feeder.name!r}: {err}") from err
        batched = {comp: {attr: values[None] for attr, values in attrs.items()} for comp, attrs in output.items()}
        return batched, np.zeros(1, dtype=bool), ""

    def _nan_output(self) -> dict[Any, Any]:
        n_rows = {ComponentType.node: self.n_bus + 1, ComponentType.line: self.n_line + 1,
                  ComponentType.transformer: 1}
        return {comp: {attr: np.full((1, n_rows[comp], 3), np.nan) for attr in attrs}
                for comp, attrs in OUTPUT_ATTRIBUTES.items()}

    def _result(self, output: dict[Any, Any], failed: np.ndarray) -> PowerFlowResult:
        nb, nl, fn = self.n_bus, self.n_line, self._from_node
        if failed.any():
            # PGM leaves the output rows of failed scenarios unwritten (whatever the buffer held).
            for attrs in output.values():
                for values in attrs.values():
                    values[failed] = np.nan
        node, line, trafo = output[ComponentType.node], output[ComponentType.line], output[ComponentType.transformer]
        k = failed.shape[0]
        u_v, angle_rad, vm_pu = node["u"][:, :nb], node["u_angle"][:, :nb], node["u_pu"][:, :nb]
        p_from_w, q_from_var = line["p_from"][:, :nl], line["q_from"][:, :nl]
        i_from_a, p_to_w = line["i_from"][:, :nl], line["p_to"][:, :nl]
        out_va = np.empty((k, nb, 3))
        out_vuf = np.empty((k, nb))
        out_i, out_loading, out_i_n = np.empty((k, nl, 3)), np.empty((k, nl, 3)), np.empty((k, nl))
        line_loss_w = np.empty(k)
        inv_max_i_ka = 1.0 / self.max_i_ka[:, None]

        def work(a: int, b: int) -> None:
            np.degrees(angle_rad[a:b], out=out_va[a:b])
            out_vuf[a:b] = voltage_unbalance_factor_pct(vm_pu[a:b], out_va[a:b])
            np.multiply(i_from_a[a:b], 1e-3, out=out_i[a:b])
            np.multiply(out_i[a:b], inv_max_i_ka, out=out_loading[a:b])
            p, q = p_from_w[a:b], q_from_var[a:b]
            line_loss_w[a:b] = p.sum(axis=(1, 2)) + p_to_w[a:b].sum(axis=(1, 2))
            out_i_n[a:b] = _neutral_current_a(p_from_w=p, q_from_var=q, u_v=u_v[a:b], angle_rad=angle_rad[a:b],
                                              from_node=fn) * 1e-3

        for_row_chunks(k, work)
        trafo_loss_w = trafo["p_from"][:, 0].sum(axis=1) + trafo["p_to"][:, 0].sum(axis=1)
        return PowerFlowResult(
            vm_pu=vm_pu,
            va_deg=out_va,
            v_v=u_v,
            i_ka=out_i,
            loading=out_loading,
            i_n_ka=out_i_n,
            # PGM's branch powers flow into the branch at that end; the LV network receives the opposite.
            p_trafo_kw=-trafo["p_to"][:, 0] * 1e-3,
            q_trafo_kvar=-trafo["q_to"][:, 0] * 1e-3,
            loss_kw=(line_loss_w + trafo_loss_w) * 1e-3,
            vuf_pct=out_vuf,
            converged=~failed,
        )


def _neutral_current_a(
    *, p_from_w: np.ndarray, q_from_var: np.ndarray, u_v: np.ndarray, angle_rad: np.ndarray, from_node: np.ndarray
) -> np.ndarray:
    """|Ia + Ib + Ic| at each line's from end, [k, n_line], from per-phase P, Q and the from-node voltage.

    I = conj(S) / conj(V), in real arithmetic: I = (P cos θ + Q sin θ)/|V| + j (P sin θ − Q cos θ)/|V|.
    Called on a few dozen states at a time (see twin/row_chunks.py).
    """
    inv_u = 1.0 / u_v
    cos_u = (np.cos(angle_rad) * inv_u)[:, from_node]
    sin_u = (np.sin(angle_rad) * inv_u)[:, from_node]
    re = p_from_w * cos_u
    re += q_from_var * sin_u
    im = p_from_w * sin_u
    im -= q_from_var * cos_u
    return np.hypot(re[..., 0] + re[..., 1] + re[..., 2], im[..., 0] + im[..., 1] + im[..., 2])


def _first_line(message: str) -> str:
    lines = message.strip().splitlines()
    return lines[0] if lines else "no message from power-grid-model"


def _clock(feeder: Feeder) -> int:
    """PGM clock number (LV lags HV by clock × 30°) from ``shift_deg``; PowerFlowError if it is not one."""
    tr = feeder.transformer
    clock = tr.shift_deg / 30.0
    odd_needed = tr.vector_group is VectorGroup.DYN
    if not math.isclose(clock, round(clock), abs_tol=1e-9) or (round(clock) % 2 == 1) != odd_needed:
        kind = "an odd" if odd_needed else "an even"
        raise PowerFlowError(
            f"feeder {feeder.name!r}: transformer {tr.id!r} shift_deg {tr.shift_deg} is not possible for "
            f"{tr.vector_group.value}; expected {kind} multiple of 30 degrees"
        )
    return round(clock) % 12


def _build_input(feeder: Feeder) -> dict[ComponentType, np.ndarray]:
    """PGM input: node ids 0..n-1 are the feeder buses, n is the source EMF; other ids follow."""
    n_bus, n_line, n_cust = len(feeder.buses), len(feeder.lines), len(feeder.customers)
    index = {b.id: i for i, b in enumerate(feeder.buses)}
    src, tr = feeder.source, feeder.transformer
    emf_node = n_bus

    node = initialize_array(DatasetType.input, ComponentType.node, n_bus + 1)
    node["id"] = np.arange(n_bus + 1)
    node["u_rated"] = [b.vn_kv * 1e3 for b in feeder.buses] + [src.vn_kv * 1e3]

    lines = feeder.lines
    line = initialize_array(DatasetType.input, ComponentType.line, n_line + 1)
    line["id"] = np.arange(n_line + 1) + n_bus + 1
    length = np.array([ln.length_km for ln in lines])
    line["from_node"][:n_line] = [index[ln.from_bus] for ln in lines]
    line["to_node"][:n_line] = [index[ln.to_bus] for ln in lines]
    line["r1"][:n_line] = length * [ln.r1_ohm_per_km for ln in lines]
    line["x1"][:n_line] = length * [ln.x1_ohm_per_km for ln in lines]
    line["c1"][:n_line] = length * [ln.c1_nf_per_km * 1e-9 for ln in lines]
    line["r0"][:n_line] = length * [ln.r0_ohm_per_km for ln in lines]
    line["x0"][:n_line] = length * [ln.x0_ohm_per_km for ln in lines]
    line["c0"][:n_line] = length * [ln.c0_nf_per_km * 1e-9 for ln in lines]
    line["i_n"][:n_line] = [ln.max_i_ka * 1e3 for ln in lines]
    z1_ohm, z0_ohm = source_impedance_ohm(feeder)
    line["from_node"][n_line] = emf_node
    line["to_node"][n_line] = index[src.bus]
    line["r1"][n_line], line["x1"][n_line] = z1_ohm.real, z1_ohm.imag
    line["r0"][n_line], line["x0"][n_line] = z0_ohm.real, z0_ohm.imag
    line["c1"][n_line] = line["c0"][n_line] = 0.0
    line["i_n"][n_line] = 1e9
    line["from_status"] = line["to_status"] = 1
    line["from_status"][:n_line] = line["to_status"][:n_line] = [int(ln.normally_closed) for ln in lines]
    line["tan1"] = line["tan0"] = 0.0

    next_id = int(line["id"][-1]) + 1
    winding_from, winding_to = WINDINGS[tr.vector_group]
    trafo = _single_row(
        ComponentType.transformer,
        id=next_id, from_node=index[tr.hv_bus], to_node=index[tr.lv_bus], from_status=1, to_status=1,
        u1=tr.vn_hv_kv * 1e3, u2=tr.vn_lv_kv * 1e3, sn=tr.sn_kva * 1e3, uk=tr.vk_percent / 100,
        pk=tr.vkr_percent / 100 * tr.sn_kva * 1e3, i0=0.0, p0=0.0, i0_zero_sequence=0.0, p0_zero_sequence=0.0,
        winding_from=winding_from, winding_to=winding_to, clock=_clock(feeder), tap_side=BranchSide.from_side,
        tap_pos=0, tap_min=0, tap_max=0, tap_nom=0, tap_size=0.0,
    )

    source = _single_row(
        ComponentType.source, id=next_id + 1, node=emf_node, status=1, u_ref=src.vm_pu, u_ref_angle=0.0,
        sk=IDEAL_SOURCE_SK_VA, rx_ratio=src.rx_ratio, z01_ratio=1.0,
    )

    load = initialize_array(DatasetType.input, ComponentType.asym_load, n_cust)
    load["id"] = np.arange(n_cust) + next_id + 2
    load["node"] = [index[c.bus] for c in feeder.customers]
    load["status"] = 1
    load["type"] = LoadGenType.const_power
    load["p_specified"] = 0.0
    load["q_specified"] = 0.0
    return {
        ComponentType.node: node,
        ComponentType.line: line,
        ComponentType.transformer: trafo,
        ComponentType.source: source,
        ComponentType.asym_load: load,
    }


def _single_row(component: ComponentType, **values: Any) -> np.ndarray:
    """A one-row input array: the given fields, the rest at PGM's 'not available' default."""
    row = initialize_array(DatasetType.input, component, 1)
    for name, value in values.items():
        row[name][0] = value
    return row
