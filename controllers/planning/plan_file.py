"""Re-phasing plan files (JSON) and applying a plan to a feeder.

A plan names the feeder and every customer's configuration (``"A"``, ``"BC"``, ``"CAB"``: terminal j on phase
``config[j]``), before and after. Only ``configurations`` is needed to apply it; ``initial`` documents what the
plan changes and is checked against the feeder when present.

    {"format": "phasetwin-rephase-plan/1", "feeder": "liege-lv",
     "configurations": {"110": "C", "111": "ABC", ...}, "initial": {"110": "A", ...}}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from controllers.errors import PlanningError
from controllers.planning.configurations import parse_configuration
from streams.errors import validation_problems
from twin.network import Feeder
from twin.phase import Phase, connection_text

__all__ = ["PLAN_FORMAT", "PlanFile", "apply_plan", "plan_changes", "read_plan", "read_plan_file", "write_plan"]

PLAN_FORMAT = "phasetwin-rephase-plan/1"


class PlanFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    format: Literal["phasetwin-rephase-plan/1"] = "phasetwin-rephase-plan/1"
    feeder: str = Field(min_length=1)
    configurations: dict[str, str] = Field(description="customer id -> configuration, e.g. CAB")
    initial: dict[str, str] = Field(default_factory=dict, description="customer id -> configuration before")


def write_plan(path: Path, *, feeder: str, configurations: dict[str, tuple[Phase, ...]],
               initial: dict[str, tuple[Phase, ...]] | None = None) -> Path:
    """Write a plan file; returns ``path``."""
    plan = PlanFile(feeder=feeder, configurations={c: connection_text(p) for c, p in configurations.items()},
                    initial={c: connection_text(p) for c, p in (initial or {}).items()})
    path.write_text(json.dumps(plan.model_dump(), indent=1) + "\n")
    return path


def read_plan_file(path: Path) -> PlanFile:
    """Read and validate a plan file. Raises PlanningError naming the file and every problem."""
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise PlanningError(f"cannot read plan file {path}: {err}") from err
    try:
        plan = PlanFile.model_validate(raw)
    except ValidationError as err:
        problems = validation_problems(err, root="file")
        raise PlanningError(f"plan file {path} is invalid: {problems}") from None
    bad = []
    for field_name in ("configurations", "initial"):
        for cid, text in getattr(plan, field_name).items():
            try:
                parse_configuration(text)
            except ValueError as err:
                bad.append(f"{field_name}.{cid}: {err}")
    if bad:
        raise PlanningError(f"plan file {path} is invalid: " + "; ".join(bad))
    return plan


def read_plan(path: Path) -> dict[str, tuple[Phase, ...]]:
    """Customer id -> configuration of a plan file (what a replay's ``--rephase PLAN.json`` applies)."""
    return {cid: parse_configuration(text) for cid, text in read_plan_file(path).configurations.items()}


def plan_changes(initial: dict[str, tuple[Phase, ...]],
                 configurations: dict[str, tuple[Phase, ...]]) -> list[tuple[str, str, str]]:
    """(customer, from, to) for every customer whose configuration changes, in customer order."""
    return [(cid, connection_text(initial[cid]), connection_text(p)) for cid, p in configurations.items()
            if cid in initial and tuple(initial[cid]) != tuple(p)]


def apply_plan(feeder: Feeder, configurations: dict[str, tuple[Phase, ...]]) -> Feeder:
    """``feeder`` with the customers' phase connections replaced by ``configurations``.

    Meter data stay with the customers' terminals, so the same data replay on the re-phased feeder. Customers
    the plan does not name keep their connection. Raises PlanningError listing unknown customers and
    configurations with another number of phases than the customer has.
    """
    known = {c.id: c for c in feeder.customers}
    problems = [f"customer {cid!r} is not in feeder {feeder.name!r}" for cid in configurations if cid not in known]
    for cid, phases in configurations.items():
        c = known.get(cid)
        if c is not None and len(phases) != c.n_phases:
            problems.append(f"customer {cid!r} has {c.n_phases} phase(s) but the plan gives "
                            f"{connection_text(tuple(phases))!r}; a customer keeps its number of phases")
    if problems:
        raise PlanningError(f"cannot apply the plan to {feeder.name!r}: " + "; ".join(problems))
    customers = tuple(c.model_copy(update={"phases": tuple(configurations[c.id])}) if c.id in configurations else c
                      for c in feeder.customers)
    return feeder.model_copy(update={"customers": customers})
