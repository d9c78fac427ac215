"""Three-phase unbalanced power flow of a Feeder: one interface, three engines.

``create_powerflow(feeder, engine=...)`` builds the engine's network model once; ``solve`` then takes a batch of k
load states (and, on feeders with switchable lines, the closed state of every line per state) and returns every
bus-phase voltage, line-phase current, transformer phase power and bus voltage unbalance as numpy arrays (an
engine may compute the costly ones on first access: ``PowerFlowResult.deferred``; they read the same).

- ``Engine.ZBUS`` (a Z-bus fixed point, ``twin.powerflow.zbus``) is the default on radial feeders fed by one
  transformer: every state of a batch in one solve, device moves without rebuilding anything.
- ``Engine.PGM`` (power-grid-model) is the general engine (any feeder) and the first fallback behind zbus.
- ``Engine.PANDAPOWER`` (``runpp_3ph``) is the reference it is checked against; it solves states one by one.

The engines model the same circuit, so that they agree to 1e-3 p.u. on every bus-phase voltage (zbus and
power-grid-model to 1e-6 p.u.):

- the MV grid is an ideal voltage source (``Source.vm_pu``, angle 0) behind an explicit series impedance built
  from ``s_sc_mva``, ``rx_ratio``, ``x0x_ratio`` and ``r0x0_ratio`` (pandapower's ``runpp_3ph`` leaves the
  ext_grid impedance out of the positive sequence, power-grid-model's source keeps it in; an explicit
  impedance branch is the one form both treat alike);
- the transformer has no magnetising branch, its zero-sequence impedance equals its short-circuit impedance
  and its LV star point is solidly earthed; LV lags HV by ``shift_deg``;
- lines are pi sections from the sequence impedances; an open line carries nothing (current, loading, neutral
  current 0); a topology must leave every bus supplied (``Feeder.topology_problems``);
- loads are constant-power, wye (phase to neutral), with neutral and earth taken as one (sequence-domain
  models, as in both engines).

Sign convention: customer p_kw/q_kvar are load-positive (positive draws from the grid, negative injects).
``p_trafo_kw``/``q_trafo_kvar`` are what the transformer delivers into the LV network, positive under load.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from twin.errors import PowerFlowError

if TYPE_CHECKING:
    from twin.network import Feeder

__all__ = [
    "RESULT_ARRAYS",
    "DeferredArrays",
    "Engine",
    "FallbackKind",
    "PowerFlow",
    "PowerFlowNotConverged",
    "PowerFlowResult",
    "check_line_states",
    "check_loads",
    "source_impedance_ohm",
]


class Engine(StrEnum):
    PANDAPOWER = "pandapower"
    PGM = "power-grid-model"
    ZBUS = "zbus"


class FallbackKind(StrEnum):
    """Which fallback solved a state the primary engine could not (``twin.powerflow.fallback``)."""

    POWER_GRID_MODEL = "power_grid_model"
    MORE_ITERATIONS = "more_iterations"
    NEWTON_RAPHSON = "newton_raphson"
    REFERENCE = "reference"


RESULT_ARRAYS = ("vm_pu", "va_deg", "v_v", "i_ka", "loading", "i_n_ka", "p_trafo_kw", "q_trafo_kvar", "loss_kw",
                 "vuf_pct", "converged")
"""The array fields of a ``PowerFlowResult``, in constructor order."""


@runtime_checkable
class DeferredArrays(Protocol):
    """Computes result arrays on first access (``PowerFlowResult.deferred``)."""

    def compute(self, name: str) -> dict[str, np.ndarray]:
        """The array ``name`` (one of ``RESULT_ARRAYS``), and any others computed on the way; rows of states
        that did not converge need not be NaN (the result sets them)."""
        ...


class _ResultArray:
    """A read-only field of ``PowerFlowResult``: the stored array, computed by the result's ``DeferredArrays``
    on first access when the engine deferred it."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: PowerFlowResult | None, objtype: type | None = None) -> np.ndarray:
        if obj is None:
            raise AttributeError(self.name)
        values = obj._values
        if self.name not in values:
            obj._compute(self.name)
        return values[self.name]


class PowerFlowResult:
    """Results of k load states. Buses in ``feeder.buses`` order (MV bus included), lines in ``feeder.lines``
    order, phases A, B, C in the last axis. Rows of states that did not converge hold NaN.

    An engine may defer the costly per-bus and per-line arrays (``deferred``): each is then computed on its
    first access, so a caller that reads only the transformer power or the losses does not pay for them. The
    fields read the same either way."""

    vm_pu = _ResultArray()  # [k, n_bus, 3] line-to-neutral voltage magnitude, p.u. of vn_kv/√3
    va_deg = _ResultArray()  # [k, n_bus, 3] voltage angle, degrees; source phase A at 0, LV lags by shift_deg
    v_v = _ResultArray()  # [k, n_bus, 3] line-to-neutral voltage magnitude, V
    i_ka = _ResultArray()  # [k, n_line, 3] phase current magnitude at the from end, kA (0 on open lines)
    loading = _ResultArray()  # [k, n_line, 3] i_ka / max_i_ka, a fraction (1.0 = at rating)
    i_n_ka = _ResultArray()  # [k, n_line] |Ia + Ib + Ic| at the from end (neutral/earth return), kA
    p_trafo_kw = _ResultArray()  # [k, 3] active power the transformer delivers into the LV bus, per phase
    q_trafo_kvar = _ResultArray()  # [k, 3] reactive power the transformer delivers into the LV bus, per phase
    loss_kw = _ResultArray()  # [k] active losses of all lines and the transformer (not the MV source impedance)
    vuf_pct = _ResultArray()  # [k, n_bus] voltage unbalance factor 100·|V2|/|V1| of each bus, percent
    converged = _ResultArray()  # [k] bool

    __slots__ = ("_deferred", "_values", "fallbacks")
    _values: dict[str, np.ndarray]
    _deferred: DeferredArrays | None
    fallbacks: Mapping[int, FallbackKind]

    def __init__(self, *, vm_pu: np.ndarray, va_deg: np.ndarray, v_v: np.ndarray, i_ka: np.ndarray,
                 loading: np.ndarray, i_n_ka: np.ndarray, p_trafo_kw: np.ndarray, q_trafo_kvar: np.ndarray,
                 loss_kw: np.ndarray, vuf_pct: np.ndarray, converged: np.ndarray,
                 fallbacks: Mapping[int, FallbackKind] | None = None) -> None:
        values = dict(vm_pu=vm_pu, va_deg=va_deg, v_v=v_v, i_ka=i_ka, loading=loading, i_n_ka=i_n_ka,
                      p_trafo_kw=p_trafo_kw, q_trafo_kvar=q_trafo_kvar, loss_kw=loss_kw, vuf_pct=vuf_pct,
                      converged=converged)
        self._init(values, None, fallbacks)

    def _init(self, values: dict[str, np.ndarray], deferred: DeferredArrays | None,
              fallbacks: Mapping[int, FallbackKind] | None) -> None:
        object.__setattr__(self, "_values", values)
        object.__setattr__(self, "_deferred", deferred)
        object.__setattr__(self, "fallbacks", {} if fallbacks is None else fallbacks)
        """States (batch positions) that a fallback solved, and which one; empty when the engine solved them
        all."""

    @classmethod
    def deferred(cls, arrays: DeferredArrays, *, converged: np.ndarray, **ready: np.ndarray) -> PowerFlowResult:
        """A result whose arrays other than ``converged`` and ``ready`` come from ``arrays`` on first access."""
        unknown = sorted(set(ready) - set(RESULT_ARRAYS))
        if unknown:
            raise TypeError(f"PowerFlowResult.deferred: unknown arrays {unknown}; expected names from {RESULT_ARRAYS}")
        result = cls.__new__(cls)
        result._init({**ready, "converged": converged}, arrays, None)
        return result

    def _compute(self, name: str) -> None:
        deferred = self._deferred
        if deferred is None:
            raise AttributeError(f"PowerFlowResult has no array {name!r}")
        computed = deferred.compute(name)
        converged = self._values["converged"]
        failed = None if converged.all() else ~converged
        for key, arr in computed.items():
            if key not in self._values:
                if failed is not None:
                    arr[failed] = np.nan
                self._values[key] = arr
        if len(self._values) == len(RESULT_ARRAYS):
            object.__setattr__(self, "_deferred", None)  # let go of the engine's intermediate arrays

    def leave_out(self, *names: str) -> None:
        """A hint that arrays ``names`` will likely not be read: an engine that computes several arrays in one
        pass (zbus: magnitudes, angles and VUF of every bus) leaves them out of it and computes them alone if they
        are read after all. The values read do not change."""
        hint = getattr(self._deferred, "leave_out", None)
        if hint is not None:
            hint(names)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"PowerFlowResult is read-only: cannot set {name!r}")

    def __getstate__(self) -> tuple[dict[str, np.ndarray], Mapping[int, FallbackKind]]:
        return {name: getattr(self, name) for name in RESULT_ARRAYS}, self.fallbacks

    def __setstate__(self, state: tuple[dict[str, np.ndarray], Mapping[int, FallbackKind]]) -> None:
        self._init(dict(state[0]), None, state[1])

    def __repr__(self) -> str:
        shapes = ", ".join(f"{n}={list(getattr(self, n).shape)}" for n in ("vm_pu", "i_ka"))
        return f"PowerFlowResult(k={self.n_states}, {shapes}, fallbacks={len(self.fallbacks)})"

    @property
    def n_states(self) -> int:
        return int(self.converged.shape[0])

    @classmethod
    def empty(cls, *, n_states: int, n_bus: int, n_line: int) -> PowerFlowResult:
        """A result of NaN everywhere and ``converged`` False, for engines to fill in."""

        def nan(*shape: int) -> np.ndarray:
            return np.full(shape, np.nan)

        return cls(
            vm_pu=nan(n_states, n_bus, 3),
            va_deg=nan(n_states, n_bus, 3),
            v_v=nan(n_states, n_bus, 3),
            i_ka=nan(n_states, n_line, 3),
            loading=nan(n_states, n_line, 3),
            i_n_ka=nan(n_states, n_line),
            p_trafo_kw=nan(n_states, 3),
            q_trafo_kvar=nan(n_states, 3),
            loss_kw=nan(n_states),
            vuf_pct=nan(n_states, n_bus),
            converged=np.zeros(n_states, dtype=bool),
        )

    def failed_indices(self) -> list[int]:
        return [int(i) for i in np.flatnonzero(~self.converged)]


class PowerFlowNotConverged(PowerFlowError):
    """Some states of a batch did not converge.

    ``failed_indices`` are positions in the batch (the caller maps them to ticks); ``partial`` holds the states
    that did converge, with NaN in the rows of the failed ones.
    """

    def __init__(self, *, engine: Engine, failed_indices: list[int], partial: PowerFlowResult, reason: str) -> None:
        self.engine = engine
        self.failed_indices = list(failed_indices)
        self.partial = partial
        shown = ", ".join(str(i) for i in self.failed_indices[:10])
        more = f" and {len(self.failed_indices) - 10} more" if len(self.failed_indices) > 10 else ""
        super().__init__(
            f"{engine} power flow did not converge for {len(self.failed_indices)} of {partial.n_states} state(s), "
            f"batch index {shown}{more}: {reason}. Such loads have no power-flow solution (typically far more "
            "load than the feeder can carry); the converged states are in .partial"
        )


@runtime_checkable
class PowerFlow(Protocol):
    """A feeder's network model, built once, solved for any number of load states."""

    engine: Engine

    def solve(self, *, p_kw: np.ndarray, q_kvar: np.ndarray, line_closed: np.ndarray | None = None) -> PowerFlowResult:
        """Solve k states; ``p_kw``/``q_kvar`` are [k, n_customers, 3], load-positive, per network phase A/B/C,
        customers in ``feeder.customers`` order. ``line_closed`` is [k, n_line] bool, lines in ``feeder.lines``
        order; None means every line in its normal state (normally open lines open). The caller checks that
        each topology is radial (``twin.line_switching``).

        Raises PowerFlowError when the shapes are wrong or values are not finite, and PowerFlowNotConverged
        (with the converged states in ``.partial``) when some states do not converge.
        """
        ...


def check_loads(*, p_kw: np.ndarray, q_kvar: np.ndarray, n_customers: int) -> int:
    """Number of states k in a load batch; raises PowerFlowError listing every problem with the arrays."""
    expected = f"[k, {n_customers}, 3] (states, customers in feeder order, network phases A/B/C)"
    problems = []
    for name, arr in (("p_kw", p_kw), ("q_kvar", q_kvar)):
        if not isinstance(arr, np.ndarray):
            problems.append(f"{name} is a {type(arr).__name__}; expected a numpy array of shape {expected}")
        elif arr.ndim != 3 or arr.shape[1:] != (n_customers, 3) or arr.shape[0] < 1:
            problems.append(f"{name} has shape {list(arr.shape)}; expected shape {expected} with k >= 1")
        elif not np.isfinite(arr).all():
            bad = np.argwhere(~np.isfinite(arr))[0]
            problems.append(f"{name} has a non-finite value at [state, customer, phase] = {bad.tolist()}")
    if not problems and p_kw.shape != q_kvar.shape:
        problems.append(f"p_kw has shape {list(p_kw.shape)} but q_kvar has {list(q_kvar.shape)}; they must match")
    if problems:
        raise PowerFlowError("invalid load batch: " + "; ".join(problems))
    return int(p_kw.shape[0])


def check_line_states(line_closed: np.ndarray | None, *, k: int, normal: np.ndarray) -> np.ndarray:
    """The [k, n_line] closed states of a batch: ``normal`` in every state when None; PowerFlowError on a bad
    shape."""
    if line_closed is None:
        return np.broadcast_to(normal, (k, normal.shape[0]))
    if not isinstance(line_closed, np.ndarray) or line_closed.shape != (k, normal.shape[0]):
        shape = list(line_closed.shape) if isinstance(line_closed, np.ndarray) else type(line_closed).__name__
        raise PowerFlowError(f"invalid line states: line_closed is {shape}; expected a bool array of shape "
                             f"[{k}, {normal.shape[0]}] (states, lines in feeder order)")
    return line_closed.astype(bool, copy=False)


def source_impedance_ohm(feeder: Feeder) -> tuple[complex, complex]:
    """Positive- and zero-sequence impedance of the MV source (Ω at the source voltage) from its ratios."""
    src = feeder.source
    z1_ohm = src.vn_kv**2 / src.s_sc_mva
    x1_ohm = z1_ohm / np.sqrt(1.0 + src.rx_ratio**2)
    x0_ohm = src.x0x_ratio * x1_ohm
    return complex(src.rx_ratio * x1_ohm, x1_ohm), complex(src.r0x0_ratio * x0_ohm, x0_ohm)

