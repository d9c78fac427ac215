"""A Feeder, and its meter data, from an OpenDSS circuit read by the OpenDSS engine itself (OpenDSSDirect.py).

The circuit is compiled by DSS C-API (``redirect``), and the model is read back through its API: no part of the
DSS language is parsed here. OpenDSS lower-cases every name, so element and bus ids are lower case
(``Load.LOAD1`` → customer ``load1``), then made topic segments.

Mapping rules (OpenDSS → twin):

- ``Vsource``: exactly one, at the transformer's HV bus; ``basekv``, ``pu`` and its sequence impedances as
  OpenDSS resolves them (from ``MVAsc3``/``Isc3``… or ``R1``/``X1``/``R0``/``X0``) give ``s_sc_mva``, the R/X
  ratios and X0/X1; the source angle is taken as 0;
- ``Transformer``: exactly one, 3 phases, 2 windings, ``delta``–``wye`` (Dyn1, or Dyn11 with ``LeadLag=Lead``/
  ``Euro``) or ``wye``–``wye`` (YNyn0); vkr is the sum of the winding ``%R`` on the winding-1 base, vk from it and
  ``XHL``; taps must be 1.0. No-load losses and magnetising current are not part of the twin's transformer and
  are ignored (noted);
- ``Line``: three-phase lines; the impedance is taken from the 3×3 phase matrices OpenDSS holds (whether the
  line or its line code was given as sequence or matrix data), as z1 = zs − zm and z0 = zs + 2 zm with zs the
  mean diagonal and zm the mean off-diagonal element: exact for sequence data, the transposed-line average for
  an untransposed matrix (noted with the largest relative asymmetry). Lengths and per-length values are
  converted from the line's ``units`` to km (lines without units are taken as km); ``normamps`` is the
  ampacity. A switch line (``switch=yes``) is a switchable line, open if OpenDSS has it open;
- ``Load``: one customer each, wye (``conn=wye``), constant power (``model=1``), phases from its bus nodes
  (``34.1`` → A, ``34.2`` → B, no nodes → A, B, C in order); its power factor is kW/kVA of its kW and kvar;
- load shapes become the meter data when every load has one (``yearly``, else ``daily``, else ``duty``): all
  shapes at one fixed interval (whole seconds); tick k takes shape point k (OpenDSS's point k closes interval k,
  as the bundled IEEE day); p = mult (``useactual=yes``, kW) or mult × kW, q from ``qmult`` likewise or from the
  load's kvar/kW. Shapes of a day or less start at 2024-01-15 00:00 UTC (the bundled IEEE day's date), longer
  ones at 2024-01-01 00:00 UTC;
- ``EnergyMeter`` and ``Monitor`` measure only and are ignored. Every other element (capacitors, regulators,
  PV systems, storage, generators, …) and every element breaking a rule above is reported, all at once, by its
  OpenDSS name.

OpenDSS keeps a load at constant power only while its voltage, in p.u. of the load's own ``kv``, stays within
[``vminpu``, ``vmaxpu``] (0.95–1.05 by default) and makes it a constant impedance outside; the twin's loads are
constant power at every voltage. The IEEE European LV loads (kv = 0.23 on a 0.240 kV phase voltage, source at
1.05 p.u.) sit above 1.05 most of the day: OpenDSS with its defaults then differs from the twin by up to 1e-3 p.u.;
with ``vminpu=0.5 vmaxpu=1.5`` the two agree to 4e-8 p.u. (tests/twin/loaders/test_opendss.py).
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from streams.meters.table import DataQuality, MeterTable
from twin.errors import DataError, FeederError
from twin.loaders.names import topic_segment, unique_segments
from twin.network import Feeder, assemble_feeder

if TYPE_CHECKING:
    from types import ModuleType

__all__ = ["DEFAULT_START_UTC", "Circuit", "CircuitCache", "read_circuit", "referenced_files"]

log = logging.getLogger(__name__)

DEFAULT_START_UTC = pd.Timestamp("2024-01-15", tz="UTC")
"""Where shapes of a day or less start (the bundled IEEE day's date); longer shapes start at YEAR_START_UTC."""
YEAR_START_UTC = pd.Timestamp("2024-01-01", tz="UTC")
# OpenDSS length unit codes (LineUnits) → km; 0 ("none") is taken as km.
KM_PER_UNIT = {0: 1.0, 1: 1.609344, 2: 0.3048, 3: 1.0, 4: 1e-3, 5: 0.3048e-3, 6: 0.0254e-3, 7: 1e-5, 8: 1e-6}
MEASURING_CLASSES = ("energymeter", "monitor")
# An untransposed line matrix is averaged; asymmetries above this relative size are noted.
MATRIX_ASYMMETRY_NOTE = 1e-9
PHASE_OF_NODE = {1: "A", 2: "B", 3: "C"}
SUGGESTIONS = {
    "pvsystem": "remove it and give its customer's net meter data with --data (PV behind the meter is inside the "
                "meter readings), or simulate PV with a battery as a PESS device (--pess)",
    "storage": "remove it; a battery at a customer is a PESS device (--pess, --devices)",
    "capacitor": "remove it (a shunt capacitor is not part of the twin's network); if it corrects a load's power "
                 "factor, give that load the resulting kvar instead",
    "generator": "remove it and give its customer's net meter data with --data (behind-the-meter generation)",
    "regcontrol": "remove it and set the regulated transformer's tap in the circuit (taps must be 1.0)",
}
"""What to do about an element class the twin does not model, by OpenDSS class name."""


@dataclass(frozen=True)
class Circuit:
    """What an OpenDSS circuit gives the twin: the feeder, its load-shape meter data (None when no load has a
    shape), why there are none when some loads lack one, and the assumptions noted while mapping."""

    feeder: Feeder
    meter: MeterTable | None
    meter_problem: str
    notes: tuple[str, ...]


class CircuitCache:
    """Reads a circuit once, for a FeederEntry's ``load_feeder`` and ``load_data``."""

    def __init__(self, path: Path, *, fold_service_lines: bool = False) -> None:
        self.path = path
        self.fold_service_lines = fold_service_lines
        self._circuit: Circuit | None = None

    def circuit(self) -> Circuit:
        if self._circuit is None:
            self._circuit = read_circuit(self.path, fold_service_lines=self.fold_service_lines)
        return self._circuit

    def feeder(self) -> Feeder:
        return self.circuit().feeder

    def meter_data(self, feeder: Feeder) -> MeterTable:
        """The circuit's load shapes as meter data of ``feeder`` (its customers, in its order)."""
        circuit = self.circuit()
        if circuit.meter is None:
            raise DataError(f"{self.path}: {circuit.meter_problem}; give meter data with --data")
        ids = [c.id for c in feeder.customers]
        index = {c: i for i, c in enumerate(circuit.meter.customer_ids)}
        unknown = [c for c in ids if c not in index]
        if unknown:
            raise DataError(f"{self.path}: customer(s) {', '.join(unknown)} have no load shape in the circuit")
        order = [index[c] for c in ids]
        m = circuit.meter
        return MeterTable(time_utc=m.time_utc, step_s=m.step_s, customer_ids=tuple(ids), p_kw=m.p_kw[:, order],
                          q_kvar=m.q_kvar[:, order], source=m.source, quality=m.quality)


# DSS script commands that read another file, and the properties naming a file (load shapes, growth shapes, ...).
_FILE_COMMANDS = re.compile(r"^\s*(redirect|compile|buscoords|latlongcoords)\s+(\"[^\"]+\"|'[^']+'|\S+)",
                            re.IGNORECASE | re.MULTILINE)
_FILE_PROPERTIES = re.compile(r"\b(file|sngfile|dblfile|csvfile|pqcsvfile|filename)\s*=\s*(\"[^\"]+\"|'[^']+'|"
                              r"\[[^\]]+\]|[^\s,)]+)", re.IGNORECASE)


def referenced_files(path: Path) -> list[Path]:
    """Every file an OpenDSS script reads besides itself, absolute: the scripts it redirects to or compiles
    (followed), bus coordinates, and the files of load shapes and other ``file=`` properties, relative to the
    folder of the script naming them (as OpenDSS reads them). A referenced file that does not exist is listed
    too: hashing it then says it is missing. Comments (``!``, ``//``) are skipped."""
    found: list[Path] = []
    todo, seen = [path.resolve()], {path.resolve()}
    while todo:
        script = todo.pop()
        try:
            text = script.read_text(errors="replace")
        except OSError:
            continue
        text = re.sub(r"(!|//).*", "", text)
        names = [m.group(2) for m in _FILE_COMMANDS.finditer(text)]
        names += [m.group(2) for m in _FILE_PROPERTIES.finditer(text)]
        for name in names:
            name = name.strip("\"'[]() ")
            if not name:
                continue
            target = Path(name) if Path(name).is_absolute() else (script.parent / name)
            target = target.resolve()
            if target in seen:
                continue
            seen.add(target)
            found.append(target)
            if target.suffix.lower() == ".dss":
                todo.append(target)
    return found


def _engine() -> ModuleType:
    # imported here: the engine loads a native library that replays of other feeders do not need
    import opendssdirect

    return opendssdirect


def _query(dss: ModuleType, element: str, prop: str) -> str:
    dss.Text.Command(f"? {element}.{prop}")
    return str(dss.Text.Result()).strip()


def _bus_and_nodes(spec: str) -> tuple[str, list[int]]:
    bus, *nodes = spec.split(".")
    return bus, [int(n) for n in nodes if n.strip().lstrip("-").isdigit()]


def _matrix(values: list[float], n: int) -> np.ndarray:
    return np.asarray(values, dtype=float).reshape(n, n)


def _sequence(m: np.ndarray) -> tuple[float, float, float]:
    """(positive, zero, relative asymmetry) of a 3×3 phase matrix, by the transposed-line average."""
    diag = np.diag(m)
    off = m[~np.eye(3, dtype=bool)]
    zs, zm = float(diag.mean()), float(off.mean())
    scale = max(abs(zs), 1e-300)
    asym = max(float(np.abs(diag - zs).max()), float(np.abs(off - zm).max())) / scale
    return zs - zm, zs + 2.0 * zm, asym


def read_circuit(path: Path, *, start_utc: pd.Timestamp | None = None, fold_service_lines: bool = False) -> Circuit:
    """Compile ``path`` with OpenDSS and map it (see the module docstring). The load shapes start at
    ``start_utc``; by default at DEFAULT_START_UTC when they cover a day or less, else at YEAR_START_UTC.

    Raises FeederError listing every problem: OpenDSS's own compile error, unsupported elements by name,
    invalid values and broken cross-references.
    """
    dss = _engine()
    source = str(path)
    try:
        dss.Text.Command("clear")
        dss.Text.Command(f'redirect "{path.resolve()}"')
    except dss.DSSException as err:
        raise FeederError(source, [f"OpenDSS cannot compile the circuit: {err}"]) from None
    try:
        # builds the bus list and every element's phase matrices (a line given by sequence values keeps
        # OpenDSS's default matrices until then)
        dss.Solution.BuildYMatrix(0, 0)
        named = str(dss.Circuit.Name())
    except dss.DSSException:  # "There is no active circuit"
        named = ""
    if not named:
        raise FeederError(source, ["no circuit defined (expected 'New Circuit.<name> …')"])
    problems: list[str] = []
    notes: list[str] = []
    classes: dict[str, list[str]] = {}
    spelled: dict[str, str] = {}
    for full in dss.Circuit.AllElementNames():
        kind, _, name = str(full).partition(".")
        classes.setdefault(kind.lower(), []).append(name)
        spelled[kind.lower()] = kind
    for kind, names in sorted(classes.items()):
        if kind not in ("vsource", "line", "transformer", "load", *MEASURING_CLASSES):
            problems += [f"{spelled[kind]}.{n}: {kind} elements are not supported in an LV feeder; "
                         f"{SUGGESTIONS.get(kind, 'remove it')}" for n in names]

    transformer, hv_bus, _, vn_hv_kv, vn_lv_kv = _transformer(dss, classes.get("transformer", []), problems,
                                                                   notes)
    src = _source(dss, classes.get("vsource", []), problems)
    folds: dict[str, tuple[str, dict[int, int]]] = {}
    lines = _lines(dss, classes.get("line", []), problems, notes, folds=folds if fold_service_lines else None)
    customers, shapes = _loads(dss, classes.get("load", []), problems, folds=folds)
    if folds:
        notes.append(f"{len(folds)} single-phase service line(s) folded into their customers (--assume "
                     "service-lines=fold): each load sits at the line's first bus on its phase; the cables' "
                     "impedance is not modelled")

    buses = []
    for bus in dss.Circuit.AllBusNames():
        if bus in folds:
            continue
        dss.Circuit.SetActiveBus(bus)
        fields: dict[str, Any] = {"id": bus, "vn_kv": vn_hv_kv if bus == hv_bus else vn_lv_kv}
        if dss.Bus.Coorddefined():
            fields["x"], fields["y"] = float(dss.Bus.X()), float(dss.Bus.Y())
        buses.append((f"bus {bus}", fields))
    if src is not None:
        src[1]["vn_kv"] = src[1].pop("basekv")
    name = topic_segment(str(dss.Circuit.Name()))
    if problems:
        raise FeederError(source, problems)
    try:
        feeder = assemble_feeder(name=name, buses=buses, lines=lines,
                                 transformer=transformer or ("Transformer", {}),
                                 source=src or ("Vsource", {}), customers=customers)
    except FeederError as err:
        raise FeederError(source, err.problems) from None
    meter, meter_problem = _meter_data(dss, feeder, shapes, start_utc=start_utc, source=source)
    for note in notes:
        log.warning("%s: %s", source, note)
    return Circuit(feeder=feeder, meter=meter, meter_problem=meter_problem, notes=tuple(notes))


def _transformer(
    dss: ModuleType, names: list[str], problems: list[str], notes: list[str],
) -> tuple[tuple[str, dict[str, Any]] | None, str, str, float, float]:
    if len(names) != 1:
        problems.append(f"{len(names)} transformer(s) {', '.join(names)}; an LV feeder has exactly one MV/LV "
                        "transformer")
        return None, "", "", 1.0, 1.0
    (name,) = names
    where = f"Transformer.{name}"
    dss.Transformers.Name(name)
    dss.Circuit.SetActiveElement(where)
    buses = [_bus_and_nodes(b)[0] for b in dss.CktElement.BusNames()]
    if dss.Transformers.NumWindings() != 2 or dss.CktElement.NumPhases() != 3:
        problems.append(f"{where}: {dss.CktElement.NumPhases()} phase(s), {dss.Transformers.NumWindings()} "
                        "winding(s); expected a three-phase two-winding transformer")
        return None, "", "", 1.0, 1.0
    windings = []
    for w in (1, 2):
        dss.Transformers.Wdg(w)
        windings.append((float(dss.Transformers.kV()), float(dss.Transformers.kVA()), float(dss.Transformers.R()),
                         bool(dss.Transformers.IsDelta()), float(dss.Transformers.Tap())))
    (kv1, kva1, r1, delta1, tap1), (kv2, kva2, r2, delta2, tap2) = windings
    for w, tap in ((1, tap1), (2, tap2)):
        if tap != 1.0:
            problems.append(f"{where}: winding {w} tap = {tap:g}; off-nominal taps are not supported, expected 1")
    lead = _query(dss, where, "LeadLag").lower() in ("lead", "euro")
    if delta1 and not delta2:
        group, shift = "Dyn", 330.0 if lead else 30.0
    elif not delta1 and not delta2:
        group, shift = "YNyn", 0.0
    else:
        problems.append(f"{where}: conns = [{'delta' if delta1 else 'wye'} {'delta' if delta2 else 'wye'}]; "
                        "expected [delta wye] (Dyn) or [wye wye] (YNyn)")
        return None, buses[0], buses[1], kv1, kv2
    noload = float(_query(dss, where, "%noloadloss") or 0.0)
    imag = float(_query(dss, where, "%imag") or 0.0)
    if noload or imag:
        notes.append(f"{where}: %noloadloss = {noload:g}, %imag = {imag:g} ignored (the twin's transformer has no "
                     "magnetising branch)")
    vkr = r1 + r2 * kva1 / kva2
    return (where, {
        "id": topic_segment(name), "hv_bus": buses[0], "lv_bus": buses[1], "sn_kva": kva1, "vn_hv_kv": kv1,
        "vn_lv_kv": kv2, "vk_percent": math.hypot(vkr, float(dss.Transformers.Xhl())), "vkr_percent": vkr,
        "vector_group": group, "shift_deg": shift,
    }), buses[0], buses[1], kv1, kv2


def _source(dss: ModuleType, names: list[str], problems: list[str]) -> tuple[str, dict[str, Any]] | None:
    if len(names) != 1:
        problems.append(f"{len(names)} Vsource(s) {', '.join(names)}; expected exactly one, at the transformer HV "
                        "bus")
        return None
    (name,) = names
    where = f"Vsource.{name}"
    dss.Vsources.Name(name)
    dss.Circuit.SetActiveElement(where)
    if dss.CktElement.NumPhases() != 3:
        problems.append(f"{where}: phases = {dss.CktElement.NumPhases()}; expected 3")
    z = {k: float(_query(dss, where, k)) for k in ("r1", "x1", "r0", "x0")}
    kv = float(dss.Vsources.BasekV())
    if z["x1"] <= 0 or z["x0"] <= 0:
        problems.append(f"{where}: x1 = {z['x1']:g}, x0 = {z['x0']:g} ohm; expected positive reactances")
        return None
    return (where, {
        "bus": _bus_and_nodes(dss.CktElement.BusNames()[0])[0], "basekv": kv, "vm_pu": float(dss.Vsources.PU()),
        "s_sc_mva": kv**2 / math.hypot(z["r1"], z["x1"]), "rx_ratio": z["r1"] / z["x1"],
        "x0x_ratio": z["x0"] / z["x1"], "r0x0_ratio": z["r0"] / z["x0"],
    })


def _lines(
    dss: ModuleType, names: list[str], problems: list[str], notes: list[str],
    folds: dict[str, tuple[str, dict[int, int]]] | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """The three-phase lines; with ``folds``, single-phase lines are not lines but entries ``folds[bus2] =
    (bus1, {node at bus2: node at bus1})``, chains followed to the three-phase bus."""
    out = []
    worst_asym, asym_line = 0.0, ""
    no_units = []
    for name in names:
        where = f"Line.{name}"
        dss.Lines.Name(name)
        dss.Circuit.SetActiveElement(where)
        phases = int(dss.Lines.Phases())
        if phases != 3 and folds is not None:
            (bus1, nodes1), (bus2, nodes2) = (_bus_and_nodes(b) for b in dss.CktElement.BusNames())
            nodes1, nodes2 = nodes1[:phases] or [1, 2, 3][:phases], nodes2[:phases] or [1, 2, 3][:phases]
            if bus2 in folds:
                problems.append(f"{where}: bus {bus2} is fed by two single-phase lines; cannot fold")
            folds[bus2] = (bus1, dict(zip(nodes2, nodes1, strict=False)))
            continue
        if phases != 3:
            problems.append(f"{where}: phases = {phases}; only three-phase lines are supported; fold single-phase "
                            "service lines into their customers with --assume service-lines=fold (each load then "
                            "sits at the line's first bus on its phase; the cable's impedance is not modelled)")
            continue
        units = int(dss.Lines.Units())
        km = KM_PER_UNIT.get(units)
        if km is None:
            problems.append(f"{where}: units code {units} is not a length unit OpenDSS defines")
            continue
        if units == 0:
            no_units.append(name)
        r1, r0, ar = _sequence(_matrix(dss.Lines.RMatrix(), 3))
        x1, x0, ax = _sequence(_matrix(dss.Lines.XMatrix(), 3))
        c1, c0, _ = _sequence(_matrix(dss.Lines.CMatrix(), 3))
        if max(ar, ax) > worst_asym:
            worst_asym, asym_line = max(ar, ax), name
        bus1, bus2 = (_bus_and_nodes(b)[0] for b in dss.CktElement.BusNames())
        fields: dict[str, Any] = {
            "id": topic_segment(name), "from_bus": bus1, "to_bus": bus2,
            "length_km": float(dss.Lines.Length()) * km,
            "r1_ohm_per_km": r1 / km, "x1_ohm_per_km": x1 / km, "r0_ohm_per_km": r0 / km, "x0_ohm_per_km": x0 / km,
            "c1_nf_per_km": c1 / km, "c0_nf_per_km": c0 / km, "max_i_ka": float(dss.Lines.NormAmps()) / 1e3,
        }
        if dss.Lines.IsSwitch():
            fields["switch"] = "normally-open" if dss.CktElement.IsOpen(1, 0) else "normally-closed"
        elif dss.CktElement.IsOpen(1, 0) or dss.CktElement.IsOpen(2, 0):
            problems.append(f"{where}: open, but not a switch (switch=yes); the twin opens switches only")
        out.append((where, fields))
    if folds:
        ends = {f["from_bus"] for _, f in out} | {f["to_bus"] for _, f in out}
        for bus in [b for b in folds if b in ends]:
            problems.append(f"bus {bus}: fed by a single-phase line and joined to three-phase lines; only a "
                            "service line to customers can be folded")
            del folds[bus]
    if worst_asym > MATRIX_ASYMMETRY_NOTE:
        notes.append(f"untransposed line matrices averaged to sequence impedances (largest relative asymmetry "
                     f"{worst_asym:.2g}, Line.{asym_line})")
    if no_units:
        notes.append(f"{len(no_units)} line(s) without units (e.g. Line.{no_units[0]}); lengths taken as km")
    return out


def _folded(bus: str, nodes: list[int], folds: dict[str, tuple[str, dict[int, int]]]) -> tuple[str, list[int]]:
    """The bus and nodes a load at ``bus`` sits on once the service lines to it are folded."""
    seen = set()
    while bus in folds and bus not in seen:
        seen.add(bus)
        bus, mapping = folds[bus]
        nodes = [mapping.get(n, n) for n in nodes]
    return bus, nodes


def _loads(
    dss: ModuleType, names: list[str], problems: list[str],
    folds: dict[str, tuple[str, dict[int, int]]] | None = None,
) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, tuple[str, float, float]]]:
    """Customer rows, and per customer id its (load shape name, kW, kvar)."""
    rows = []
    shapes: dict[str, tuple[str, float, float]] = {}
    ids = unique_segments(list(names))
    for name, customer_id in zip(names, ids, strict=True):
        where = f"Load.{name}"
        dss.Loads.Name(name)
        dss.Circuit.SetActiveElement(where)
        bus, nodes = _bus_and_nodes(dss.CktElement.BusNames()[0])
        n = int(dss.Loads.Phases())
        if folds and bus in folds:
            bus, nodes = _folded(bus, nodes or [1, 2, 3][:n], folds)
        if dss.Loads.IsDelta():
            problems.append(f"{where}: conn = delta; only wye (phase-to-neutral) loads are supported")
            continue
        if int(dss.Loads.Model()) != 1:
            problems.append(f"{where}: model = {dss.Loads.Model()}; only constant-power loads (model=1) are supported")
            continue
        phase_nodes = nodes[:n] if nodes else [1, 2, 3][:n]
        rest = nodes[n:]
        if len(phase_nodes) != n or any(p not in PHASE_OF_NODE for p in phase_nodes) or any(r != 0 for r in rest):
            problems.append(f"{where}: bus1 = {dss.CktElement.BusNames()[0]!r} with phases = {n}; expected {n} "
                            "distinct phase node(s) out of 1, 2, 3 and a neutral at node 0 (earth), if any")
            continue
        kw, kvar = float(dss.Loads.kW()), float(dss.Loads.kvar())
        kva = math.hypot(kw, kvar)
        rows.append((where, {"id": customer_id, "bus": bus,
                             "phases": "".join(PHASE_OF_NODE[p] for p in phase_nodes),
                             "power_factor": abs(kw) / kva if kva > 0 else 1.0}))
        shape = next((s for s in (dss.Loads.Yearly(), dss.Loads.Daily(), dss.Loads.Duty()) if s), "")
        shapes[customer_id] = (str(shape), kw, kvar)
    return rows, shapes


def _meter_data(
    dss: ModuleType, feeder: Feeder, shapes: dict[str, tuple[str, float, float]], *,
    start_utc: pd.Timestamp | None, source: str,
) -> tuple[MeterTable | None, str]:
    without = [c.id for c in feeder.customers if not shapes.get(c.id, ("", 0.0, 0.0))[0]]
    if len(without) == len(feeder.customers):
        return None, "no load has a load shape (yearly, daily or duty)"
    if without:
        return None, f"{len(without)} load(s) have no load shape: {', '.join(without[:10])}"
    steps: dict[tuple[int, float], list[str]] = {}
    series: list[tuple[np.ndarray, np.ndarray]] = []
    for c in feeder.customers:
        shape, kw, kvar = shapes[c.id]
        dss.LoadShape.Name(shape)
        step_s = float(dss.LoadShape.SInterval())
        npts = int(dss.LoadShape.Npts())
        steps.setdefault((npts, step_s), []).append(shape)
        mult = np.asarray(dss.LoadShape.PMult(), dtype=float)[:npts]
        qmult = np.asarray(dss.LoadShape.QMult(), dtype=float)
        actual = bool(dss.LoadShape.UseActual())
        p = mult if actual else mult * kw
        if len(qmult) >= npts and npts > 1:
            q = qmult[:npts] if actual else qmult[:npts] * kvar
        else:
            q = p * (kvar / kw if kw else 0.0)
        series.append((p, q))
    if len(steps) != 1:
        listed = "; ".join(f"{n} points of {s:g} s: {', '.join(sorted(set(v))[:5])}" for (n, s), v in steps.items())
        return None, f"load shapes differ in length or interval ({listed}); expected one"
    ((npts, step_s),) = steps
    if step_s <= 0 or not float(step_s).is_integer():
        return None, f"load shape interval {step_s:g} s; expected a fixed whole number of seconds"
    p_kw = np.zeros((npts, len(feeder.customers), 3))
    q_kvar = np.zeros_like(p_kw)
    for i, (c, (p, q)) in enumerate(zip(feeder.customers, series, strict=True)):
        p_kw[:, i, : c.n_phases] = (p / c.n_phases)[:, None]
        q_kvar[:, i, : c.n_phases] = (q / c.n_phases)[:, None]
    if not (np.isfinite(p_kw).all() and np.isfinite(q_kvar).all()):
        raise DataError(f"{source}: load shapes hold non-finite values")
    if start_utc is None:
        start_utc = DEFAULT_START_UTC if npts * step_s <= 86_400 else YEAR_START_UTC
    time_utc = pd.date_range(start_utc.tz_convert("UTC"), periods=npts, freq=pd.Timedelta(seconds=step_s))
    return MeterTable(time_utc=time_utc, step_s=int(step_s), customer_ids=tuple(c.id for c in feeder.customers),
                      p_kw=p_kw, q_kvar=q_kvar, source=f"{source} load shapes",
                      quality=DataQuality(rows_read=npts * len(feeder.customers))), ""
