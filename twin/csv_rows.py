"""Small CSV inputs (device lists, command schedules) read row by row into a pydantic model, every bad row
and field reported at once with its line number."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from twin.errors import ScenarioError

Row = TypeVar("Row", bound=BaseModel)


def read_rows(
    path: Path, model: type[Row], *, what: str, columns: str, check: Callable[[Row], object] | None = None
) -> list[Row]:
    """Every row of ``path`` as ``model`` (blank cells left out); ``check`` may raise ValidationError for a row
    that is valid on its own but not usable. ScenarioError lists every problem, or says the file has no rows."""
    try:
        with path.open(newline="") as fh:
            raw = list(csv.DictReader(fh))
    except OSError as err:
        raise ScenarioError(f"{what} {path}: {err.strerror}") from err
    rows: list[Row] = []
    problems: list[str] = []
    for n, line in enumerate(raw, start=2):
        values = {k.strip(): v.strip() for k, v in line.items() if k and v is not None and v.strip()}
        try:
            row = model.model_validate(values)
            if check is not None:
                check(row)
            rows.append(row)
        except ValidationError as err:
            for e in err.errors(include_url=False):
                field = ".".join(map(str, e["loc"])) or "row"
                problems.append(f"line {n}: {field} = {values.get(field)!r}: {e['msg']}")
    if problems:
        raise ScenarioError(f"{what} {path}: " + "; ".join(problems))
    if not rows:
        raise ScenarioError(f"{what} {path} has no rows; expected columns {columns}")
    return rows
