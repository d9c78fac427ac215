"""Partial metering: which feeder customers have data, and what the unmetered ones and the unknown meters become.

Real AMI roll-outs cover part of a feeder. ``cover`` turns a table of whatever customers the data hold into a
table of exactly the feeder's customers, by policy, and counts what it did (``Coverage``):

- unknown meters (data customers that are not on the feeder): ``error`` (the default) lists them; ``ignore``
  drops them, named and counted;
- unmetered customers (feeder customers without data), ``Unmetered``:

  - ``error`` (the default) lists them;
  - ``zero``: they draw nothing;
  - ``profile``: each draws the metered customers' mean profile ``m(t)``, the mean over the metered customers
    of their total active power (all terminals) at step t, counting the customers with a finite value;
  - ``profile:FILE``: the same shape scaled to each customer's annual energy from FILE (CSV ``customer,
    annual_kwh``): ``p(t) = annual_kwh / 8760 h · m(t) / mean(m)``, the mean taken over the whole data, so
    the data's own seasonality is all the profile has.

  A profile is split equally over the customer's terminals; q = p·tan(acos(power_factor)).
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from streams.errors import DataError, raise_data_problems
from streams.meters.data import Feeder, spare_terminal_problems
from streams.meters.table import MeterTable

__all__ = ["Coverage", "UnknownMeters", "Unmetered", "UnmeteredRule", "cover"]

HOURS_PER_YEAR = 8760.0
_REMEDY_UNMETERED = "give their data or a policy for them: --unmetered zero, profile or profile:ANNUAL_KWH.csv"
_REMEDY_UNKNOWN = "remove them from the data or drop them with --unknown-meters ignore"


class UnmeteredRule(StrEnum):
    ERROR = "error"
    ZERO = "zero"
    PROFILE = "profile"


class UnknownMeters(StrEnum):
    ERROR = "error"
    IGNORE = "ignore"


class Unmetered(BaseModel):
    """What feeder customers without data draw; the text form is ``error``, ``zero``, ``profile`` or
    ``profile:FILE`` (FILE: CSV ``customer,annual_kwh``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    rule: UnmeteredRule = UnmeteredRule.ERROR
    annual_kwh_file: Path | None = Field(default=None, description="profile scaled to these annual energies")

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        rule, sep, file = value.strip().partition(":")
        if rule.lower() not in {r.value for r in UnmeteredRule}:
            raise ValueError(f"unmetered policy {value!r}: expected error, zero, profile or profile:FILE")
        if sep and rule.lower() != UnmeteredRule.PROFILE:
            raise ValueError(f"unmetered policy {value!r}: only profile takes a file (profile:ANNUAL_KWH.csv)")
        if sep and not file:
            raise ValueError(f"unmetered policy {value!r}: no file after 'profile:'")
        return {"rule": rule.lower(), "annual_kwh_file": file or None}

    @model_validator(mode="after")
    def _file_only_for_profile(self) -> Unmetered:
        if self.annual_kwh_file is not None and self.rule is not UnmeteredRule.PROFILE:
            raise ValueError(f"annual_kwh_file {self.annual_kwh_file} needs rule profile, not {self.rule.value}")
        return self

    def text(self) -> str:
        return f"profile:{self.annual_kwh_file}" if self.annual_kwh_file is not None else self.rule.value


class Coverage(BaseModel):
    """Which customers the data covered and what was done with the rest; nothing is dropped uncounted."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    customers: int = Field(ge=0, description="customers of the feeder")
    metered: int = Field(ge=0, description="feeder customers with data")
    unmetered: int = Field(ge=0, description="feeder customers without data")
    unmetered_policy: str = Field(description="what the unmetered customers draw (error, zero, profile[:FILE])")
    unknown_meters: int = Field(ge=0, description="data customers not on the feeder")
    unknown_meters_policy: UnknownMeters
    unmetered_ids: tuple[str, ...] = ()
    unknown_meter_ids: tuple[str, ...] = ()

    def counts(self) -> dict[str, object]:
        """The counts and policies, without the id lists (for the run summary)."""
        return self.model_dump(mode="json", exclude={"unmetered_ids", "unknown_meter_ids"})


def _annual_kwh(path: Path, wanted: list[str], feeder: Feeder) -> np.ndarray:
    """Annual energy of each ``wanted`` customer from a CSV ``customer,annual_kwh``; DataError lists every problem."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: cannot read the annual energies: {err}") from err
    problems: list[str] = []
    if list(frame.columns) != ["customer", "annual_kwh"]:
        columns = ", ".join(map(repr, frame.columns))
        raise_data_problems(str(path), [f"columns {columns}; expected customer, annual_kwh"])
    ids = frame["customer"].str.strip()
    values = pd.to_numeric(frame["annual_kwh"].str.strip(), errors="coerce")
    for i in np.flatnonzero(~(np.isfinite(values.to_numpy(dtype=float)) & (values.to_numpy(dtype=float) >= 0))):
        problems.append(f"line {i + 2}: annual_kwh {frame['annual_kwh'].iloc[i]!r} for {ids.iloc[i]!r} is not a "
                        "number ≥ 0")
    if repeated := sorted(set(ids[ids.duplicated()])):
        problems.append(f"customer(s) listed twice: {', '.join(map(repr, repeated))}")
    on_feeder = {c.id for c in feeder.customers}
    if unknown := [c for c in ids if c not in on_feeder]:
        problems.append(f"{len(unknown)} customer(s) not in feeder {feeder.name!r}: {', '.join(map(repr, unknown))}")
    given = dict(zip(ids, values, strict=True))
    if missing := [c for c in wanted if c not in given]:
        problems.append(f"no annual energy for {len(missing)} unmetered customer(s): {', '.join(map(repr, missing))}")
    raise_data_problems(f"{path}: annual energies (--unmetered profile:FILE)", problems)
    return np.array([float(given[c]) for c in wanted])


def _mean_profile_kw(p_kw: np.ndarray) -> np.ndarray:
    """Mean over customers of their total active power per step, over the customers with a finite value."""
    total = p_kw.sum(axis=2)
    finite = np.isfinite(total)
    count = finite.sum(axis=1)
    out = np.full(len(total), np.nan)
    np.divide(np.where(finite, total, 0.0).sum(axis=1), count, out=out, where=count > 0)
    return out


DEFAULT_UNMETERED = Unmetered()


def cover(table: MeterTable, feeder: Feeder, *, unmetered: Unmetered = DEFAULT_UNMETERED,
          unknown_meters: UnknownMeters = UnknownMeters.ERROR) -> tuple[MeterTable, Coverage]:
    """The table for exactly the feeder's customers, in its order, and what was done (module docstring).

    Raises DataError listing, at once, the unmetered customers (policy ``error``), the unknown meters (policy
    ``error``), customers with nonzero data on terminals beyond their number of phases, a profile asked for with
    no metered customer, and every problem of the annual-energy file.
    """
    ids = [c.id for c in feeder.customers]
    on_feeder, in_data = set(ids), set(table.customer_ids)
    missing = [c for c in ids if c not in in_data]
    unknown = [c for c in table.customer_ids if c not in on_feeder]
    problems: list[str] = []
    if unmetered.rule is UnmeteredRule.ERROR and missing:
        problems.append(f"{len(missing)} customer(s) of feeder {feeder.name!r} with no data: "
                        f"{', '.join(map(repr, missing))}; {_REMEDY_UNMETERED}")
    if unknown_meters is UnknownMeters.ERROR and unknown:
        problems.append(f"{len(unknown)} data customer(s) not in feeder {feeder.name!r}: "
                        f"{', '.join(map(repr, unknown))}; {_REMEDY_UNKNOWN}")
    problems += spare_terminal_problems(table, feeder)
    index = {c: i for i, c in enumerate(table.customer_ids)}
    metered = [c for c in ids if c in in_data]
    if unmetered.rule is UnmeteredRule.PROFILE and missing and not metered:
        problems.append(f"--unmetered {unmetered.text()}: none of the {len(ids)} customers is metered, so there is "
                        "no profile to take; give data for some or use --unmetered zero")
    raise_data_problems(f"{table.source}: meter data do not match feeder {feeder.name!r}", problems)

    coverage = Coverage(customers=len(ids), metered=len(metered), unmetered=len(missing),
                        unmetered_policy=unmetered.text(), unknown_meters=len(unknown),
                        unknown_meters_policy=unknown_meters, unmetered_ids=tuple(missing),
                        unknown_meter_ids=tuple(unknown))
    if table.customer_ids == tuple(ids):  # exactly the feeder's customers in its order: the table itself
        return table, coverage
    n_t = table.n_steps
    p_kw = np.zeros((n_t, len(ids), 3))
    q_kvar = np.zeros_like(p_kw)
    position = {c: i for i, c in enumerate(ids)}
    rows = [index[c] for c in metered]
    at = [position[c] for c in metered]
    p_kw[:, at], q_kvar[:, at] = table.p_kw[:, rows], table.q_kvar[:, rows]
    source = table.source
    if missing and unmetered.rule is UnmeteredRule.PROFILE:
        shape_kw = _mean_profile_kw(table.p_kw[:, rows])
        if unmetered.annual_kwh_file is not None:
            mean_kw = float(np.nanmean(shape_kw)) if np.isfinite(shape_kw).any() else float("nan")
            if not mean_kw > 0:
                raise DataError(f"--unmetered {unmetered.text()}: the metered customers' mean load over the data is "
                                f"{mean_kw:g} kW; a profile scaled to annual energy needs a positive mean; use "
                                "--unmetered profile or zero")
            level = _annual_kwh(unmetered.annual_kwh_file, missing, feeder) / HOURS_PER_YEAR / mean_kw
        else:
            level = np.ones(len(missing))
        by_id = {c.id: c for c in feeder.customers}
        for k, cid in enumerate(missing):
            c, i = by_id[cid], position[cid]
            p_kw[:, i, : c.n_phases] = (shape_kw * level[k] / c.n_phases)[:, None]
            q_kvar[:, i, : c.n_phases] = p_kw[:, i, : c.n_phases] * np.tan(np.arccos(c.power_factor))
        source += f", {len(missing)} unmetered on {unmetered.text()}"
    elif missing:
        source += f", {len(missing)} unmetered at zero"
    covered = MeterTable(time_utc=table.time_utc, step_s=table.step_s, customer_ids=tuple(ids), p_kw=p_kw,
                         q_kvar=q_kvar, source=source, quality=table.quality)
    return covered, coverage
