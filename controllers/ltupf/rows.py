"""Dense linear rows written into a MathOpt model in bulk.

The LTUPF's voltage and current rows are dense: every load current moves every voltage. MathOpt's public API sets
one coefficient per Python call (~3.5 µs each: 0.6 s for the 170 000 coefficients of a stressed IEEE case), while
its elemental core accepts all of them in one numpy call (~0.05 s). ``DenseRows`` collects the coefficients of
many rows and writes them at ``flush()``, through the core's ``set_attrs`` where this OR-Tools build has it, else
coefficient by coefficient through the public API (same model either way; the fast path is an optimisation only).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from ortools.math_opt.python import mathopt

__all__ = ["DenseRows"]


def _bulk_setter(model: mathopt.Model) -> object | None:
    """The model's elemental core and its coefficient attribute, when this OR-Tools build exposes them."""
    elemental = getattr(model, "_elemental", None)
    try:
        from ortools.math_opt.elemental.python import enums
    except ImportError:
        return None
    attr = getattr(getattr(enums, "DoubleAttr2", None), "LINEAR_CONSTRAINT_COEFFICIENT", None)
    if elemental is None or attr is None or not hasattr(elemental, "set_attrs"):
        return None
    return attr


class DenseRows:
    """Rows lb ≤ Σ coef·var ≤ ub over a fixed list of variables, added now and filled at ``flush()``."""

    def __init__(self, model: mathopt.Model, variables: Sequence[mathopt.Variable]) -> None:
        self.model = model
        self.variables = list(variables)
        self.var_ids = np.array([v.id for v in self.variables], dtype=np.int64)
        self._constraints: list[mathopt.LinearConstraint] = []
        self._keys: list[np.ndarray] = []
        self._values: list[np.ndarray] = []
        self._attr = _bulk_setter(model)

    def add(
        self,
        coef: np.ndarray,
        *,
        extra: tuple[tuple[mathopt.Variable, float], ...] = (),
        lb: float = -math.inf,
        ub: float = math.inf,
    ) -> mathopt.LinearConstraint:
        """Add lb ≤ Σ coef[n]·variables[n] + Σ extra ≤ ub; the dense part is written at ``flush()``."""
        con = self.model.add_linear_constraint(lb=lb, ub=ub)
        nz = np.flatnonzero(coef)
        self._constraints.append(con)
        self._keys.append(np.column_stack([np.full(nz.size, con.id, dtype=np.int64), self.var_ids[nz]]))
        self._values.append(np.asarray(coef, dtype=float)[nz])
        for var, value in extra:
            con.set_coefficient(var, value)
        return con

    def add_sparse(self, cols: np.ndarray, values: np.ndarray, *, lb: float, ub: float) -> mathopt.LinearConstraint:
        """Add lb ≤ Σ values[n]·variables[cols[n]] ≤ ub (zeros left out); written at ``flush()``."""
        con = self.model.add_linear_constraint(lb=lb, ub=ub)
        keep = np.asarray(values) != 0
        self._constraints.append(con)
        self._keys.append(np.column_stack([np.full(int(keep.sum()), con.id, dtype=np.int64),
                                           self.var_ids[np.asarray(cols)[keep]]]))
        self._values.append(np.asarray(values, dtype=float)[keep])
        return con

    def flush(self) -> None:
        """Write every pending coefficient into the model."""
        if not self._keys:
            return
        keys, values = np.concatenate(self._keys), np.concatenate(self._values)
        if self._attr is not None:
            self.model._elemental.set_attrs(self._attr, keys, values)
        else:
            by_id = {v.id: v for v in self.variables}
            by_con = {c.id: c for c in self._constraints}
            for (con_id, var_id), value in zip(keys.tolist(), values.tolist(), strict=True):
                by_con[con_id].set_coefficient(by_id[var_id], value)
        self._constraints.clear()
        self._keys.clear()
        self._values.clear()
