"""The LTUPF network in a MILP as sparse nodal rows, Y·V + I_load = J, instead of the dense V = w − Z·I_load.

``milp.add_ltupf_constraints`` writes the network at the load bus-phases as V_k = (w_k − Σ_c Z[k, c]·I_c)/V_base:
one row per load bus-phase (real and imaginary part) over every current column. Every load current moves every
voltage, so these rows are dense: on the Liège feeder 122 rows × 124 columns, 16 000 of the repair MILP's 16 250
non-zeros. HiGHS's root node (cut separation, heuristics, strong branching) then costs ~1 s of CPU for a model of
500 rows, 30 binaries and 10 nodes, while its LP relaxation alone takes 45 ms.

The same equations in nodal form: with Y the nodal admittance of the LV buses (the Thevenin source stamped at the
root) and J the source's Norton current, V = w − Z·I_load is Y·V + E·I_load = J (w = Y⁻¹J, Z = Y⁻¹E, E the load
bus-phases' columns of the identity). This needs a voltage variable pair at every bus-phase (the load bus-phases'
box variables, rotated back by θ_k, and free variables elsewhere) but every row holds only the bus-phase's own and
its neighbours' voltages and its own load currents: a few thousand non-zeros in all. The two forms have the same
solutions (Y is invertible: ``build_network_model`` factorised it); solvers take other paths through them, so a
node-limited search may stop at another assignment.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import scipy.sparse as sp
from ortools.math_opt.python import mathopt

from controllers.errors import LtupfError
from controllers.ltupf.network import NetworkModel
from controllers.ltupf.rows import DenseRows
from twin.phase import Phase

__all__ = ["FREE_VOLTAGE_PU", "add_nodal_rows"]

FREE_VOLTAGE_PU = 10.0
"""Bound of the real and imaginary parts of the voltages outside the load boxes (p.u.): far outside anything the
limit rows admit, so it cuts nothing off; it only keeps the variables bounded."""


def add_nodal_rows(
    model: mathopt.Model,
    net: NetworkModel,
    *,
    boxes: Mapping[int, tuple[mathopt.Variable, mathopt.Variable, float]],
    columns: Sequence[tuple[int, mathopt.Variable, complex]],
    prefix: str = "",
) -> int:
    """Add Y·V + Σ_c alpha_c·var_c = J (per bus-phase, real and imaginary rows, divided by V_base) to ``model``.

    ``boxes[k]`` = (u_re, u_im, θ) of load column k: V_k/V_base = e^{jθ}(u_re + j·u_im). ``columns`` (load column,
    variable, alpha): the current drawn at that load column is Σ alpha·variable (A, load-positive). Every other
    bus-phase gets a free voltage pair (``FREE_VOLTAGE_PU``). Returns the number of rows added.
    Raises LtupfError when the network model carries no admittance matrix (built before it was stored)."""
    if net.y_bus_s is None or net.norton_a is None:
        raise LtupfError(f"network {net.feeder_name!r} has no nodal admittance matrix; rebuild it with "
                         "build_network_model to use nodal network rows")
    n_rows = 3 * net.n_bus
    load_rows = net.load_rows()
    boxed = {int(load_rows[k]): box for k, box in boxes.items()}
    variables: list[mathopt.Variable] = []
    at_row: list[int] = []
    coef: list[complex] = []
    for r in range(n_rows):
        if r in boxed:
            u_re, u_im, theta = boxed[r]
            rot = complex(np.exp(1j * theta))
            pairs = ((u_re, rot), (u_im, 1j * rot))
        else:
            bus, ph = divmod(r, 3)
            name = f"{prefix}v[{net.bus_ids[bus]}.{Phase(ph).name}]"
            pairs = ((model.add_variable(lb=-FREE_VOLTAGE_PU, ub=FREE_VOLTAGE_PU, name=f"{name}.re"), 1.0 + 0j),
                     (model.add_variable(lb=-FREE_VOLTAGE_PU, ub=FREE_VOLTAGE_PU, name=f"{name}.im"), 1j))
        for var, c in pairs:
            at_row.append(r)
            coef.append(c)
            variables.append(var)
    n_v = len(variables)
    voltage = sp.csr_matrix((np.array(coef), (np.array(at_row), np.arange(n_v))), shape=(n_rows, n_v))
    # (Y·V_base·v + E·I)/V_base = J/V_base: admittances (S) on the p.u. voltages, currents (A) over V_base
    currents = sp.csr_matrix((np.array([alpha for _, _, alpha in columns], dtype=complex) / net.vbase_v,
                              (load_rows[[col for col, _, _ in columns]], np.arange(len(columns)))),
                             shape=(n_rows, len(columns)))
    matrix = sp.hstack([net.y_bus_s @ voltage, currents], format="csr")
    rhs = net.norton_a / net.vbase_v
    rows = DenseRows(model, variables + [var for _, var, _ in columns])
    for r in range(n_rows):
        cols = matrix.indices[matrix.indptr[r]:matrix.indptr[r + 1]]
        values = matrix.data[matrix.indptr[r]:matrix.indptr[r + 1]]
        rows.add_sparse(cols, values.real, lb=float(rhs[r].real), ub=float(rhs[r].real))
        rows.add_sparse(cols, values.imag, lb=float(rhs[r].imag), ub=float(rhs[r].imag))
    rows.flush()
    return 2 * n_rows
