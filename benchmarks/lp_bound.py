"""The controller's LP bound (issue 28 item 5) and the cheaper bounds that were tried for it, on the LP bounds of a
Liège replay window (``phasetwin replay`` in this process; every problem ``ControllerDecision._bound`` is given is
kept, nothing in the replay changes):

    PHASETWIN_SHARED_DATA=/work/shared/data PYTHONPATH=. .venv/bin/python benchmarks/lp_bound.py \
        [--start 2016-06-14T00:00Z --end 2016-06-16T00:00Z] [--quick]

Per period, CPU (``time.process_time``): the bound as the controller computes it (``build_model`` of the relaxed
MILP, ``to_csr``, ``PersistentLp``), then the weak-duality bound L(y) = Σ_i (y_i > 0 ? y_i·r_lo_i : y_i·r_hi_i)
+ Σ_j min(d_j·l_j, d_j·u_j), d = c − Aᵀy (``dual_bound``; y clipped to the signs the rows allow, the rows of a column
with an infinite bound scaled until its reduced cost has the allowed sign) with three kinds of multipliers: the
LP's own duals (must give the LP optimum: the check of ``dual_bound``), the previous period's LP duals (option (a)
of the issue: a sparse mat-vec instead of a solve), and the duals of a warm dual simplex stopped after 30/60/120
iterations (a work budget). Printed: the CPU of each and the quantiles of bound / LP optimum (1 = as good as the
LP; ≤ 0 = no information, the objective is ≥ 0).

Measured with d3bdd6e (2016-06-14 – 06-16, 191 LP bounds, load 10.6 on 2 shared cores): the controller's bound
21.2 ms a period; the LP's own duals give the LP optimum (ratio 1.000 at every quantile, the check of
``dual_bound``); the previous period's duals give a median of −2.4× the LP optimum (p75 −1.6×: a negative bound,
worthless) for 0.5 ms; a dual simplex from the last period's optimal basis stopped after 30 / 60 / 120 iterations
(the LP takes ~240) gives a median of 0.21 / 0.59 / 0.89× the LP (p5 −5.9 / −2.4 / −0.09×) for 7.5 / 8.7 / 11.7 ms
without the model's build (~4 ms). Outside this script: the previous duals mapped to the same constraint one step
earlier (the horizon moves by a step) gave −0.12 instead of 0.46 on one period; a basis shifted the same way
made HiGHS repair it (1,227–1,295 basic for 1,278 rows) and take 390 iterations instead of 240. The LP optimum is
a small difference of large terms (kW loads times multipliers), so multipliers not optimal for this period's
loads lose all of it: none of these is a usable bound at a fifth of the LP's cost.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import highspy
import numpy as np

import controllers.online.decision as decision
from controllers.online.model import build_model
from controllers.online.problem import ControlProblem, ControlWeights
from controllers.online.start import hold_decisions
from controllers.solver_output import native_stdout_to_log
from controllers.sparse_milp import PersistentLp, SparseModel, _cat, pass_model


def dual_bound(sm: SparseModel, y: np.ndarray, *, rounds: int = 3) -> float | None:
    """A lower bound of min cᵀx + offset, r_lo ≤ Ax ≤ r_hi, l ≤ x ≤ u by weak duality from the multipliers ``y``
    [n_rows] (any values: clipped to the signs each row allows, then the rows that give a column with an infinite
    bound a reduced cost of the wrong sign scaled down, ``rounds`` times); None when that does not succeed."""
    n = sm.n_vars
    cost = np.bincount(_cat(sm.obj_cols, dtype=np.int64), weights=_cat(sm.obj_coefs), minlength=n)
    lb, ub, r_lo, r_hi = _cat(sm.lb), _cat(sm.ub), _cat(sm.row_lb), _cat(sm.row_ub)
    rows, cols, coefs = _cat(sm.rows, dtype=np.int64), _cat(sm.cols, dtype=np.int64), _cat(sm.coefs)
    y = np.where(np.isinf(r_lo), np.minimum(y, 0.0), y)
    y = np.where(np.isinf(r_hi), np.maximum(y, 0.0), y)

    def reduced(y: np.ndarray) -> np.ndarray:
        return cost - np.bincount(cols, weights=coefs * y[rows], minlength=n)

    for _ in range(rounds):
        d = reduced(y)
        bad = (np.isinf(ub) & (d < 0)) | (np.isinf(lb) & (d > 0))
        if not bad.any():
            break
        contrib = coefs * y[rows]
        wrong = bad[cols] & np.where(d[cols] < 0, contrib > 0, contrib < 0)
        push = np.bincount(cols[wrong], weights=np.abs(contrib[wrong]), minlength=n)
        factor = np.ones(n)
        factor[bad] = np.clip(1.0 - np.abs(d[bad]) / np.maximum(push[bad], 1e-300), 0.0, 1.0)
        row_factor = np.ones(y.size)
        np.minimum.at(row_factor, rows[wrong], factor[cols[wrong]])
        y = y * row_factor
    d = reduced(y)
    if ((np.isinf(ub) & (d < -1e-9)) | (np.isinf(lb) & (d > 1e-9))).any():
        return None
    row_part = np.where(y > 0, y * np.nan_to_num(r_lo, neginf=0.0), y * np.nan_to_num(r_hi, posinf=0.0))
    col_part = np.where(d > 0, d * np.nan_to_num(lb, neginf=0.0), np.where(d < 0, d * np.nan_to_num(ub, posinf=0.0),
                                                                             0.0))
    return float(row_part.sum() + col_part.sum() + sm.offset)


def capture(start: str, end: str) -> list[tuple[ControlProblem, ControlWeights]]:
    """The problems of every LP bound of a controlled Liège replay (the default controller, 900 s ticks)."""
    from phasetwin.cli.main import app

    kept: list[tuple[ControlProblem, ControlWeights]] = []
    original = decision.ControllerDecision._bound

    def keep(self: Any, plan: Any, problem: ControlProblem) -> None:
        kept.append((problem, self._settings.weights))
        original(self, plan, problem)

    decision.ControllerDecision._bound = keep  # type: ignore[method-assign]
    argv = sys.argv
    try:
        with tempfile.TemporaryDirectory() as tmp:
            sys.argv = ["phasetwin", "replay", "--feeder", "liege-lv", "--start", start, "--end", end, "--tick",
                        "900", "--no-baseline", "--out", str(Path(tmp) / "run")]
            app(standalone_mode=False)
    finally:
        decision.ControllerDecision._bound = original  # type: ignore[method-assign]
        sys.argv = argv
    return kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--start", default="2016-06-14T00:00Z")
    parser.add_argument("--end", default="2016-06-16T00:00Z")
    parser.add_argument("--quick", action="store_true", help="two hours from --start")
    args = parser.parse_args()
    end = args.start.replace("T00:00Z", "T02:00Z") if args.quick else args.end
    problems = capture(args.start, end)
    lp = PersistentLp()
    with native_stdout_to_log():
        probe = highspy.Highs()
        probe.setOptionValue("output_flag", False)
    probes = (30, 60, 120)
    cpu = dict.fromkeys(("lp", "previous", *probes), 0.0)
    ratios: dict[str, list[float]] = {key: [] for key in ("own", "previous", *probes)}
    previous: np.ndarray | None = None
    for problem, weights in problems:
        basis = lp._basis  # the last period's optimal basis, where the stopped dual simplex starts
        t0 = time.process_time()
        built = build_model(problem, weights, incumbent=hold_decisions(problem), modes_binary=False)
        built.sm.relax()
        csr = built.sm.to_csr()
        optimum = lp.solve(csr).objective
        cpu["lp"] += time.process_time() - t0
        assert optimum is not None and lp._highs is not None
        own = np.asarray(lp._highs.getSolution().row_dual)
        exact = dual_bound(built.sm, own)
        # weak duality with the LP's own duals is the LP optimum: the check that dual_bound computes a bound right
        assert exact is not None and abs(exact - optimum) <= 1e-6 * max(1.0, abs(optimum)), (exact, optimum)
        ratios["own"].append(exact / optimum)
        if previous is not None and previous.size == own.size:
            t0 = time.process_time()
            bound = dual_bound(built.sm, previous)
            cpu["previous"] += time.process_time() - t0
            ratios["previous"].append(np.nan if bound is None else bound / optimum)
        previous = own
        for limit in probes:
            t0 = time.process_time()
            with native_stdout_to_log():
                pass_model(probe, csr)
                if basis is not None and lp.warm_solves:
                    probe.setBasis(basis)
                probe.setOptionValue("simplex_iteration_limit", limit)
                probe.run()
            bound = dual_bound(built.sm, np.asarray(probe.getSolution().row_dual))
            cpu[limit] += time.process_time() - t0
            ratios[limit].append(np.nan if bound is None else bound / optimum)
    n = len(problems)
    print(f"{n} LP bounds, {args.start} – {end}; load {os.getloadavg()[0]:.1f}")
    print(f"the controller's LP bound: {1e3 * cpu['lp'] / n:.2f} ms CPU a period")
    for key, values in ratios.items():
        r = np.asarray(values, dtype=float)
        spent = f"{1e3 * cpu[key] / max(r.size, 1):6.2f} ms" if key in cpu else "     — "
        label = key if isinstance(key, str) else f"dual simplex stopped after {key} iterations"
        print(f"  {label:42s} {spent}  bound/LP p5 p25 p50 p75 {np.round(np.nanpercentile(r, [5, 25, 50, 75]), 3)}"
              f"  none {int(np.isnan(r).sum())}")


if __name__ == "__main__":
    main()
