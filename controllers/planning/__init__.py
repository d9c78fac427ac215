"""Offline planners of the papers: yearly customer re-phasing (paper 000) and Birkhoff phase balancing (002).

Modules: ``configurations`` (the 15 configurations, feasibility), ``rephase_problem`` (eqs. 6-11 as arrays),
``rephase_milp`` (the MILP, exact or on compressed steps with cuts), ``rephase_search`` (local search and
enumeration on all steps), ``rephase_planner`` (the certified planner), ``rephase_ga`` (the authors' GA as a
baseline), ``rephase_check`` (Table III with the nonlinear power flow), ``rephase_report`` and ``rephase_plots``
(P_unb by twin.metrics, SVG figures), ``plan_file`` (plan JSON, applying a plan to a feeder), ``birkhoff_case``
and ``birkhoff`` (Garces et al. on the CIGRE LV network). The package itself re-exports only the plan-file API.
"""

from __future__ import annotations

from controllers.planning.errors import PlanningError
from controllers.planning.plan_file import apply_plan, read_plan, write_plan

__all__ = ["PlanningError", "apply_plan", "read_plan", "write_plan"]
