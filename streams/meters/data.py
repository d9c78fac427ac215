"""Read per-customer meter data (CSV or Parquet, wide or long, 1- to 60-minute steps) into a MeterTable.

Formats (told apart by the columns; CSV or Parquet by the file suffix):

- wide: a ``time`` (or ``time_utc``) column, or a datetime index (Parquet), then one column per series:
  ``<customer>_<terminal>`` for active power, optionally ``<customer>_<terminal>_q`` for reactive power;
- long: columns ``time`` (or ``time_utc``), ``customer``, ``phase`` or ``terminal``, ``p`` and optionally
  ``q``; one row per timestamp and series.

Terminal labels: ``1``, ``2``, ``3`` name the customer's terminal j (the MeterTable's terminal j-1, wired
to ``customer.phases[j-1]``). A letter ``A``, ``B``, ``C`` names the network phase the terminal was on when it
was measured: with ``customers`` given, label ``customer.phases[j]`` is terminal j (so pass the customers as
they were connected then); without, a customer's letters become its terminals in the order they first
appear in the file. A customer uses one kind of label. Customer ids may contain ``_``: the label follows
the last one.

Units: ``unit`` applies to p and q alike (W ↔ var). Energies per interval (Wh, kWh, MWh per step) become mean
power by × 3600 / step_s. Sign: load-positive, as in the whole twin.

Reactive power: from the data when every active series has one; else, with ``customers`` given,
q = p·tan(acos(customer.power_factor)); else q = 0, said in ``quality.notes``. Data with q for some series
only are rejected.

Timestamps: each labels the START of its interval. They must carry a UTC offset (``…+01:00``, ``…Z``, or
tz-aware datetimes) and are converted to UTC; naive timestamps raise DataError unless ``naive_is_utc=True``
declares them UTC.

Grid: ``step_s`` is given or inferred as the median difference of consecutive distinct timestamps; it must be
a whole number of minutes from 1 to 60. The grid runs from ``start_utc`` (default: the first timestamp) to
before ``end_utc`` (default: one step after the last timestamp).

Gap policy (``GapPolicy``), in this order; each action is counted in ``MeterTable.quality``:

1. rows earlier than the row before (long data: than the previous row of the same series) are counted as
   ``non_monotonic_rows`` and sorted — stably, so file order decides among equal timestamps — or rejected
   when ``sort_rows=False``;
2. rows outside [start_utc, end_utc) are dropped: ``dropped_rows``;
3. rows repeating a timestamp (long data: timestamp, customer and terminal): ``duplicates`` keeps the last
   (default) or first in file order, or rejects the file; the rows removed are ``duplicate_timestamps``;
4. rows whose timestamp is not start + k·step_s are dropped: ``off_grid_rows``;
5. grid steps with no row are ``missing_steps``; their cells are NaN;
6. gaps: NaN cells of the kept rows (``nan_values``: empty cells, or nulls of a typed Parquet column; any other
   text in a value cell, such as ``n/a``, is refused with its file, row, column and value), (step, series) pairs
   with no row in long data (``absent_values``) and the cells of missing steps. A gap of at most
   ``max_fill_steps`` steps (default 4) that follows a known value is forward-filled entirely
   (``filled_values``); longer gaps, and gaps at the start, are left NaN in full (``unfilled_values``). Cells
   count p and q series read from the file: nan_values + absent_values + missing_steps × n_series = filled_values
   + unfilled_values.

A table may therefore hold NaN: the caller decides, and ``require_finite`` raises if it may not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from streams.errors import DataError, raise_data_problems
from streams.meters.table import DataQuality, MeterTable

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

__all__ = [
    "DEFAULT_GAP_POLICY",
    "MAX_STEP_S",
    "MIN_STEP_S",
    "DuplicateRule",
    "GapPolicy",
    "LocalTime",
    "PowerUnit",
    "match_customers",
    "read_meter_data",
    "require_finite",
]


class _Named(Protocol):
    @property
    def name(self) -> str: ...


class Customer(Protocol):
    """What the reader needs of a feeder customer (``twin.network.Customer`` is one): streams import no twin."""

    @property
    def id(self) -> str: ...
    @property
    def connection(self) -> str: ...
    @property
    def n_phases(self) -> int: ...
    @property
    def phases(self) -> Sequence[_Named]: ...
    @property
    def power_factor(self) -> float: ...


class Feeder(Protocol):
    """What the reader needs of a feeder (``twin.network.Feeder`` is one)."""

    @property
    def name(self) -> str: ...
    @property
    def customers(self) -> Sequence[Customer]: ...

MIN_STEP_S = 60
MAX_STEP_S = 3600
TIME_COLUMNS = ("time", "time_utc")
LONG_COLUMNS = ("customer", "phase", "terminal", "p", "q")
_NA_TEXT = frozenset({"", "nan", "na", "n/a", "null", "none"})
# In value cells only an empty cell is a missing value: any text ("n/a", "NA", "-") is a refusal naming the cell.
_MISSING_VALUE_TEXT = frozenset({""})
# A UTC offset after a time of day; a date alone ("2024-03-01") ends in "-01" but is naive.
_OFFSET = re.compile(r"[T ]\d{1,2}(?::\d{2}){0,2}(?:[.,]\d+)?\s*(?:Z|[+-]\d{2}(?::?\d{2})?)$", re.IGNORECASE)
_DAY_FIRST = re.compile(r"^\d{1,2}[./-]\d{1,2}[./-]\d{4}")
_DECIMAL_COMMA = re.compile(r"^([+-]?\d*),(\d+)$")
_TERMINALS = ("1", "2", "3")
_PHASES = ("A", "B", "C")
_SHOWN = 5


class PowerUnit(StrEnum):
    """Unit of the values in a file: power, or energy per interval (converted to mean power)."""

    W = "W"
    KW = "kW"
    MW = "MW"
    WH = "Wh"
    KWH = "kWh"
    MWH = "MWh"

    @classmethod
    def _missing_(cls, value: object) -> PowerUnit | None:
        """Units are matched case-insensitively (``kw``, ``KWH``); the canonical spelling is kept."""
        if isinstance(value, str):
            for unit in cls:
                if unit.value.lower() == value.strip().lower():
                    return unit
        return None

    @property
    def is_energy(self) -> bool:
        return self in (PowerUnit.WH, PowerUnit.KWH, PowerUnit.MWH)

    def kw_factor(self, step_s: int) -> float:
        """Multiply a value in this unit by this to get kW (kvar) over a step of ``step_s`` seconds."""
        scale = {"W": 1e-3, "kW": 1.0, "MW": 1e3}[self.value.removesuffix("h")]
        return scale * 3600.0 / step_s if self.is_energy else scale


class DuplicateRule(StrEnum):
    KEEP_LAST = "keep_last"
    KEEP_FIRST = "keep_first"
    REJECT = "reject"


class GapPolicy(BaseModel):
    """How the reader repairs raw data; see the module docstring for the order and what each count means."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    max_fill_steps: int = Field(default=4, ge=0, description="longest gap forward-filled, steps; 0 = none")
    duplicates: DuplicateRule = Field(default=DuplicateRule.KEEP_LAST, description="rows sharing a timestamp")
    sort_rows: bool = Field(default=True, description="sort out-of-order rows; False = reject the file")


DEFAULT_GAP_POLICY = GapPolicy()


@dataclass(frozen=True)
class _Key:
    """One series in the file: a customer's terminal label, active or reactive."""

    customer: str
    label: str
    reactive: bool


@dataclass
class _Parsed:
    """The file as numbers: one row per raw row (wide) or per long row, before any policy."""

    times_ns: np.ndarray  # int64 ns since epoch, UTC, per row
    keys: list[_Key]  # p keys first, then q keys
    values: np.ndarray  # wide: [rows, n_keys]; long: [rows, 2] (p, q)
    series_of_row: np.ndarray | None  # long: index into the p keys per row; wide: None
    has_q: bool


def _read_frame(path: Path) -> pd.DataFrame:
    suffixes = [s.lower() for s in path.suffixes]
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        if suffixes[-1:] == [".parquet"]:
            return pd.read_parquet(path)
        if ".csv" in suffixes[-2:]:
            return pd.read_csv(path, dtype=str, keep_default_na=False, sep=csv_separator(path))
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: cannot read: {err}") from err
    raise DataError(f"{path}: unknown file type {''.join(path.suffixes)!r}; expected .csv, .csv.gz or "
                    ".parquet")


def csv_separator(path: Path) -> str:
    """``;`` when the header line holds more semicolons than commas (the usual European export, whose values
    then take a decimal comma), else ``,``."""
    import gzip

    opener = gzip.open if path.suffix.lower() == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
            header = fh.readline()
    except OSError:
        return ","
    return ";" if header.count(";") > header.count(",") else ","


def _row_name(i: int, *, csv: bool) -> str:
    return f"line {i + 2}" if csv else f"row {i}"


@dataclass
class LocalTime:
    """How to read timestamps that are not ISO-8601 with an offset: ``time_format`` (strptime, e.g.
    ``%d.%m.%Y %H:%M``) and/or ``timezone`` (IANA, e.g. ``Europe/Brussels``) for naive local times with
    daylight saving. In the autumn the clock hour repeated is read in file order (its first pass in summer time,
    its second in winter time); a time in the spring hour that does not exist is dropped. Both counted."""

    timezone: str | None = None
    time_format: str | None = None
    repeated_hour_rows: int = 0
    nonexistent_rows: int = 0

    def to_utc_ns(self, series: pd.Series, *, name: str, csv: bool, problems: list[str],
                  naive_is_utc: bool) -> np.ndarray:
        empty = np.zeros(len(series), dtype=np.int64)
        if isinstance(series.dtype, pd.DatetimeTZDtype):
            return series.dt.tz_convert("UTC").dt.as_unit("ns").astype("int64").to_numpy()
        if pd.api.types.is_datetime64_dtype(series.dtype):
            parsed = pd.Series(series)
        else:
            text = series.astype(str).str.strip()
            try:
                parsed = pd.to_datetime(text, format=self.time_format or "ISO8601", errors="coerce")
            except ValueError as err:
                problems.append(f"{name}: --time-format {self.time_format!r} cannot be used: {err}")
                return empty
            if isinstance(parsed.dtype, pd.DatetimeTZDtype):
                parsed = parsed.dt.tz_convert("UTC")
            bad = np.flatnonzero(parsed.isna().to_numpy())
            if len(bad):
                shown = ", ".join(f"{text[i]!r} at {_row_name(int(i), csv=csv)}" for i in bad[:_SHOWN])
                what = f"in the format {self.time_format!r}" if self.time_format else "ISO-8601 timestamps"
                problems.append(f"{name}: {len(bad)} value(s) are not {what}: {shown}")
                return empty
        if isinstance(parsed.dtype, pd.DatetimeTZDtype):
            return parsed.dt.as_unit("ns").astype("int64").to_numpy()
        if self.timezone is None:
            if not naive_is_utc:
                problems.append(f"{name}: timestamps have no time zone (first {parsed.iloc[0]}); declare them UTC "
                                "with --naive-utc or give their zone with --timezone (e.g. Europe/Brussels)")
                return empty
            return parsed.dt.tz_localize("UTC").dt.as_unit("ns").astype("int64").to_numpy()
        return self._localized(parsed, name=name, problems=problems)

    def _localized(self, naive: pd.Series, *, name: str, problems: list[str]) -> np.ndarray:
        try:
            summer = naive.dt.tz_localize(self.timezone, ambiguous=np.ones(len(naive), dtype=bool),
                                          nonexistent="NaT")
            winter = naive.dt.tz_localize(self.timezone, ambiguous=np.zeros(len(naive), dtype=bool),
                                          nonexistent="NaT")
        except (KeyError, ValueError) as err:  # zoneinfo's error for an unknown zone is a KeyError
            problems.append(f"{name}: --timezone {self.timezone!r} is not a known time zone (IANA name, e.g. "
                            f"Europe/Brussels): {err}")
            return np.zeros(len(naive), dtype=np.int64)
        summer_ns = summer.dt.as_unit("ns").astype("int64").to_numpy()
        winter_ns = winter.dt.as_unit("ns").astype("int64").to_numpy()
        missing = summer.isna().to_numpy()
        ambiguous = (summer_ns != winter_ns) & ~missing
        result = summer_ns.copy()
        values = naive.to_numpy()
        # the repeated hour: its rows after the clock went back (a time earlier than the one before) are winter
        rows = np.flatnonzero(ambiguous)
        days = pd.DatetimeIndex(values[rows]).normalize() if len(rows) else pd.DatetimeIndex([])
        for day in days.unique():
            group = rows[days == day]
            back = np.flatnonzero(np.diff(values[group]) < np.timedelta64(0, "ns"))
            if len(back):
                second = group[back[0] + 1:]
                result[second] = winter_ns[second]
        self.repeated_hour_rows += int(ambiguous.sum())
        self.nonexistent_rows += int(missing.sum())
        result[missing] = np.iinfo(np.int64).min  # dropped by the caller
        return result

    def note(self) -> str:
        parts = [f"time zone {self.timezone}: {self.repeated_hour_rows} row(s) in a repeated autumn hour (first "
                 f"pass summer time, second winter time), {self.nonexistent_rows} row(s) in a skipped spring hour "
                 "dropped"] if self.timezone else []
        if self.time_format:
            parts.append(f"times read in the format {self.time_format!r}")
        return "; ".join(parts)


def _times(raw: pd.Series | pd.Index, *, name: str, naive_is_utc: bool, csv: bool,
           problems: list[str], local: LocalTime | None = None) -> np.ndarray:
    """UTC timestamps as int64 ns; problems for naive, unparseable or non-time values. ``local`` reads naive
    times in a time zone and/or text in a strptime format (its counts land in ``local``)."""
    series = pd.Series(raw).reset_index(drop=True)
    empty = np.zeros(len(series), dtype=np.int64)
    if local is not None and (local.time_format or local.timezone):
        return local.to_utc_ns(series, name=name, csv=csv, problems=problems, naive_is_utc=naive_is_utc)
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        parsed = series.dt.tz_convert("UTC")
    elif pd.api.types.is_datetime64_dtype(series.dtype):
        if not naive_is_utc:
            problems.append(f"{name}: timestamps have no time zone (first {series.iloc[0]}); give them a UTC "
                            "offset, declare them UTC with --naive-utc, or give their zone with --timezone "
                            "(e.g. Europe/Brussels)")
            return empty
        parsed = series.dt.tz_localize("UTC")
    elif series.dtype == object or pd.api.types.is_string_dtype(series.dtype):
        text = series.astype(str).str.strip()
        blank = (series.isna() | text.str.lower().isin(_NA_TEXT | {"nat"})).to_numpy()
        naive = ~text.str.contains(_OFFSET).to_numpy() & ~blank
        if blank.any():
            first = int(np.flatnonzero(blank)[0])
            problems.append(f"{name}: {int(blank.sum())} blank timestamp(s), first at "
                            f"{_row_name(first, csv=csv)}")
        if naive.any() and not naive_is_utc:
            first = int(np.flatnonzero(naive)[0])
            problems.append(f"{name}: {int(naive.sum())} timestamp(s) without a UTC offset, first "
                            f"{text[first]!r} at {_row_name(first, csv=csv)}; give them an offset (e.g. "
                            "+00:00 or Z), declare them UTC with --naive-utc, or give their zone with --timezone "
                            "(e.g. Europe/Brussels; daylight saving handled)")
        if blank.any() or (naive.any() and not naive_is_utc):
            return empty
        parsed = pd.to_datetime(text, utc=True, format="ISO8601", errors="coerce")
        bad = np.flatnonzero(parsed.isna().to_numpy())
        if len(bad):
            shown = ", ".join(f"{text[i]!r} at {_row_name(int(i), csv=csv)}" for i in bad[:_SHOWN])
            hint = ""
            if _DAY_FIRST.match(text[int(bad[0])]):
                hint = ("; day-first dates: give their format, e.g. --time-format '%d.%m.%Y %H:%M' (and "
                        "--timezone for local time)")
            problems.append(f"{name}: {len(bad)} value(s) are not ISO-8601 timestamps: {shown}{hint}")
            return empty
    else:
        problems.append(f"{name}: values of type {series.dtype}; expected ISO-8601 text or datetimes")
        return empty
    return parsed.dt.as_unit("ns").astype("int64").to_numpy()


def _numbers(column: pd.Series, *, name: str, csv: bool, problems: list[str]) -> np.ndarray:
    """Floats; an empty cell (or a null/NaN of a typed Parquet column) is NaN, a gap; any other value that is not
    a finite number (text such as ``n/a``, or ``inf``) is a problem naming its row, column and value."""
    if pd.api.types.is_numeric_dtype(column.dtype) and not pd.api.types.is_bool_dtype(column.dtype):
        values = column.to_numpy(dtype=float, na_value=np.nan)
        bad = np.isinf(values)
    else:
        text = column.astype(str).str.strip()
        missing = (column.isna() | text.isin(_MISSING_VALUE_TEXT)).to_numpy()
        values = pd.to_numeric(text.where(~missing), errors="coerce").to_numpy(dtype=float)
        bad = (np.isnan(values) & ~missing) | np.isinf(values)
    if bad.any():
        where = np.flatnonzero(bad)
        shown = ", ".join(f"{column.iloc[i]!r} at {_row_name(int(i), csv=csv)}" for i in where[:_SHOWN])
        more = f" (first {_SHOWN} shown)" if len(where) > _SHOWN else ""
        problems.append(f"column {name!r}: {len(where)} value(s) are not finite numbers{more}: {shown}; write "
                        "numbers, and leave the cell of a missing value empty")
    return values


def _time_source(
    frame: pd.DataFrame, problems: list[str]
) -> tuple[str, pd.Series | pd.Index | None, list[str]]:
    """The time values, their name, and the remaining columns."""
    columns = [str(c) for c in frame.columns]
    named = [c for c in TIME_COLUMNS if c in columns]
    if len(named) > 1:
        problems.append(f"both {' and '.join(named)} columns; expected one time column")
        return named[0], None, columns
    if named:
        return f"column {named[0]!r}", frame[named[0]], [c for c in columns if c != named[0]]
    if isinstance(frame.index, pd.DatetimeIndex):
        return "index", frame.index, columns
    problems.append(f"no time column ({' or '.join(TIME_COLUMNS)}) and no datetime index")
    return "", None, columns


def _wide_key(column: str, problems: list[str]) -> _Key | None:
    reactive = column.endswith("_q")
    base = column[:-2] if reactive else column
    customer, sep, label = base.rpartition("_")
    if not sep or not customer or not label:
        problems.append(f"column {column!r} is not '<customer>_<terminal>' or '<customer>_<terminal>_q'")
        return None
    if label not in _TERMINALS + _PHASES:
        problems.append(f"column {column!r}: {label!r} is neither a terminal 1, 2, 3 nor a phase letter "
                        "A, B, C")
        return None
    return _Key(customer, label, reactive)


def _parse_wide(frame: pd.DataFrame, times_ns: np.ndarray, columns: list[str], *, csv: bool,
                problems: list[str]) -> _Parsed:
    keys: list[_Key] = []
    used: list[str] = []
    seen: dict[_Key, str] = {}
    for column in columns:
        key = _wide_key(column, problems)
        if key is None:
            continue
        if key in seen:
            problems.append(f"columns {seen[key]!r} and {column!r} hold the same series")
            continue
        seen[key] = column
        keys.append(key)
        used.append(column)
    if not used:
        problems.append("no data columns")
    order = sorted(range(len(keys)), key=lambda k: keys[k].reactive)
    columns_in_order = [_numbers(frame[used[k]], name=used[k], csv=csv, problems=problems) for k in order]
    values = np.column_stack(columns_in_order) if used else np.zeros((len(frame), 0))
    p_keys = [keys[k] for k in order if not keys[k].reactive]
    q_keys = [keys[k] for k in order if keys[k].reactive]
    return _Parsed(times_ns=times_ns, keys=p_keys + q_keys, values=values, series_of_row=None,
                   has_q=bool(q_keys))


def _parse_long(frame: pd.DataFrame, times_ns: np.ndarray, columns: list[str], *, csv: bool,
                problems: list[str]) -> _Parsed:
    unexpected = [c for c in columns if c not in LONG_COLUMNS]
    if unexpected:
        problems.append(f"long format: unexpected column(s) {', '.join(map(repr, unexpected))}; expected "
                        "time, customer, phase or terminal, p and optionally q")
    label_columns = [c for c in ("phase", "terminal") if c in columns]
    if len(label_columns) != 1:
        problems.append(f"long format: {len(label_columns)} of the columns 'phase', 'terminal'; expected one")
    if "p" not in columns:
        problems.append("long format: no 'p' column")
    if problems:
        return _Parsed(times_ns, [], np.zeros((0, 2)), np.zeros(0, dtype=np.int64), False)
    customers = frame["customer"].astype(str).str.strip().to_numpy()
    labels = frame[label_columns[0]].astype(str).str.strip()
    if label_columns[0] == "terminal":
        labels = labels.str.replace(r"^(\d)\.0+$", r"\1", regex=True)
        allowed, what = _TERMINALS, "a terminal 1, 2, 3"
    else:
        allowed, what = _PHASES, "a phase letter A, B, C"
    bad = np.flatnonzero(~labels.isin(allowed).to_numpy())
    if len(bad):
        shown = ", ".join(f"{labels.iloc[i]!r} at {_row_name(int(i), csv=csv)}" for i in bad[:_SHOWN])
        problems.append(f"column {label_columns[0]!r}: {len(bad)} value(s) are not {what}: {shown}")
    blank = np.flatnonzero(frame["customer"].isna().to_numpy() | (customers == ""))
    if len(blank):
        problems.append(f"column 'customer': {len(blank)} blank value(s), first at "
                        f"{_row_name(int(blank[0]), csv=csv)}")
    p = _numbers(frame["p"], name="p", csv=csv, problems=problems)
    has_q = "q" in columns
    q = _numbers(frame["q"], name="q", csv=csv, problems=problems) if has_q else np.full(len(frame), np.nan)
    pairs = pd.MultiIndex.from_arrays([customers, labels.to_numpy()])
    codes, uniques = pd.factorize(pairs)
    keys = [_Key(str(c), str(lab), False) for c, lab in uniques]
    keys += [_Key(k.customer, k.label, True) for k in keys] if has_q else []
    return _Parsed(times_ns=times_ns, keys=keys, values=np.column_stack([p, q]),
                   series_of_row=codes.astype(np.int64), has_q=has_q)


def _terminal_map(keys: list[_Key], customers: Sequence[Customer] | None, problems: list[str], *,
                  exact: bool = True) -> tuple[list[str], dict[tuple[str, str], int]]:
    """Customer order of the table, and the terminal index of each (customer, label).

    With ``exact=False`` the order is the given customers found in the data, then the data's other customers
    in file order (mapped as without ``customers``).
    """
    labels_of: dict[str, list[str]] = {}
    for k in keys:
        if not k.reactive:
            labels_of.setdefault(k.customer, []).append(k.label)
    p_pairs = {(k.customer, k.label) for k in keys if not k.reactive}
    q_pairs = {(k.customer, k.label) for k in keys if k.reactive}
    if q_only := sorted(q_pairs - p_pairs):
        names = ", ".join(f"{c}_{lab}" for c, lab in q_only)
        problems.append(f"reactive power without active power for {names}")
    if q_pairs and (p_only := sorted(p_pairs - q_pairs)):
        names = ", ".join(f"{c}_{lab}" for c, lab in p_only)
        problems.append(f"reactive power missing for {names}; give q for every series or for none")
    terminal: dict[tuple[str, str], int] = {}
    by_id = {c.id: c for c in customers} if customers is not None else {}
    if customers is not None and exact:
        problems += _mismatch(wanted=[c.id for c in customers], found=list(labels_of))
    for customer, labels in labels_of.items():
        if all(lab in _TERMINALS for lab in labels):
            indices = {lab: int(lab) - 1 for lab in labels}
        elif all(lab in _PHASES for lab in labels):
            indices = {lab: j for j, lab in enumerate(labels)}
        else:
            problems.append(f"customer {customer!r} mixes terminal numbers and phase letters "
                            f"({', '.join(labels)}); use one kind")
            continue
        c = by_id.get(customer)
        if c is not None:
            indices = _check_terminals(c, labels, problems) or indices
        terminal.update({(customer, lab): j for lab, j in indices.items()})
    if customers is None:
        order = list(labels_of)
    elif exact:
        order = [c.id for c in customers]
    else:
        order = [c.id for c in customers if c.id in labels_of] + [c for c in labels_of if c not in by_id]
    return order, terminal


def _check_terminals(customer: Customer, labels: list[str], problems: list[str]) -> dict[str, int] | None:
    """Terminal index per label for a known customer; problems for labels or terminals that do not fit."""
    if labels[0] in _TERMINALS:
        wanted = list(_TERMINALS[: customer.n_phases])
        what = "terminal"
        indices = {lab: int(lab) - 1 for lab in labels}
    else:
        wanted = [p.name for p in customer.phases]
        what = "phase"
        indices = {lab: wanted.index(lab) for lab in labels if lab in wanted}
    extra = [lab for lab in labels if lab not in wanted]
    missing = [lab for lab in wanted if lab not in labels]
    remedy = ("; label each column with the phase its terminal was on when measured (the feeder's connection, "
              "before any --rephase plan) or with the terminal number 1-3" if what == "phase" else "")
    if extra:
        problems.append(f"customer {customer.id!r} ({customer.connection}): data for {what}(s) "
                        f"{', '.join(extra)} it does not have{remedy}")
    if missing:
        problems.append(f"customer {customer.id!r} ({customer.connection}): no data for {what}(s) "
                        f"{', '.join(missing)}{remedy}")
    return None if extra else indices


def _mismatch(*, wanted: list[str], found: list[str], feeder_name: str | None = None) -> list[str]:
    """The exact lists of expected customers without data and data customers not expected."""
    known, expected = set(found), set(wanted)
    of_feeder = f" of feeder {feeder_name!r}" if feeder_name else ""
    not_in = f"not in feeder {feeder_name!r}" if feeder_name else "not expected"
    out = []
    if missing := [c for c in wanted if c not in known]:
        out.append(f"{len(missing)} customer(s){of_feeder} with no data: {', '.join(map(repr, missing))}")
    if extra := [c for c in found if c not in expected]:
        out.append(f"{len(extra)} data customer(s) {not_in}: {', '.join(map(repr, extra))}")
    return out


def _ns(value: pd.Timestamp | None, name: str, problems: list[str]) -> int | None:
    if value is None:
        return None
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is None:
        problems.append(f"{name} = {stamp} has no time zone; expected an aware timestamp")
        return None
    return int(stamp.tz_convert("UTC").as_unit("ns").value)


def _fill_gaps(grid: np.ndarray, max_fill_steps: int) -> int:
    """Forward-fill, in place, each NaN run of at most ``max_fill_steps`` after a value; the cells filled."""
    filled = 0
    if max_fill_steps == 0:
        return 0
    for s in np.flatnonzero(np.isnan(grid).any(axis=0)):
        column = grid[:, s]
        edges = np.diff(np.concatenate(([0], np.isnan(column).astype(np.int8), [0])))
        for start, stop in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True):
            if start > 0 and stop - start <= max_fill_steps:
                column[start:stop] = column[start - 1]
                filled += int(stop - start)
    return filled


@dataclass(frozen=True)
class _Grid:
    """Values of every series on the regular grid, with what aligning them found."""

    anchor_ns: int
    step_s: int
    values: np.ndarray  # [n_steps, n_keys], NaN where unknown
    counts: dict[str, int]


def _non_monotonic(t: np.ndarray, series: np.ndarray | None) -> int:
    """Rows earlier than the row before (long data: the previous row of the same series)."""
    if series is None:
        return int(np.count_nonzero(t[1:] < t[:-1]))
    by_series = np.argsort(series, kind="stable")
    same = series[by_series][1:] == series[by_series][:-1]
    return int(np.count_nonzero(same & (t[by_series][1:] < t[by_series][:-1])))


def _deduplicated(rows: np.ndarray, t: np.ndarray, series: np.ndarray | None, *, rule: DuplicateRule,
                  source: str) -> tuple[np.ndarray, int]:
    """Rows sorted by (series, time), repeated timestamps resolved by ``rule``; and how many were removed."""
    group = np.zeros(len(rows), dtype=np.int64) if series is None else series[rows]
    by_time = np.lexsort((rows, t[rows], group))  # ties stay in file order
    rows, group = rows[by_time], group[by_time]
    same = (t[rows][1:] == t[rows][:-1]) & (group[1:] == group[:-1])
    duplicates = int(np.count_nonzero(same))
    if duplicates and rule is DuplicateRule.REJECT:
        first = pd.Timestamp(int(t[rows][1:][same][0]), tz="UTC")
        raise DataError(f"{source}: {duplicates} row(s) repeat a timestamp, first {first.isoformat()}; "
                        "remove them or use GapPolicy(duplicates='keep_last')")
    first_of_run, last_of_run = np.concatenate(([True], ~same)), np.concatenate((~same, [True]))
    keep = first_of_run if rule is DuplicateRule.KEEP_FIRST else last_of_run
    return rows[keep], duplicates


def _checked_step(unique_t: np.ndarray, step_s: int | None, source: str) -> int:
    how = "given"
    if step_s is None:
        if len(unique_t) < 2:
            raise DataError(f"{source}: one timestamp only; cannot infer the step, pass step_s")
        step_s = round(float(np.median(np.diff(unique_t))) / 1e9)
        how = "inferred as the median timestamp difference"
    if step_s % 60 or not MIN_STEP_S <= step_s <= MAX_STEP_S:
        raise DataError(f"{source}: step {step_s} s ({step_s / 60:g} min, {how}) is not supported; expected "
                        f"a whole number of minutes from {MIN_STEP_S // 60} to {MAX_STEP_S // 60}")
    return step_s


def _align(parsed: _Parsed, *, step_s: int | None, policy: GapPolicy, start_ns: int | None,
           end_ns: int | None, source: str) -> _Grid:
    """Steps 1-6 of the gap policy (module docstring)."""
    t, series = parsed.times_ns, parsed.series_of_row
    counts = {"non_monotonic_rows": _non_monotonic(t, series)}
    if counts["non_monotonic_rows"] and not policy.sort_rows:
        raise DataError(f"{source}: {counts['non_monotonic_rows']} row(s) earlier than the row before; sort "
                        "the file or use GapPolicy(sort_rows=True)")
    keep = np.ones(len(t), dtype=bool)
    if start_ns is not None:
        keep &= t >= start_ns
    if end_ns is not None:
        keep &= t < end_ns
    counts["dropped_rows"] = int(np.count_nonzero(~keep))
    if not keep.any():
        raise DataError(f"{source}: no rows in the requested period")
    rows, counts["duplicate_timestamps"] = _deduplicated(np.flatnonzero(keep), t, series,
                                                         rule=policy.duplicates, source=source)
    unique_t, time_of_row = np.unique(t[rows], return_inverse=True)
    step_s = _checked_step(unique_t, step_s, source)
    step_ns = step_s * 1_000_000_000
    anchor = start_ns if start_ns is not None else int(unique_t[0])
    on_grid = ((unique_t - anchor) % step_ns == 0)[time_of_row]
    counts["off_grid_rows"] = int(np.count_nonzero(~on_grid))
    rows = rows[on_grid]
    if not len(rows):
        raise DataError(f"{source}: no timestamp lies on the {step_s} s grid from "
                        f"{pd.Timestamp(anchor, tz='UTC').isoformat()}")
    stop = end_ns if end_ns is not None else int(t[rows].max()) + step_ns
    n_steps = -(-(stop - anchor) // step_ns)
    step_of_row = (t[rows] - anchor) // step_ns
    n_keys = len(parsed.keys)
    values = np.full((n_steps, n_keys), np.nan)
    present = np.zeros((n_steps, n_keys), dtype=bool)
    if series is None:
        values[step_of_row] = parsed.values[rows]
        present[step_of_row] = True
    else:
        n_p = n_keys // 2 if parsed.has_q else n_keys
        for kind in range(2 if parsed.has_q else 1):
            values[step_of_row, kind * n_p + series[rows]] = parsed.values[rows, kind]
            present[step_of_row, kind * n_p + series[rows]] = True
    step_has_row = np.zeros(n_steps, dtype=bool)
    step_has_row[step_of_row] = True
    counts["missing_steps"] = int(np.count_nonzero(~step_has_row))
    counts["nan_values"] = int(np.count_nonzero(present & np.isnan(values)))
    counts["absent_values"] = int(np.count_nonzero(~present[step_has_row]))
    counts["filled_values"] = _fill_gaps(values, policy.max_fill_steps)
    counts["unfilled_values"] = int(np.count_nonzero(np.isnan(values)))
    return _Grid(anchor_ns=anchor, step_s=step_s, values=values, counts=counts)


def read_meter_data(
    path: Path,
    *,
    unit: PowerUnit,
    step_s: int | None = None,
    policy: GapPolicy = DEFAULT_GAP_POLICY,
    customers: Sequence[Customer] | None = None,
    naive_is_utc: bool = False,
    start_utc: pd.Timestamp | None = None,
    end_utc: pd.Timestamp | None = None,
    exact: bool = True,
    timezone: str | None = None,
    time_format: str | None = None,
) -> MeterTable:
    """Read a CSV or Parquet meter-data file into a MeterTable on a regular UTC grid (see module docstring).

    With ``customers``, the table holds exactly those customers in that order, phase letters are mapped by
    their connections and missing q comes from their power factors. With ``exact=False`` as well, customers
    without data and data customers not among them are allowed: the table holds the given customers found in
    the data, in their order, then the others in file order (q = 0 for those without q); ``streams.meters.
    coverage`` then decides what becomes of both.
    Raises DataError listing every problem found in the file (unreadable, naive or unparseable timestamps,
    non-numeric values, bad column names, customers or terminals that do not match ``customers``), or naming
    the step when it is not 1-60 whole minutes, or the policy that rejected duplicates or unsorted rows.
    May return NaN where gaps exceed the policy: see ``require_finite``.
    """
    source = str(path)
    frame = _read_frame(path)
    if not len(frame):
        raise DataError(f"{source}: no rows")
    csv = path.suffix.lower() != ".parquet"
    decimal_comma = csv and csv_separator(path) == ";"
    problems: list[str] = []
    local = LocalTime(timezone=timezone, time_format=time_format) if timezone or time_format else None
    start_ns = _ns(start_utc, "start_utc", problems)
    end_ns = _ns(end_utc, "end_utc", problems)
    if start_ns is not None and end_ns is not None and end_ns <= start_ns:
        problems.append(f"end_utc {end_utc} is not after start_utc {start_utc}")
    time_name, raw_times, columns = _time_source(frame, problems)
    times_ns = (_times(raw_times, name=time_name, naive_is_utc=naive_is_utc, csv=csv, problems=problems,
                       local=local) if raw_times is not None else np.zeros(len(frame), dtype=np.int64))
    if decimal_comma:  # a ';'-separated export writes 0,25 for 0.25
        frame = frame.apply(lambda c: c.str.replace(_DECIMAL_COMMA, r"\1.\2", regex=True) if c.name in columns
                            and c.dtype == object else c)
    if local is not None and local.nonexistent_rows:
        kept = times_ns != np.iinfo(np.int64).min
        frame, times_ns = frame[kept].reset_index(drop=True), times_ns[kept]
    is_long = "customer" in columns
    parse = _parse_long if is_long else _parse_wide
    parsed = parse(frame, times_ns, columns, csv=csv, problems=problems)
    rows_read = len(frame)
    del frame, raw_times  # the parsed numbers are what the rows had: a long file is not held twice (issue 31)
    order, terminal = _terminal_map(parsed.keys, customers, problems, exact=exact)
    raise_data_problems(source, problems)
    grid = _align(parsed, step_s=step_s, policy=policy, start_ns=start_ns, end_ns=end_ns, source=source)
    parsed.values = np.empty((0, *parsed.values.shape[1:]))  # on the grid now: not held twice

    factor = unit.kw_factor(grid.step_s)
    n_steps = len(grid.values)
    p_kw = np.zeros((n_steps, len(order), 3))
    q_kvar = np.zeros_like(p_kw)
    index = {c: i for i, c in enumerate(order)}
    for s, key in enumerate(parsed.keys):
        target = q_kvar if key.reactive else p_kw
        target[:, index[key.customer], terminal[(key.customer, key.label)]] = grid.values[:, s] * factor
    energy = f" per {grid.step_s} s step, × {factor:g} to kW" if unit.is_energy else ""
    notes = [f"{len(parsed.keys)} series ({'long' if is_long else 'wide'} format), unit {unit.value}{energy}",
             f"step {grid.step_s} s " + ("given" if step_s is not None else "inferred (median difference)")]
    if not parsed.has_q and customers is not None:
        pf = {c.id: c.power_factor for c in customers}
        tan_phi = np.array([np.tan(np.arccos(pf.get(c, 1.0))) for c in order])
        q_kvar = p_kw * tan_phi[None, :, None]
        notes.append("no reactive power in the data: q = p·tan(acos(power_factor)) per customer")
    elif not parsed.has_q:
        notes.append("no reactive power in the data and no customers given: q_kvar = 0")
    if decimal_comma:
        notes.append("';'-separated values, decimal comma")
    if local is not None:
        notes.append(local.note())
    quality = DataQuality(rows_read=rows_read, notes=tuple(notes), **grid.counts)
    step_ns = grid.step_s * 1_000_000_000
    time_utc = pd.DatetimeIndex(pd.to_datetime(grid.anchor_ns + step_ns * np.arange(n_steps), unit="ns",
                                               utc=True))
    return MeterTable(time_utc=time_utc, step_s=grid.step_s, customer_ids=tuple(order), p_kw=p_kw,
                      q_kvar=q_kvar, source=source, quality=quality)


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of each run of True."""
    edges = np.diff(np.concatenate(([0], flags.astype(np.int8), [0])))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True))


def require_finite(table: MeterTable, *, start_utc: pd.Timestamp | None = None,
                   end_utc: pd.Timestamp | None = None, fill_option: str = "GapPolicy.max_fill_steps") -> MeterTable:
    """The table itself when every p and q value of the steps overlapping [start_utc, end_utc) is finite.

    Raises DataError naming each customer with NaN (or infinite) values there, its terminals and each gap (its
    length and first and last step, up to three per customer), and the remedy: the gap-fill limit
    (``fill_option``) that would carry the last value over them, or a period that starts after gaps at the
    start of the data, where there is no value to carry.
    """
    bad = ~(np.isfinite(table.p_kw) & np.isfinite(table.q_kvar))
    in_period = np.ones(table.n_steps, dtype=bool)
    step = pd.Timedelta(seconds=table.step_s)
    if start_utc is not None:
        in_period &= (table.time_utc + step > start_utc)
    if end_utc is not None:
        in_period &= table.time_utc < end_utc
    steps_bad = bad.any(axis=2)
    if not (steps_bad & in_period[:, None]).any():
        return table
    problems = []
    longest, at_start = 0, False
    for i in np.flatnonzero((steps_bad & in_period[:, None]).any(axis=0)):
        gaps = [(a, b) for a, b in _runs(steps_bad[:, i]) if in_period[a:b].any()]
        terminals = ", ".join(str(j + 1) for j in np.flatnonzero(bad[:, i, :].any(axis=0)))
        shown = "; ".join(f"{b - a} step(s) {table.time_utc[a].isoformat()} .. {table.time_utc[b - 1].isoformat()}"
                          + (" (at the start of the data)" if a == 0 else "") for a, b in gaps[:3])
        more = f" and {len(gaps) - 3} more" if len(gaps) > 3 else ""
        problems.append(f"customer {table.customer_ids[i]!r}: {len(gaps)} gap(s) of NaN on terminal(s) {terminals}: "
                        f"{shown}{more}")
        longest = max([longest, *(b - a for a, b in gaps if a > 0)])
        at_start |= any(a == 0 for a, _ in gaps)
    remedies = []
    if longest:
        remedies.append(f"set {fill_option} to {longest} (steps of {table.step_s} s) to carry the last value over "
                        "the gaps")
    if at_start:
        remedies.append("start the period after the gaps at the start of the data (no value to carry forward)")
    remedies.append("or choose a period without gaps")
    raise_data_problems(f"{table.source}: meter data have gaps in the period; {', '.join(remedies)}", problems)
    return table


def spare_terminal_problems(table: MeterTable, feeder: Feeder) -> list[str]:
    """One problem per customer of ``feeder`` with nonzero data on terminals beyond its number of phases."""
    problems = []
    index = {c: i for i, c in enumerate(table.customer_ids)}
    for c in feeder.customers:
        i = index.get(c.id)
        if i is None or c.n_phases == 3:
            continue
        spare = np.abs(table.p_kw[:, i, c.n_phases:]) + np.abs(table.q_kvar[:, i, c.n_phases:])
        if np.nansum(spare) > 0:
            problems.append(f"customer {c.id!r} ({c.connection}) has {c.n_phases} phase(s) but nonzero data "
                            f"on terminal(s) beyond {c.n_phases}")
    return problems


def match_customers(table: MeterTable, feeder: Feeder) -> MeterTable:
    """The table restricted to and ordered as the feeder's customers.

    Raises DataError listing, exactly, the feeder's customers missing from the data and the data's customers
    that are not in the feeder, and customers with nonzero data on terminals beyond their number of phases.
    """
    problems = _mismatch(wanted=[c.id for c in feeder.customers], found=list(table.customer_ids),
                         feeder_name=feeder.name)
    problems += spare_terminal_problems(table, feeder)
    raise_data_problems(f"{table.source}: meter data do not match feeder {feeder.name!r}", problems)
    return table.select([c.id for c in feeder.customers])
