"""Offline planners of the papers, one sub-package each, and the plan files they share.

- ``rephase/``: yearly customer re-phasing (paper 000): ``problem`` (eqs. 6-11 as arrays), ``milp`` (exact or on
  compressed steps with cuts), ``search`` (local search, enumeration), ``planner`` (the certified planner),
  ``ga`` (the authors' GA as a baseline), ``check`` (Table III with the nonlinear power flow), ``report``, ``plots``.
- ``birkhoff/``: Birkhoff phase balancing (paper 002) on the CIGRE LV network: ``case``, ``balancing``.
- ``sts_siting/``: STS siting on the IEEE 13-node feeder (paper 003): ``case``, ``evaluation``,
  ``operation_milp``, ``planner`` (HAI and single level), ``ieee13``, ``study`` (scenarios, replay files).
- ``seasonal/``: seasonal phase arrangement with topology on CIGRE MV (paper 004): ``case``, ``evaluation``,
  ``pso``, ``milp``, ``study``, ``replay`` (the plan's switching and connections for the twin).
- ``configurations`` (the 15 phase configurations), ``plan_file`` (re-phasing plan JSON, applying it to a
  feeder), ``replay_plan`` (``replay.json``: a plan the twin replays with ``phasetwin replay --plan``).

The package itself re-exports only the plan-file API; its error is ``controllers.errors.PlanningError``.
"""

from __future__ import annotations

from controllers.errors import PlanningError
from controllers.planning.plan_file import apply_plan, read_plan, write_plan

__all__ = ["PlanningError", "apply_plan", "read_plan", "write_plan"]
