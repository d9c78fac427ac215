"""A Feeder from a pandapower network saved as JSON (``pp.to_json``), and the mapping of pandapower tables.

The row mappers (``bus_fields``, ``line_fields``, ``transformer_fields``, ``source_fields``) turn one row of a
pandapower-style table into the raw fields of a twin element; the Liège loader uses them on its CSV tables,
which carry pandapower's column names. Values that do not parse are passed on as text so that validation
names them.

Mapping rules (pandapower → twin):

- ids are the pandapower table indices as text (bus 448 → ``"448"``, line 18 → ``"18"``);
- ``line``: ``r_ohm_per_km``/``x_ohm_per_km``/``c_nf_per_km`` are positive sequence, ``r0``/``x0``/``c0`` zero
  sequence; ``parallel`` n divides the impedances and multiplies the capacitances by n; the ampacity is
  ``max_i_ka × df × parallel`` (as pandapower's loading uses it). Lines without zero-sequence data
  (``r0_ohm_per_km``/``x0_ohm_per_km`` absent or empty) take them from the ``zero-sequence`` assumption, or are
  reported in ONE problem per network; lines with a shunt conductance (``g_us_per_km``, ``g0_us_per_km``) ≠ 0 or
  out of service are reported;
- ``trafo``: one, or with several the one named by the ``transformer`` assumption: its LV network (the buses
  its LV bus reaches through lines) and its HV bus are the feeder, named ``<network>-<transformer name>``;
  ``sn_mva`` → ``sn_kva``; ``vector_group`` Dyn, YNyn or Yyn with an optional clock number n (``Dyn5``): LV lags
  HV by n × 30°, and ``shift_degree``, when set, must agree; without a clock number ``shift_degree`` is used as
  given (pandapower's convention, e.g. 150 for Dyn5); an empty ``vector_group`` takes the ``vector-group``
  assumption or is reported; no-load losses (``pfe_kw``, ``i0_percent``) and the zero-sequence
  short-circuit data (``vk0_percent`` …) are not part of the twin's transformer and are ignored; an
  off-neutral tap (``tap_pos`` ≠ ``tap_neutral``), ``parallel`` ≠ 1 or out of service is reported;
- ``ext_grid``: exactly one, at the transformer HV bus; ``s_sc_max_mva``, ``rx_max``, ``x0x_max``,
  ``r0x0_max`` and ``vm_pu`` map to the source (the *max* short-circuit case); empty ones take the ``ext-grid``
  assumption or are reported in one problem naming them; ``va_degree`` is ignored;
- customers: every ``asymmetric_load`` row, then every ``load`` row (three-phase, connection ``ABC``);
- the customer id is the ``ean`` column if the table has one and it is set, else ``name`` if set, else
  ``"asymmetric_load-<index>"`` / ``"load-<index>"``, made a topic segment (``twin.loaders.names``: "Load R1" →
  ``Load-R1``); the network name likewise ("Summary Grid" → ``Summary-Grid``);
- the ordered phase connection of an ``asymmetric_load`` is taken from the first set value among the
  custom columns ``connection``, ``phases``, ``phase_load`` (e.g. ``CAB``). Without such a column the file
  cannot know which terminal is on which phase: the phases with nonzero ``p_<x>_mw`` or ``q_<x>_mvar`` are
  used in the order A, B, C. A row with neither is reported;
- ``feeder`` and ``distance_km`` (or ``distance``) custom columns are used when present; otherwise they are
  derived from the topology;
- the files carry no reliable power factor (``p``/``q`` are a single snapshot, often zero), so every customer
  gets the ``power_factor`` passed to ``load_feeder``;
- ``sgen`` / ``asymmetric_sgen`` rows at a customer's bus are behind-the-meter generation, already inside the
  customer's net meter data: they are accepted and add nothing to the feeder. At any other bus they are
  reported;
- switches: a closed bus-bus switch fuses its two buses into the one with the lower index, an open one leaves
  them apart; an open line switch makes its line a normally-open switchable line; closed line and transformer
  switches change nothing; an open transformer switch is reported. Every other element table (``gen``,
  ``trafo3w``, ``shunt``, ``storage`` …) that is not empty is reported.

Assumptions (``twin.loaders.assumptions``) are used only when stated, and logged once per network. Everything
reported is raised as ONE FeederError together with the twin's own validation problems, with the twin's
field names replaced by the pandapower columns they come from (``s_sc_mva`` → ``s_sc_max_mva``,
``r1_ohm_per_km`` → ``r_ohm_per_km`` …).
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections import Counter
from typing import TYPE_CHECKING, Any

import pandas as pd

from twin.errors import FeederError
from twin.loaders.assumptions import FeederSpec, ShortCircuit, ZeroSequence
from twin.loaders.names import topic_segment, unique_segments
from twin.network import Customer, Feeder, VectorGroup, assemble_feeder

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from pandapower import pandapowerNet

__all__ = [
    "DEFAULT_POWER_FACTOR",
    "PHASE_COLUMNS",
    "UNSUPPORTED_TABLES",
    "bus_fields",
    "declared_topology_problems",
    "line_fields",
    "load_feeder",
    "number",
    "source_fields",
    "transformer_fields",
]

log = logging.getLogger(__name__)

DEFAULT_POWER_FACTOR = 0.95
PHASE_COLUMNS = ("connection", "phases", "phase_load")
DISTANCE_COLUMNS = ("distance_km", "distance")
UNSUPPORTED_TABLES = (
    "bus_dc", "dcline", "gen", "impedance", "line_dc", "load_dc", "motor", "shunt", "source_dc", "ssc",
    "storage", "svc", "tcsc", "trafo3w", "vsc", "vsc_bipolar", "vsc_stacked", "ward", "xward",
)
# Distances declared in a file and the topology's path length may differ by rounding only.
DISTANCE_TOLERANCE_KM = 1e-6
_VECTOR_GROUP = re.compile(r"(Dyn|YNyn|Yyn)(\d{1,2})?", re.IGNORECASE)
_GROUP_OF = {g.value.lower(): g for g in VectorGroup}
SHORT_CIRCUIT_COLUMNS = {"s_sc_max_mva": "s_sc_mva", "rx_max": "rx_ratio", "x0x_max": "x0x_ratio",
                         "r0x0_max": "r0x0_ratio"}
# The twin's field names in validation messages, and the pandapower column each comes from.
_COLUMN_OF = {
    "net.line": {"r1_ohm_per_km": "r_ohm_per_km", "x1_ohm_per_km": "x_ohm_per_km", "c1_nf_per_km": "c_nf_per_km"},
    "net.trafo": {"sn_kva": "sn_mva (as kVA)", "shift_deg": "shift_degree"},
    "net.ext_grid": {v: k for k, v in SHORT_CIRCUIT_COLUMNS.items()},
}


def number(value: Any) -> Any:
    """A float when ``value`` is numeric or numeric text, else ``value`` unchanged (validation names it)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return value
    return value


def _is_set(value: Any) -> bool:
    """False for None, NaN and blank text: pandapower's and pandas' ways of saying "no value"."""
    if value is None:
        return False
    if isinstance(value, float) and math.isnan(value):
        return False
    return not (isinstance(value, str) and not value.strip())


def _flag(value: Any, *, default: bool) -> bool | None:
    """A boolean from a bool or True/False text; None when it is neither."""
    if not _is_set(value):
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    return {"true": True, "false": False, "1": True, "0": False, "1.0": True, "0.0": False}.get(text)


def _optional(row: Mapping[str, Any], key: str, default: float) -> Any:
    value = row.get(key)
    return number(value) if _is_set(value) else default


def _scaled(value: Any, factor: Any, *, divide: bool = False) -> Any:
    if isinstance(value, float) and isinstance(factor, float) and factor > 0:
        return value / factor if divide else value * factor
    return value


def _in_service(where: str, row: Mapping[str, Any], problems: list[str]) -> None:
    flag = _flag(row.get("in_service"), default=True)
    if flag is None:
        problems.append(f"{where}: in_service = {row.get('in_service')!r}; expected True or False")
    elif not flag:
        problems.append(f"{where}: out of service; remove it from the network or put it in service")


def bus_fields(where: str, index: str, row: Mapping[str, Any], problems: list[str]) -> dict[str, Any]:
    """Raw Bus fields from a pandapower ``bus`` row; coordinates from a GeoJSON point in ``geo`` if any."""
    _in_service(where, row, problems)
    fields: dict[str, Any] = {"id": index, "vn_kv": number(row.get("vn_kv"))}
    geo = row.get("geo")
    if isinstance(geo, str) and geo.strip():
        try:
            shape = json.loads(geo)
        except json.JSONDecodeError:
            problems.append(f"{where}: geo = {geo!r} is not GeoJSON")
            return fields
        coords = shape.get("coordinates") if isinstance(shape, dict) else None
        is_point = isinstance(shape, dict) and shape.get("type") == "Point"
        if is_point and isinstance(coords, list) and len(coords) >= 2:
            fields["x"], fields["y"] = number(coords[0]), number(coords[1])
        else:
            problems.append(f"{where}: geo = {geo!r}; expected a GeoJSON Point")
    return fields


def _zero_sequence_missing(row: Mapping[str, Any]) -> bool:
    return not all(_is_set(row.get(k)) for k in ("r0_ohm_per_km", "x0_ohm_per_km"))


def line_fields(
    where: str, index: str, row: Mapping[str, Any], problems: list[str], *,
    zero_sequence: ZeroSequence | None = None, missing_zero: list[str] | None = None,
) -> dict[str, Any]:
    """Raw Line fields from a pandapower ``line`` row: sequence data per km, with ``parallel``, ``df``.

    A row without zero-sequence data (``r0_ohm_per_km``/``x0_ohm_per_km`` absent or empty) takes them from
    ``zero_sequence`` when given. Its index is appended to ``missing_zero`` when the caller collects them (to
    report them once per network); otherwise the row is reported on its own.
    """
    _in_service(where, row, problems)
    row = dict(row)
    if _zero_sequence_missing(row):
        if missing_zero is not None:
            missing_zero.append(index)
        elif zero_sequence is None:
            problems.append(f"{where}: no zero-sequence data (r0_ohm_per_km, x0_ohm_per_km); the twin needs r0 "
                            "and x0")
        ratios = zero_sequence or ZeroSequence.model_validate({"r0/r1": 1.0, "x0/x1": 1.0})
        r1, x1 = number(row.get("r_ohm_per_km")), number(row.get("x_ohm_per_km"))
        row["r0_ohm_per_km"] = _scaled(r1, ratios.r0_r1)
        row["x0_ohm_per_km"] = _scaled(x1, ratios.x0_x1)
        if not _is_set(row.get("c0_nf_per_km")):
            row["c0_nf_per_km"] = _scaled(_optional(row, "c_nf_per_km", 0.0), ratios.c0_c1)
    for key in ("g_us_per_km", "g0_us_per_km"):
        g_us = _optional(row, key, 0.0)
        if g_us != 0.0:
            problems.append(f"{where}: {key} = {g_us!r}; shunt conductance is not supported, expected 0")
    parallel = _optional(row, "parallel", 1.0)
    derating = _optional(row, "df", 1.0)
    for key, value in (("parallel", parallel), ("df", derating)):
        if not isinstance(value, float) or value <= 0:
            problems.append(f"{where}: {key} = {value!r}; expected a positive number")
    return {
        "id": index,
        "from_bus": str(row.get("from_bus", "")).strip(),
        "to_bus": str(row.get("to_bus", "")).strip(),
        "length_km": number(row.get("length_km")),
        "r1_ohm_per_km": _scaled(number(row.get("r_ohm_per_km")), parallel, divide=True),
        "x1_ohm_per_km": _scaled(number(row.get("x_ohm_per_km")), parallel, divide=True),
        "r0_ohm_per_km": _scaled(number(row.get("r0_ohm_per_km")), parallel, divide=True),
        "x0_ohm_per_km": _scaled(number(row.get("x0_ohm_per_km")), parallel, divide=True),
        "c1_nf_per_km": _scaled(_optional(row, "c_nf_per_km", 0.0), parallel),
        "c0_nf_per_km": _scaled(_optional(row, "c0_nf_per_km", 0.0), parallel),
        "max_i_ka": _scaled(_scaled(number(row.get("max_i_ka")), derating), parallel),
    }


def transformer_fields(
    where: str, index: str, row: Mapping[str, Any], problems: list[str], *, vector_group: str | None = None,
) -> dict[str, Any]:
    """Raw Transformer fields from a pandapower ``trafo`` row; ``vector_group`` is used when the row has none."""
    _in_service(where, row, problems)
    parallel = _optional(row, "parallel", 1.0)
    if parallel != 1.0:
        problems.append(f"{where}: parallel = {parallel!r}; only a single transformer (1) is supported")
    tap_pos, tap_neutral = _optional(row, "tap_pos", math.nan), _optional(row, "tap_neutral", math.nan)
    if isinstance(tap_pos, float) and isinstance(tap_neutral, float) and not math.isnan(tap_pos) \
            and not math.isnan(tap_neutral) and tap_pos != tap_neutral:
        problems.append(f"{where}: tap_pos = {tap_pos} differs from tap_neutral = {tap_neutral}; "
                        "off-nominal taps are not supported, expected the neutral position")
    sn_mva = number(row.get("sn_mva"))
    return {
        "id": index,
        "hv_bus": str(row.get("hv_bus", "")).strip(),
        "lv_bus": str(row.get("lv_bus", "")).strip(),
        "sn_kva": sn_mva * 1000.0 if isinstance(sn_mva, float) else sn_mva,
        "vn_hv_kv": number(row.get("vn_hv_kv")),
        "vn_lv_kv": number(row.get("vn_lv_kv")),
        "vk_percent": number(row.get("vk_percent")),
        "vkr_percent": number(row.get("vkr_percent")),
        **_vector_group(where, row, problems, assumed=vector_group),
    }


def _vector_group(where: str, row: Mapping[str, Any], problems: list[str], *, assumed: str | None) -> dict[str, Any]:
    """``vector_group`` and ``shift_deg`` from pandapower's ``vector_group`` (e.g. ``Dyn5``) and ``shift_degree``.

    A clock number n in the group means LV lags HV by n × 30°; ``shift_degree``, when set, must agree with it
    (modulo 360°). Without a clock number ``shift_degree`` is used as given (0 when empty).
    """
    text = str(row.get("vector_group", "")).strip() if _is_set(row.get("vector_group")) else ""
    if not text and assumed is None:
        # the hint follows shift_degree when it is set: 150 degrees is Dyn5, not Dyn1
        shift_set = _optional(row, "shift_degree", math.nan)
        clock = (round(shift_set / 30.0) % 12 if isinstance(shift_set, float) and not math.isnan(shift_set)
                 and shift_set % 30.0 == 0.0 and round(shift_set / 30.0) % 2 == 1 else 1)
        problems.append(f"{where}: vector_group is empty; set it in net.trafo or assume one with --feeder "
                        f"'FILE;vector-group=Dyn{clock}'")
        return {"vector_group": "Dyn", "shift_deg": 30.0}
    text = text or str(assumed)
    shift = _optional(row, "shift_degree", math.nan)
    match = _VECTOR_GROUP.fullmatch(text)
    if match is None:
        problems.append(f"{where}: vector_group = {text!r}; expected Dyn, YNyn or Yyn with an optional clock "
                        "number, e.g. Dyn5, YNyn0")
        return {"vector_group": "Dyn", "shift_deg": 30.0}
    group = _GROUP_OF[match.group(1).lower()]
    if match.group(2) is None:
        return {"vector_group": group.value, "shift_deg": 0.0 if isinstance(shift, float) and math.isnan(shift)
                else shift}
    clock = int(match.group(2))
    if clock > 11 or (clock % 2 == 1) != (group is VectorGroup.DYN):
        problems.append(f"{where}: vector_group = {text!r}; clock numbers are 0-11, odd for Dyn and even for YNyn "
                        "and Yyn")
        return {"vector_group": group.value, "shift_deg": 30.0 if group is VectorGroup.DYN else 0.0}
    clock_deg = 30.0 * clock
    if isinstance(shift, float) and not math.isnan(shift) and (shift - clock_deg) % 360.0 != 0.0:
        problems.append(f"{where}: shift_degree = {shift:g} contradicts vector_group = {text!r} (clock "
                        f"{match.group(2)} = {clock_deg:g} degrees); expected them to agree")
    return {"vector_group": group.value, "shift_deg": shift if isinstance(shift, float) and not math.isnan(shift)
            else clock_deg}


def source_fields(
    where: str, row: Mapping[str, Any], vn_kv: Any, problems: list[str], *,
    short_circuit: ShortCircuit | None = None, assumed: list[str] | None = None,
) -> dict[str, Any]:
    """Raw Source fields from a pandapower ``ext_grid`` row; ``vn_kv`` is the nominal voltage of its bus.

    Short-circuit columns the row leaves empty are taken from ``short_circuit`` where it gives them (their names
    appended to ``assumed``); the others are reported in one problem naming the columns.
    """
    _in_service(where, row, problems)
    fields: dict[str, Any] = {"bus": str(row.get("bus", "")).strip(), "vn_kv": vn_kv,
                              "vm_pu": _optional(row, "vm_pu", 1.0)}
    missing = []
    given = short_circuit.model_dump() if short_circuit is not None else {}
    for column, field in SHORT_CIRCUIT_COLUMNS.items():
        if _is_set(row.get(column)):
            fields[field] = number(row.get(column))
        elif given.get(column) is not None:
            fields[field] = given[column]
            if assumed is not None:
                assumed.append(f"{column}={given[column]:g}")
        else:
            missing.append(column)
            fields[field] = 1.0  # placeholder: reported below, not validated again
    if missing:
        problems.append(f"{where}: no short-circuit data in {', '.join(missing)}; set them in net.ext_grid or "
                        f"assume them with --feeder 'FILE;ext-grid={','.join(f'{c}=…' for c in missing)}'")
    return fields


def declared_topology_problems(feeder: Feeder, *, where: str) -> list[str]:
    """Customers whose declared feeder index or distance disagrees with the topology.

    Declared feeder indices may number the outgoing LV cables differently from the topology, but each cable
    must carry one index: the index most of its customers declare; customers declaring another one, and an
    index used on two cables, are reported. A declared distance must equal the line-length path from the
    transformer LV bus to within 1e-6 km.
    """
    tree = feeder.tree()
    problems: list[str] = []
    on_branch: dict[int, list[Customer]] = {}
    for c in feeder.customers:
        on_branch.setdefault(tree.branch_of.get(c.bus, -1), []).append(c)
    branches_of_label: dict[int, list[int]] = {}
    for branch, members in on_branch.items():
        label = Counter(c.feeder for c in members).most_common(1)[0][0]
        branches_of_label.setdefault(label, []).append(branch)
        problems += [f"{where}: customer {c.id!r} declares feeder {c.feeder}, but the other customers on its "
                     f"LV cable declare feeder {label}; expected one feeder index per cable"
                     for c in members if c.feeder != label]
    problems += [f"{where}: feeder {label} is declared on {len(branches)} different LV cables; expected one"
                 for label, branches in branches_of_label.items() if len(branches) > 1]
    for c in feeder.customers:
        path_km = tree.distance_km.get(c.bus, math.nan)
        if not abs(c.distance_km - path_km) <= DISTANCE_TOLERANCE_KM:
            problems.append(f"{where}: customer {c.id!r} declares distance_km {c.distance_km!r}, but the "
                            f"line path from the transformer to bus {c.bus!r} is {path_km!r} km")
    return problems


def _customer_id(table: str, index: str, row: Mapping[str, Any]) -> str:
    for key in ("ean", "name"):
        if _is_set(row.get(key)):
            return str(row[key]).strip()
    return f"{table}-{index}"


def _asymmetric_phases(where: str, row: Mapping[str, Any], problems: list[str]) -> str | None:
    for key in PHASE_COLUMNS:
        if _is_set(row.get(key)):
            return str(row[key]).strip()
    powered = []
    for letter in "abc":
        values = [number(row.get(f"p_{letter}_mw")), number(row.get(f"q_{letter}_mvar"))]
        if any(isinstance(v, float) and not math.isnan(v) and v != 0.0 for v in values):
            powered.append(letter.upper())
    if not powered:
        problems.append(f"{where}: no phase column ({', '.join(PHASE_COLUMNS)}) and p/q are zero on every "
                        "phase; cannot tell which phases the customer uses, add a 'phases' column such as "
                        "'CAB'")
        return None
    return "".join(powered)


def _customer_fields(
    where: str, table: str, index: str, row: Mapping[str, Any], phases: str, power_factor: float,
    problems: list[str],
) -> dict[str, Any]:
    _in_service(where, row, problems)
    kind = row.get("type")
    if _is_set(kind) and str(kind).strip().lower() != "wye":
        problems.append(f"{where}: type = {kind!r}; only wye (phase-to-neutral) connections are supported")
    fields: dict[str, Any] = {"id": _customer_id(table, index, row), "bus": str(row.get("bus", "")).strip(),
                              "phases": phases, "power_factor": power_factor}
    feeder = row.get("feeder")
    if _is_set(feeder):
        value = number(feeder)
        fields["feeder"] = int(value) if isinstance(value, float) and value.is_integer() else value
    for key in DISTANCE_COLUMNS:
        if _is_set(row.get(key)):
            fields["distance_km"] = number(row[key])
            break
    return fields


def _rows(frame: pd.DataFrame) -> list[tuple[str, dict[str, Any]]]:
    return [(str(index), dict(zip(frame.columns, values, strict=True)))
            for index, values in zip(frame.index, frame.itertuples(index=False, name=None), strict=True)]


def _unsupported(
    net: pandapowerNet, customer_buses: set[str], kept_buses: set[str], switches: _Switches,
) -> tuple[list[str], int]:
    """Problems for elements the twin cannot represent, and the number of behind-the-meter generators."""
    problems = []
    for table in UNSUPPORTED_TABLES:
        frame = net.get(table)
        if isinstance(frame, pd.DataFrame) and len(frame):
            problems.append(f"net.{table}: {len(frame)} element(s) {', '.join(map(str, frame.index[:10]))}; "
                            f"{table} is not supported in an LV feeder, remove it")
    behind_meter = 0
    for table in ("sgen", "asymmetric_sgen"):
        frame = net.get(table)
        if not isinstance(frame, pd.DataFrame):
            continue
        for index, row in _rows(frame):
            bus = switches.bus(row.get("bus"))
            if bus in customer_buses:
                behind_meter += 1
            elif bus in kept_buses:
                problems.append(f"net.{table}[{index}]: generator at bus {row.get('bus')!r}, which has no "
                                "customer; only behind-the-meter generation at a customer's bus is supported")
    return problems, behind_meter


class _Switches:
    """What ``net.switch`` does to the network: closed bus-bus switches fuse their buses (``bus_of`` maps every
    bus to the one it is fused into), open line switches open their line, open bus-bus switches leave the buses
    apart, closed line and transformer switches change nothing; an open transformer switch is reported."""

    def __init__(self, net: pandapowerNet, problems: list[str]) -> None:
        self.open_lines: set[str] = set()
        self.fused = 0
        self.open_bus_bus = 0
        parent: dict[str, str] = {}

        def root(bus: str) -> str:
            while parent.get(bus, bus) != bus:
                bus = parent[bus]
            return bus

        switches = net.get("switch")
        rows = _rows(switches) if isinstance(switches, pd.DataFrame) else []
        for index, row in rows:
            closed = _flag(row.get("closed"), default=True)
            kind = str(row.get("et", "")).strip()
            where = f"net.switch[{index}]"
            if closed is None:
                problems.append(f"{where}: closed = {row.get('closed')!r}; expected True or False")
            elif kind == "b":
                if closed:
                    a, b = sorted((root(str(row.get("bus"))), root(str(row.get("element")))), key=_bus_order)
                    if a != b:
                        parent[b] = a
                    self.fused += 1
                else:
                    self.open_bus_bus += 1
            elif kind == "l":
                if not closed:
                    self.open_lines.add(str(row.get("element")))
            elif kind in ("t", "t3"):
                if not closed:
                    problems.append(f"{where}: open transformer switch (closed = False) at bus {row.get('bus')!r}; "
                                    "a feeder's transformer must be connected, close it or remove the switch")
            else:
                problems.append(f"{where}: et = {kind!r}; expected 'b', 'l' or 't'")
        self._parent = parent
        self.bus_of = root

    def bus(self, value: Any) -> str:
        return self.bus_of(str(value).strip())


def _bus_order(bus: str) -> tuple[int, str]:
    """Fused buses keep the lowest pandapower index as their id."""
    return (int(bus), bus) if bus.isdigit() else (1 << 62, bus)


def _lv_buses(lv_bus: str, lines: list[tuple[str, dict[str, Any]]], hv_bus: str) -> set[str]:
    """The buses reached from the transformer's LV bus through lines, without crossing its HV bus."""
    neighbours: dict[str, list[str]] = {}
    for _, row in lines:
        a, b = str(row["from_bus"]), str(row["to_bus"])
        neighbours.setdefault(a, []).append(b)
        neighbours.setdefault(b, []).append(a)
    seen, stack = {lv_bus}, [lv_bus]
    while stack:
        for nxt in neighbours.get(stack.pop(), []):
            if nxt not in seen and nxt != hv_bus:
                seen.add(nxt)
                stack.append(nxt)
    return seen


def _renamed(problem: str) -> str:
    """A validation problem with the twin's field names replaced by the pandapower columns they come from."""
    for table, columns in _COLUMN_OF.items():
        if problem.startswith(f"{table}["):
            for field, column in columns.items():
                problem = problem.replace(f": {field} ", f": {column} ").replace(f": {field}:", f": {column}:")
    return problem


def _pick_transformer(trafos: list[tuple[str, dict[str, Any]]], wanted: str | None,
                      problems: list[str]) -> tuple[str, dict[str, Any]] | None:
    listed = ", ".join(f"{i} ({row.get('name')!r})" if _is_set(row.get("name")) else i for i, row in trafos)
    if wanted is not None:
        for i, row in trafos:
            if wanted in (i, str(row.get("name", "")).strip()):
                return i, row
        problems.append(f"net.trafo: no transformer {wanted!r} (index or name); expected one of {listed}")
        return None
    if len(trafos) == 1:
        return trafos[0]
    if not trafos:
        problems.append("net.trafo: no transformer; a feeder has exactly one MV/LV transformer")
    else:
        problems.append(f"net.trafo: {len(trafos)} transformers {listed}; each LV network is a feeder of its own: "
                        "pick one with --feeder 'FILE;transformer=N'")
    return None


def load_feeder(path: Path, *, power_factor: float = DEFAULT_POWER_FACTOR, spec: FeederSpec | None = None) -> Feeder:
    """Build a Feeder from a pandapower JSON network (see the module docstring for the mapping rules).

    ``power_factor`` is given to every customer (used when meter data carry no reactive power); ``spec`` states
    the assumptions for data the file lacks and the transformer to take (``twin.loaders.assumptions``).
    Raises FeederError listing every problem: unreadable file, unsupported elements, invalid rows, broken
    cross-references, and declared feeder indices or distances that contradict the topology.
    """
    try:
        # imported here: pandapower takes about 1.5 s to import and loaders sharing this module do not need it
        import pandapower as pp

        net = pp.from_json(str(path))
    except (OSError, ValueError) as err:
        raise FeederError(str(path), [f"cannot read a pandapower network: {err}"]) from err
    return feeder_from_net(net, source=str(path), default_name=path.stem, power_factor=power_factor,
                           spec=spec or FeederSpec.plain(path))


def feeder_from_net(
    net: pandapowerNet, *, source: str, default_name: str, power_factor: float = DEFAULT_POWER_FACTOR,
    spec: FeederSpec | None = None,
) -> Feeder:
    """The Feeder of a pandapower net (``load_feeder`` without the file); ``source`` names it in messages."""
    spec = spec or FeederSpec.plain(Path(source))
    raw_name = net.name.strip() if isinstance(net.get("name"), str) and net.name.strip() else default_name
    problems: list[str] = []
    switches = _Switches(net, problems)
    trafos = [(i, row | {"hv_bus": switches.bus(row.get("hv_bus")), "lv_bus": switches.bus(row.get("lv_bus"))})
              for i, row in _rows(net.trafo)]
    picked = _pick_transformer(trafos, spec.transformer, problems)
    name = topic_segment(raw_name if picked is None or len(trafos) == 1 else
                         f"{raw_name}-{picked[1].get('name') if _is_set(picked[1].get('name')) else picked[0]}")
    line_rows = [(i, row | {"from_bus": switches.bus(row.get("from_bus")), "to_bus": switches.bus(row.get("to_bus"))})
                 for i, row in _rows(net.line)]
    all_bus_rows = [(i, row) for i, row in _rows(net.bus) if switches.bus(i) == i]
    if picked is not None and len(trafos) > 1:
        hv_bus, lv_bus = str(picked[1]["hv_bus"]), str(picked[1]["lv_bus"])
        closed_lines = [(i, row) for i, row in line_rows if i not in switches.open_lines]
        kept = _lv_buses(lv_bus, closed_lines, hv_bus) | {hv_bus}
        problems += [f"net.trafo[{i}]: its LV bus {row['lv_bus']} is reached from transformer {picked[0]}'s LV network "
                     "through closed lines; an LV network fed by several transformers is not supported, open a tie"
                     for i, row in trafos if i != picked[0] and row["lv_bus"] in kept]
    else:
        kept = {i for i, _ in all_bus_rows}
    bus_rows = [(i, row) for i, row in all_bus_rows if i in kept]
    buses = [(f"net.bus[{i}]", bus_fields(f"net.bus[{i}]", i, row, problems)) for i, row in bus_rows]
    vn_kv_of = {i: number(row.get("vn_kv")) for i, row in bus_rows}
    missing_zero: list[str] = []
    lines = []
    open_ties_dropped = 0
    for i, row in line_rows:
        inside = (row["from_bus"] in kept, row["to_bus"] in kept)
        if not any(inside):
            continue
        where = f"net.line[{i}]"
        if not all(inside):
            if i in switches.open_lines:
                open_ties_dropped += 1  # an open tie to another transformer's LV network
            else:
                problems.append(f"{where}: joins bus {row['from_bus']} to bus {row['to_bus']} across the "
                                "transformer's HV bus; a feeder starts at its MV/LV transformer, remove MV lines")
            continue
        fields = line_fields(where, i, row, problems, zero_sequence=spec.zero_sequence, missing_zero=missing_zero)
        if i in switches.open_lines:
            fields["switch"] = "normally-open"
        lines.append((where, fields))
    notes: list[str] = []
    if missing_zero:
        shown = ", ".join(missing_zero[:10]) + (" …" if len(missing_zero) > 10 else "")
        if spec.zero_sequence is None:
            problems.append(f"net.line: {len(missing_zero)} of {len(lines)} line(s) ({shown}) have no zero-sequence "
                            "data in r0_ohm_per_km, x0_ohm_per_km; add them, or assume ratios with --feeder "
                            "'FILE;zero-sequence=r0/r1=…,x0/x1=…'")
        else:
            notes.append(f"zero-sequence data of {len(missing_zero)} of {len(lines)} line(s) assumed: "
                         f"{spec.zero_sequence.text()}")
    transformer: tuple[str, dict[str, Any]] = ("net.trafo", {})
    if picked is not None:
        i, row = picked
        transformer = (f"net.trafo[{i}]", transformer_fields(f"net.trafo[{i}]", i, row, problems,
                                                             vector_group=spec.vector_group))
        if not _is_set(row.get("vector_group")) and spec.vector_group is not None:
            notes.append(f"vector group of transformer {i} assumed: {spec.vector_group}")
    grids = _rows(net.ext_grid)
    if len(grids) != 1:
        problems.append(f"net.ext_grid: {len(grids)} external grid(s); a feeder has exactly one, at the "
                        "transformer HV bus")
    src: tuple[str, dict[str, Any]] = ("net.ext_grid", {})
    if grids:
        i, row = grids[0]
        where = f"net.ext_grid[{i}]"
        row = row | {"bus": switches.bus(row.get("bus"))}
        assumed: list[str] = []
        src = (where, source_fields(where, row, vn_kv_of.get(str(row["bus"])), problems,
                                    short_circuit=spec.short_circuit, assumed=assumed))
        if assumed:
            notes.append(f"external grid short-circuit data assumed: {', '.join(assumed)}")
    customer_rows = []
    for i, row in _rows(net.asymmetric_load):
        where = f"net.asymmetric_load[{i}]"
        row = row | {"bus": switches.bus(row.get("bus"))}
        if row["bus"] not in kept:
            continue
        phases = _asymmetric_phases(where, row, problems)
        if phases is None:
            continue  # already reported; validating it again would repeat the same problem
        customer_rows.append((where, _customer_fields(where, "asymmetric_load", i, row, phases, power_factor,
                                                      problems)))
    for i, row in _rows(net.load):
        where = f"net.load[{i}]"
        row = row | {"bus": switches.bus(row.get("bus"))}
        if row["bus"] in kept:
            customer_rows.append((where, _customer_fields(where, "load", i, row, "ABC", power_factor, problems)))
    raw_ids = [str(fields["id"]) for _, fields in customer_rows]
    ids = unique_segments(raw_ids)
    customers = [(where, fields | {"id": new}) for (where, fields), new in zip(customer_rows, ids, strict=True)]
    unsupported, behind_meter = _unsupported(net, {fields["bus"] for _, fields in customers}, kept, switches)
    problems += unsupported
    if picked is None:  # the transformer's fields would only repeat that it is missing; its vector group not
        for i, row in trafos:
            _vector_group(f"net.trafo[{i}]", row, problems, assumed=spec.vector_group)
        raise FeederError(source, [_renamed(p) for p in problems])
    try:
        feeder = assemble_feeder(name=name, buses=buses, lines=lines, transformer=transformer, source=src,
                                 customers=customers)
    except FeederError as err:
        raise FeederError(source, [_renamed(p) for p in problems + err.problems]) from None
    problems += declared_topology_problems(feeder, where=source)
    if problems:
        raise FeederError(source, [_renamed(p) for p in problems])
    if name != raw_name:
        notes.append(f"network name {raw_name!r} is used as {name!r} (a topic segment)")
    changed = [(a, b) for a, b in zip(raw_ids, ids, strict=True) if a != b]
    if changed:
        notes.append(f"{len(changed)} customer name(s) changed into topic segments, e.g. {changed[0][0]!r} → "
                     f"{changed[0][1]!r}")
    if open_ties_dropped:
        notes.append(f"{open_ties_dropped} open tie line(s) to other LV networks left out")
    if switches.fused or switches.open_bus_bus:
        notes.append(f"{switches.fused} closed bus-bus switch(es) fused, {switches.open_bus_bus} open one(s) left "
                     "open")
    if behind_meter:
        notes.append(f"{behind_meter} generator(s) at customer buses taken as behind-the-meter")
    for note in notes:
        log.warning("%s: %s", source, note)
    return feeder
