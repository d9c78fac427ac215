"""Z-bus engine: a fixed point on the loaded bus-phases of a radial feeder, every state of a batch at once.

Method (the implicit Z-bus fixed point of radial networks, as in TensorPowerFlow, Salazar Duque et al.,
arXiv 2403.04578, here in phase coordinates, three-phase four-wire): with the LV network's Z-bus seen from the
transformer (``twin.powerflow.zbus_model``) and constant-power loads, the voltages of the loaded bus-phases are

    V = c − Z · conj(S / V)

iterated from the no-load voltages ``c``. All k states of a batch are the columns of one right-hand side
(complex128), so an iteration is one matrix product. Z depends on the topology only: a customer whose phase is
moved (STS), whose power is shifted (PSD) or a battery's power changes the right-hand side and nothing else.
A new set of closed lines builds that topology's Z once (``builds``/``rebuilds`` count them).

Convergence is checked per state: a state is done when no bus-phase voltage moves by more than
``ERROR_TOLERANCE_PU`` in an iteration (power-grid-model's criterion and value); a state still moving after
``MAX_ITERATIONS`` is reported as not converged, with NaN in its rows, for the fallback chain
(``twin.powerflow.fallback``: power-grid-model, more iterations, Newton-Raphson, pandapower).

``solve`` returns after the fixed point (converged states, transformer powers). The voltages of every bus, the
series current of every line, neutral currents and losses come on first access (``SweepArrays``) from one
backward/forward sweep over the tree with its load-free parts and chains contracted (``twin.powerflow.zbus_chains``),
level by level (numpy over all states and all key buses of a level at once), and one gather and multiply-add per
bus and line over all states, in chunks of states that stay in cache.
The circuit is the other engines' (``twin.powerflow.interface``): ideal MV source behind its sequence impedance,
transformer without magnetising branch (Dyn or YNyn), pi-section lines, wye constant-power loads.
"""

from __future__ import annotations

import logging
import math
import threading
from typing import TYPE_CHECKING

import numpy as np

from twin.blas_threads import one_blas_thread
from twin.errors import PowerFlowError
from twin.metrics import voltage_unbalance_factor_pct_of_phasors
from twin.powerflow.feeder_engine import FeederEngine
from twin.powerflow.interface import (
    Engine,
    PowerFlowNotConverged,
    PowerFlowResult,
    check_line_states,
    check_loads,
)
from twin.powerflow.zbus_chains import ChainTree
from twin.powerflow.zbus_model import Source, Topology, apply, apply_rows, phase_sum, source_model
from twin.row_chunks import for_row_chunks

if TYPE_CHECKING:
    from twin.network import Feeder

log = logging.getLogger(__name__)

ERROR_TOLERANCE_PU = 1e-8
MAX_ITERATIONS = 30
A = np.exp(2j * np.pi / 3)
DEG_PER_RAD = 180.0 / np.pi
CHUNK_BUS_PHASES = 16 * 907 * 3
"""Bus-phases (states × buses or lines × 3) per chunk of the all-bus results: a chunk's complex temporaries (16 states
of the IEEE feeder, [16, 907, 3], 0.7 MB) stay below the 1 MiB mmap threshold the commands set
(phasetwin/run/memory.py), so they are reused, not mapped afresh. A small feeder takes more states per chunk: on
Liège (44 buses) 16 states a chunk made 2,190 chunks of the year, whose Python overhead cost more than the work."""


def zbus_unsupported_reason(feeder: Feeder) -> str | None:
    """Why the zbus engine cannot model ``feeder`` (None when it can): not radial, not one transformer from one
    source, a transformer group without a zero-sequence path."""
    try:
        ZbusPowerFlow(feeder)
    except PowerFlowError as err:
        return str(err)
    return None


class ZbusPowerFlow(FeederEngine):
    """Z-bus fixed point of a radial feeder fed by one transformer (see the module docstring). Threads may
    solve on one engine at once: each keeps its own work arrays, and a result owns what it still computes."""

    engine = Engine.ZBUS

    def __init__(self, feeder: Feeder, *, max_iterations: int = MAX_ITERATIONS) -> None:
        if max_iterations < 1:
            raise PowerFlowError(f"max_iterations {max_iterations} must be at least 1")
        super().__init__(feeder)
        self.max_iterations = max_iterations
        self.v_base_v = np.array([b.vn_kv * 1e3 / np.sqrt(3) for b in feeder.buses])
        self.source: Source = source_model(feeder)
        self._topologies: dict[bytes, tuple[Topology, ChainTree]] = {}
        self.builds = 0
        """Topologies built (Z-bus and its reduction); the first is the normal one."""
        self.iterations = 0
        """Fixed-point iterations run, summed over calls (one matrix product each)."""
        self._local = threading.local()
        self._topology(self._normal_closed)

    @property
    def rebuilds(self) -> int:
        """Builds after the first: a new set of closed lines. Load, PSD, STS and battery changes cause none."""
        return max(self.builds - 1, 0)

    def _topology(self, closed: np.ndarray) -> Topology:
        """The Z-bus model of a set of closed lines (built once)."""
        return self._model(closed)[0]

    def _model(self, closed: np.ndarray) -> tuple[Topology, ChainTree]:
        key = np.packbits(closed).tobytes()
        model = self._topologies.get(key)
        if model is None:
            topo = Topology(self.feeder, closed, self.source)
            model = self._topologies[key] = (topo, ChainTree(self.feeder, topo))
            self.builds += 1
        return model

    def solve(self, *, p_kw: np.ndarray, q_kvar: np.ndarray, line_closed: np.ndarray | None = None) -> PowerFlowResult:
        """See ``twin.powerflow.PowerFlow.solve``."""
        k = check_loads(p_kw=p_kw, q_kvar=q_kvar, n_customers=self.n_customers)
        closed = check_line_states(line_closed, k=k, normal=self._normal_closed)
        s_va = self._buffer("s_va", p_kw.shape)
        s_va.real, s_va.imag = p_kw, q_kvar
        s_va *= 1e3
        if line_closed is None or (closed == closed[0]).all():
            result = self._solve_topology(*self._model(closed[0]), s_va)
        else:
            result = PowerFlowResult.empty(n_states=k, n_bus=self.n_bus, n_line=self.n_line)
            unique, inverse = np.unique(closed, axis=0, return_inverse=True)
            for u in range(unique.shape[0]):
                idx = np.flatnonzero(inverse.ravel() == u)
                part = self._solve_topology(*self._model(unique[u]), s_va[idx])
                for name in ("vm_pu", "va_deg", "v_v", "i_ka", "loading", "i_n_ka", "p_trafo_kw", "q_trafo_kvar",
                             "loss_kw", "vuf_pct", "converged"):
                    getattr(result, name)[idx] = getattr(part, name)
        if not result.converged.all():
            raise PowerFlowNotConverged(engine=self.engine, failed_indices=result.failed_indices(), partial=result,
                                        reason=f"the Z-bus fixed point did not settle within {self.max_iterations} "
                                        "iterations")
        return result

    def _fixed_point(self, topo: Topology, s_node: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Load currents [3L, k] at the converged voltages, the active bus-phases and the converged mask [k].

        The currents are a work array of this thread, valid until its next solve: copy what is kept. Every array
        of the iteration is such a work array too: under the replay's allocator (``phasetwin/run/memory.py``) a
        fresh array above 1 MiB is a fresh mapping, paid in page faults (a day's batch: 930 pages each)."""
        k = s_node.shape[1]
        active = np.flatnonzero(np.any(s_node != 0, axis=1))
        current = self._buffer("fp_current", (s_node.shape[0], k))
        current.fill(0)
        converged = np.ones(k, dtype=bool)
        if active.size == 0:
            return current, active, converged
        z = topo.z_ll_full[np.ix_(active, active)]
        c = topo.c_load_flat[active][:, None]
        n = active.size
        s_all = np.take(s_node, active, axis=0, out=self._buffer("fp_s_all", (n, k)))
        s = s_all
        inv_base = 1.0 / topo.v_base_load_flat[active][:, None]
        v, v_new, i = (self._buffer(name, (n, k)) for name in ("fp_v", "fp_v_new", "fp_i"))
        size = self._buffer("fp_size", (n, k), dtype=float)
        v[:] = c
        todo = np.arange(k)
        done_v = self._buffer("fp_done_v", (n, k))
        # one BLAS thread: the product is small (a few dozen rows), yet OpenBLAS threads it from about 4,096
        # matrix entries on (Liège: 69 × 69), and its workers then spin (``twin.blas_threads``)
        with np.errstate(all="ignore"), one_blas_thread():
            for _ in range(self.max_iterations):
                self.iterations += 1
                np.divide(s, v, out=i)
                np.conj(i, out=i)
                np.matmul(z, i, out=v_new)
                np.subtract(c, v_new, out=v_new)
                np.subtract(v_new, v, out=i)
                np.abs(i, out=size)
                size *= inv_base
                step = size.max(axis=0)
                v, v_new = v_new, v
                settled = step < ERROR_TOLERANCE_PU
                if settled.any():
                    done_v[:, todo[settled]] = v[:, settled]
                    todo = todo[~settled]
                    if todo.size == 0:
                        break
                    m = todo.size
                    v_new = v_new.reshape(-1)[: n * m].reshape(n, m)
                    np.compress(~settled, v, axis=1, out=v_new)
                    v, v_new = v_new, v.reshape(-1)[: n * m].reshape(n, m)
                    i = i.reshape(-1)[: n * m].reshape(n, m)
                    size = size.reshape(-1)[: n * m].reshape(n, m)
                    s = np.take(s_all, todo, axis=1, out=self._buffer("fp_s", (n, m)))
            converged[todo] = False
            done_v[:, todo] = np.nan
            np.divide(s_all, done_v, out=done_v)
            current[active] = np.conj(done_v, out=done_v)
        return current, active, converged

    def _solve_topology(self, topo: Topology, chains: ChainTree, s_va: np.ndarray) -> PowerFlowResult:
        """The fixed point and the transformer's powers now; every per-bus and per-line array, and the losses,
        on first access (``SweepArrays``)."""
        k = s_va.shape[0]
        n_load = topo.n_load
        s_node = topo.load_power_va(s_va, out=self._buffer("s_node", (3 * n_load, k)),
                                    work=self._buffer("s_cust", (self.n_customers, 3, k)))
        i_load, _, converged = self._fixed_point(topo, s_node)
        with np.errstate(all="ignore"):
            # The transformer's current: the loads' and the shunts' (their Y·V, through the Z-bus, summed).
            j_lv_t = i_load.reshape(n_load, 3, k).sum(axis=0)
            if topo.has_shunts:
                j_lv_t += topo.shunt_i_const[:, None] - topo.shunt_i_of_load @ i_load
            j_lv = np.ascontiguousarray(j_lv_t.T)  # [k, 3]
            src = self.source
            s_trafo = (src.e_lv_v - apply(src.th, j_lv)) * np.conj(j_lv)
            i_load_k = np.ascontiguousarray(i_load.reshape(n_load, 3, k).transpose(0, 2, 1))  # [L, k, 3], owned
        result = PowerFlowResult.deferred(SweepArrays(self, topo, chains, i_load_k, j_lv), converged=converged,
                                          p_trafo_kw=s_trafo.real * 1e-3, q_trafo_kvar=s_trafo.imag * 1e-3)
        if not converged.all():
            result.p_trafo_kw[~converged] = np.nan
            result.q_trafo_kvar[~converged] = np.nan
        return result

    def _buffer(self, name: str, shape: tuple[int, ...], *, dtype: type = complex) -> np.ndarray:
        """A work array kept between calls of this thread (fresh large arrays cost page faults on every call;
        threads solving on one engine each have their own)."""
        buffers: dict[str, np.ndarray] = self._local.__dict__
        buf = buffers.get(name)
        size = math.prod(shape)  # not np.prod: a dozen buffers per solve, and one solve per tick with devices
        if buf is None or buf.size < size:
            buf = np.empty(size, dtype)
            buffers[name] = buf
        return buf[:size].reshape(shape)

    def _mv_voltage(self, i_lv: np.ndarray) -> np.ndarray:
        """MV bus phase voltages [k, 3] behind the source impedance, from the LV phase currents [k, 3]."""
        src = self.source
        i0 = i_lv.mean(axis=1)
        i1 = (i_lv[:, 0] + A * i_lv[:, 1] + A * A * i_lv[:, 2]) / 3
        i2 = (i_lv[:, 0] + A * A * i_lv[:, 1] + A * i_lv[:, 2]) / 3
        turn = np.exp(1j * src.shift_rad)
        m1, m2 = src.ratio * turn * i1, src.ratio * np.conj(turn) * i2
        m0 = src.ratio * turn * i0 if src.zero_passes else np.zeros_like(i0)
        i_mv = np.stack([m0 + m1 + m2, m0 + A * A * m1 + A * m2, m0 + A * m1 + A * A * m2], axis=1)
        return src.e_mv_v - apply(src.mv, i_mv)



class SweepArrays:
    """The per-bus and per-line arrays and the losses of one solve, computed on first access from the fixed
    point's load currents (``PowerFlowResult.deferred``): one backward/forward sweep by level over the contracted
    tree (``twin.powerflow.zbus_chains``), then every bus and line from its key buses, in chunks of states.

    Groups computed together: ``vm_pu``, ``va_deg``, ``vuf_pct`` (one pass over the bus voltages); ``i_ka``,
    ``i_n_ka`` (one pass over the line currents); ``v_v`` from ``vm_pu``, ``loading`` from ``i_ka``; ``loss_kw``.
    Owns its arrays: later solves of the engine do not touch them."""

    def __init__(self, engine: ZbusPowerFlow, topo: Topology, chains: ChainTree, i_load: np.ndarray,
                 j_lv: np.ndarray) -> None:
        self.engine, self.topo, self.chains = engine, topo, chains
        self.i_load: np.ndarray | None = i_load
        self.j_lv = j_lv
        self._swept: tuple[np.ndarray, np.ndarray] | None = None
        self._done: dict[str, np.ndarray] = {}
        self._mv: np.ndarray | None = None
        self._v_bus: np.ndarray | None = None
        """Every bus's complex voltages when the batch is one chunk (a replay's tick): the bus pass and the line
        pass (shunts) both need them."""
        self._angles_alone = False
        """``va_deg`` is left out of the bus pass (``leave_out``) and computed by a pass of its own if read."""

    def leave_out(self, names: tuple[str, ...]) -> None:
        """See ``PowerFlowResult.leave_out``: only ``va_deg`` can be (its arctan2 is a third of the bus pass)."""
        if "va_deg" in names and "vm_pu" not in self._done:
            self._angles_alone = True

    def compute(self, name: str) -> dict[str, np.ndarray]:
        """See ``twin.powerflow.interface.DeferredArrays``."""
        if name in self._done:
            return {name: self._done[name]}
        with np.errstate(all="ignore"), one_blas_thread():  # the sweep's products are small too
            if name in ("vm_pu", "vuf_pct"):
                new = self._buses(magnitudes=True, angles=not self._angles_alone)
            elif name == "va_deg":
                new = self._buses(magnitudes="vm_pu" not in self._done, angles=True)
            elif name == "v_v":
                vm = self.compute("vm_pu")["vm_pu"] if "vm_pu" not in self._done else self._done["vm_pu"]
                new = {"v_v": vm * self.engine.v_base_v[:, None]}
            elif name in ("i_ka", "i_n_ka"):
                new = self._lines()
            elif name == "loading":
                i_ka = self._done["i_ka"] if "i_ka" in self._done else self.compute("i_ka")["i_ka"]
                new = {"loading": i_ka * (1.0 / self.engine.max_i_ka[:, None])}
            elif name == "loss_kw":
                new = {"loss_kw": self._loss_w() * 1e-3}
            else:
                raise AttributeError(f"PowerFlowResult has no array {name!r}")
        self._done.update(new)
        if {"vm_pu", "va_deg", "i_ka", "loss_kw"} <= self._done.keys():  # v_v, loading need only those: let go
            self._swept = None
            self.i_load = None
            self._v_bus = None
        return new

    def _sweep(self) -> tuple[np.ndarray, np.ndarray]:
        """Key-bus series currents j [n_key + 1, k, 3] (the last row zero: open lines, inactive buses, the MV
        bus) and key-bus voltages v [n_key, k, 3], by level over the contracted tree."""
        if self._swept is not None:
            return self._swept
        chains, src = self.chains, self.engine.source
        k = self.j_lv.shape[0]
        j = np.zeros((chains.n_key + 1, k, 3), complex)
        if self.i_load is None:
            raise RuntimeError("zbus: the load currents were released before every array was computed")
        topo, n_load = self.topo, self.topo.n_load
        j[chains.key_of_load] = self.i_load  # every node is a key bus of its own
        if topo.has_shunts:
            # Voltages of every node with a shunt, from the converged load currents; shunts draw Y·V.
            i_flat = self.i_load.transpose(0, 2, 1).reshape(3 * n_load, k)
            v_nodes = (topo.c_flat[:, None] - topo.z_nl_full @ i_flat).reshape(-1, 3, k).transpose(0, 2, 1)
            j[chains.key_of_node] += apply_rows((topo.y_a[topo.node_pos], topo.y_b[topo.node_pos]), v_nodes)
        for s, e, parents, starts in reversed(chains.groups):
            j[parents] += np.add.reduceat(j[s:e], starts, axis=0)
        v = np.empty((chains.n_key, k, 3), complex)
        v[0] = src.e_lv_v - apply(src.th, j[0])
        for s, e, _, _ in chains.groups:
            np.subtract(v[chains.parent[s:e]], apply_rows((chains.z_a[s:e], chains.z_b[s:e]), j[s:e]), out=v[s:e])
        self._swept = j, v
        return j, v

    def _mv_bus_voltage(self) -> np.ndarray:
        """The MV bus's phase voltages [k, 3], computed once for the bus and the line pass."""
        if self._mv is None:
            self._mv = self.engine._mv_voltage(self.j_lv)
        return self._mv

    def _bus_voltages(self, j: np.ndarray, v: np.ndarray, mv: np.ndarray, a: int, b: int) -> np.ndarray:
        """Complex voltages [b − a, n_bus, 3] of every bus for states a..b (not to be written to: a batch of one
        chunk keeps them for the other pass)."""
        whole = a == 0 and b == self.j_lv.shape[0]
        if whole and self._v_bus is not None:
            return self._v_bus
        chains = self.chains
        drop = state_major(j, a, b).take(chains.bus_down, axis=1)  # (a·I₃ + b·J₃)·J in place: no temporaries
        common = phase_sum(drop)
        common *= chains.bus_z_b
        drop *= chains.bus_z_a[:, None]
        drop += common[..., None]
        v_bus = state_major(v, a, b).take(chains.bus_up, axis=1)
        v_bus -= drop
        v_bus[:, chains.mv_bus] = mv[a:b]
        if whole:
            self._v_bus = v_bus
        return v_bus

    def _buses(self, *, magnitudes: bool, angles: bool) -> dict[str, np.ndarray]:
        """One pass over every bus's phasors: ``magnitudes`` (vm_pu and vuf_pct), ``angles`` (va_deg)."""
        engine = self.engine
        j, v = self._sweep()
        mv = self._mv_bus_voltage()
        k = self.j_lv.shape[0]
        out: dict[str, np.ndarray] = {}
        if magnitudes:
            out["vm_pu"], out["vuf_pct"] = np.empty((k, engine.n_bus, 3)), np.empty((k, engine.n_bus))
        if angles:
            out["va_deg"] = np.empty((k, engine.n_bus, 3))
        inv_base = 1.0 / engine.v_base_v[:, None]

        def rows(a: int, b: int) -> None:
            with np.errstate(all="ignore"):
                v_bus = self._bus_voltages(j, v, mv, a, b)
                if magnitudes:
                    vm_pu = out["vm_pu"][a:b]
                    np.abs(v_bus, out=vm_pu)
                    vm_pu *= inv_base
                    out["vuf_pct"][a:b] = voltage_unbalance_factor_pct_of_phasors(v_bus)
                if angles:
                    va_deg = out["va_deg"][a:b]
                    np.arctan2(v_bus.imag, v_bus.real, out=va_deg)
                    va_deg *= DEG_PER_RAD

        for_row_chunks(k, rows, chunk=chunk_states(engine.n_bus))
        return out

    def _lines(self) -> dict[str, np.ndarray]:
        engine, chains = self.engine, self.chains
        j, v = self._sweep()
        mv = self._mv_bus_voltage()
        k = self.j_lv.shape[0]
        i_ka, i_n_ka = np.empty((k, engine.n_line, 3)), np.empty((k, engine.n_line))
        shunts = chains.has_line_shunts

        def rows(a: int, b: int) -> None:
            with np.errstate(all="ignore"):
                i_from = state_major(j, a, b).take(chains.line_down, axis=1)
                if shunts:
                    v_from = self._bus_voltages(j, v, mv, a, b).take(chains.line_from_bus, axis=1)
                    i_from *= chains.line_sign[:, None]
                    i_from += apply_rows((chains.line_half_y_a, chains.line_half_y_b),
                                         v_from.transpose(1, 0, 2)).transpose(1, 0, 2)
                np.abs(i_from, out=i_ka[a:b])
                i_ka[a:b] *= 1e-3
                np.abs(phase_sum(i_from), out=i_n_ka[a:b])
                i_n_ka[a:b] *= 1e-3

        for_row_chunks(k, rows, chunk=chunk_states(max(engine.n_bus, engine.n_line)))
        return {"i_ka": i_ka, "i_n_ka": i_n_ka}

    def _loss_w(self) -> np.ndarray:
        """Active losses [k] of the key branches (a chain's one current through its whole impedance) and of the
        transformer, W."""
        chains, src = self.chains, self.engine.source
        j, _ = self._sweep()
        body = j[1:chains.n_key]
        n, k = body.shape[0], body.shape[1]
        j_sum = phase_sum(body)
        # Σ over phases (and real, imaginary parts) of squares, on float views: no [n, k, 3] temporaries.
        squares = np.einsum("nkc,nkc->nk", body.view(float), body.view(float))
        sum_squares = np.einsum("nkc,nkc->nk", j_sum.view(float).reshape(n, k, 2), j_sum.view(float).reshape(n, k, 2))
        loss_w = chains.z_a.real[1:] @ squares + chains.z_b.real[1:] @ sum_squares
        drop = apply(src.trafo, self.j_lv)
        return np.asarray(loss_w + (drop.real * self.j_lv.real + drop.imag * self.j_lv.imag).sum(axis=1))


def state_major(x: np.ndarray, a: int, b: int) -> np.ndarray:
    """States a..b of a key-major array [n, k, 3] as a state-major copy [b − a, n, 3] (small: a chunk of states)."""
    return np.ascontiguousarray(x[:, a:b].transpose(1, 0, 2))


def chunk_states(n_rows: int) -> int:
    """States per chunk of the per-bus or per-line work on ``n_rows`` buses or lines (``CHUNK_BUS_PHASES``)."""
    return max(1, CHUNK_BUS_PHASES // (3 * max(n_rows, 1)))
