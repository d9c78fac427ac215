"""The meter-voltage file: per interval, what each customer's smart meter and the transformer's LV meter report.

Long form, CSV or Parquet, one row per meter, terminal and interval::

    time_utc,meter,terminal,v_v,p_kw
    2024-01-15T00:00:00+00:00,LOAD1,1,229.8,0.41
    2024-01-15T00:00:00+00:00,transformer,A,241.2,12.7

- ``time_utc``: the interval's start, with an offset (aware UTC); every meter uses the same intervals.
- ``meter``: a customer id, or ``transformer`` for the reference meter at the LV busbar.
- ``terminal``: ``1``–``3`` for a customer (its meter's voltage inputs; a single-phase meter has ``1`` only);
  ``A``/``B``/``C`` for the transformer (its phases: the references).
- ``v_v``: mean phase-to-neutral voltage magnitude over the interval, V; ``p_kw``: mean active power over the
  interval, kW, load-positive (the transformer's: what it delivers into the LV network). Either may be empty.
- A missing interval is a missing row (or empty cells).

``phasetwin meter-voltages`` writes such a file from a twin run; ``phasetwin identify`` reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from streams.errors import DataError

__all__ = ["COLUMNS", "REFERENCE_METER", "MeterVoltages", "read_meter_voltages", "write_meter_voltages"]

REFERENCE_METER = "transformer"
COLUMNS = ("time_utc", "meter", "terminal", "v_v", "p_kw")
_PHASES = ("A", "B", "C")


@dataclass(frozen=True)
class MeterVoltages:
    """The file as arrays. ``v_v[t, i, j]``/``p_kw[t, i, j]``: customer ``customer_ids[i]``, terminal j+1, NaN
    where not reported; ``n_terminals[i]`` terminals the customer's meter reports; ``ref_v_v[t, φ]`` and
    ``ref_p_kw[t, φ]``: the transformer's phases A, B, C."""

    source: str
    time_utc: pd.DatetimeIndex
    customer_ids: tuple[str, ...]
    n_terminals: np.ndarray
    v_v: np.ndarray
    p_kw: np.ndarray
    ref_v_v: np.ndarray
    ref_p_kw: np.ndarray


def write_meter_voltages(path: Path, data: MeterVoltages) -> Path:
    """Write ``data`` in the long form above (CSV unless ``path`` ends in .parquet); NaN rows are left out."""
    frames = []
    for i, cid in enumerate(data.customer_ids):
        for j in range(int(data.n_terminals[i])):
            frames.append(pd.DataFrame({"time_utc": data.time_utc, "meter": cid, "terminal": str(j + 1),
                                        "v_v": data.v_v[:, i, j], "p_kw": data.p_kw[:, i, j]}))
    for k, phase in enumerate(_PHASES):
        frames.append(pd.DataFrame({"time_utc": data.time_utc, "meter": REFERENCE_METER, "terminal": phase,
                                    "v_v": data.ref_v_v[:, k], "p_kw": data.ref_p_kw[:, k]}))
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(COLUMNS))
    frame = frame[~(frame["v_v"].isna() & frame["p_kw"].isna())]
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False, float_format="%.6g", date_format="%Y-%m-%dT%H:%M:%S%z")
    return path


def read_meter_voltages(path: Path) -> MeterVoltages:
    """Read a meter-voltage file. Raises DataError naming the file and every problem found (missing columns,
    unparsable cells with their row, unknown terminals, timestamps without an offset, no reference meter)."""
    source = str(path)
    try:
        raw = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(
            path, dtype={"meter": str, "terminal": str}, keep_default_na=False, na_values=[""])
    except (OSError, ValueError) as err:
        raise DataError(f"{source}: cannot read the meter-voltage file: {err}") from err
    missing = [c for c in COLUMNS if c not in raw.columns]
    if missing:
        raise DataError(f"{source}: missing column(s) {', '.join(missing)}; expected {', '.join(COLUMNS)}")
    problems: list[str] = []
    values: dict[str, np.ndarray] = {}
    for column in ("v_v", "p_kw"):
        parsed = pd.to_numeric(raw[column], errors="coerce")
        bad = parsed.isna() & raw[column].notna()
        for row in np.flatnonzero(bad.to_numpy())[:5]:
            problems.append(f"row {row + 2}, column {column}: {raw[column].iloc[row]!r} is not a number")
        if bad.sum() > 5:
            problems.append(f"column {column}: {int(bad.sum()) - 5} more cell(s) that are not numbers")
        finite = parsed.to_numpy(dtype=float)
        nonfinite = ~np.isfinite(finite) & ~np.isnan(finite)
        if nonfinite.any():
            problems.append(f"column {column}: {int(nonfinite.sum())} infinite value(s), first at row "
                            f"{int(np.flatnonzero(nonfinite)[0]) + 2}")
        values[column] = finite
    try:
        times = pd.to_datetime(raw["time_utc"], utc=False, format="ISO8601")
    except (ValueError, TypeError) as err:
        raise DataError(f"{source}: column time_utc: {err}; expected ISO 8601 timestamps with an offset") from err
    if len(times) and getattr(times.dt, "tz", None) is None:
        problems.append("column time_utc: timestamps carry no offset; write them as aware UTC (…+00:00)")
    meters = raw["meter"].astype(str).to_numpy()
    terminals = raw["terminal"].astype(str).to_numpy()
    is_ref = meters == REFERENCE_METER
    bad_ref = is_ref & ~np.isin(terminals, _PHASES)
    bad_cust = ~is_ref & ~np.isin(terminals, ("1", "2", "3"))
    for row in np.flatnonzero(bad_ref | bad_cust)[:5]:
        expected = "A, B or C" if is_ref[row] else "1, 2 or 3"
        problems.append(f"row {row + 2}: meter {meters[row]!r} has terminal {terminals[row]!r}; expected {expected}")
    if not is_ref.any():
        problems.append(f"no rows of the reference meter {REFERENCE_METER!r} (terminals A, B, C)")
    if problems:
        raise DataError(f"{source}: {len(problems)} problem(s) in the meter-voltage file:\n"
                        + "\n".join(f"  {i}. {p}" for i, p in enumerate(problems, start=1)))
    time_index = pd.DatetimeIndex(times).tz_convert("UTC")
    grid = pd.DatetimeIndex(np.unique(time_index))
    t_of = grid.get_indexer(time_index)
    ids = tuple(dict.fromkeys(m for m in meters if m != REFERENCE_METER))
    shape = (len(grid), len(ids), 3)
    v_v, p_kw = np.full(shape, np.nan), np.full(shape, np.nan)
    n_terminals = np.zeros(len(ids), dtype=int)
    ref_v, ref_p = np.full((len(grid), 3), np.nan), np.full((len(grid), 3), np.nan)
    ref_rows = np.flatnonzero(is_ref)
    k_of = pd.Index(_PHASES).get_indexer(terminals[ref_rows])
    ref_v[t_of[ref_rows], k_of] = values["v_v"][ref_rows]
    ref_p[t_of[ref_rows], k_of] = values["p_kw"][ref_rows]
    rows = np.flatnonzero(~is_ref)
    i_rows = pd.Index(ids).get_indexer(meters[rows])
    j_rows = terminals[rows].astype(int) - 1
    v_v[t_of[rows], i_rows, j_rows] = values["v_v"][rows]
    p_kw[t_of[rows], i_rows, j_rows] = values["p_kw"][rows]
    np.maximum.at(n_terminals, i_rows, j_rows + 1)
    return MeterVoltages(source=source, time_utc=grid, customer_ids=ids, n_terminals=n_terminals, v_v=v_v,
                         p_kw=p_kw, ref_v_v=ref_v, ref_p_kw=ref_p)
