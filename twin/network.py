"""Typed description of an LV feeder: buses, lines, the MV/LV transformer, the source and the customers.

A ``Feeder`` is everything below one transformer. Its outgoing LV cables are numbered 0, 1, ... in the
order of their first line, and every customer says which one it hangs on (``Customer.feeder``), which is what
per-feeder unbalance metrics group by.

Sign convention (stated once, used everywhere): customer power is load-positive, p_kw > 0 draws from the grid,
p_kw < 0 (PV surplus) injects into it.

Switchable lines: a line with a switch (``Line.switch``) may be opened or closed during a replay (a topology
schedule, ``twin.line_switching``); normally open lines (tie switches) are open unless the schedule closes them. The
lines in their normal state must form a radial network, and so must every topology a schedule applies.

Phase connection of a customer is an ordered string such as ``A`` or ``CAB``: terminal j of the customer (the
j-th column of its meter data) is wired to network phase ``connection[j]``.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from streams.messages import DeviceKind
from twin.errors import FeederError
from twin.phase import Phase, connection_text, parse_connection
from twin.topology import RadialTree, radial_tree

FROZEN = ConfigDict(frozen=True, extra="forbid")


class VectorGroup(StrEnum):
    """Transformer winding connections supported by both power-flow engines."""

    DYN = "Dyn"
    YNYN = "YNyn"
    YYN = "Yyn"


class LineSwitch(StrEnum):
    """Whether a line can be switched, and its normal state."""

    NONE = "none"
    NORMALLY_CLOSED = "normally-closed"
    NORMALLY_OPEN = "normally-open"


class Bus(BaseModel):
    model_config = FROZEN
    id: str = Field(min_length=1)
    vn_kv: float = Field(gt=0, description="nominal line-to-line voltage, kV")
    x: float | None = None
    y: float | None = None


class Line(BaseModel):
    """A three-phase-plus-neutral cable section, described by its sequence impedances."""

    model_config = FROZEN
    id: str = Field(min_length=1)
    from_bus: str
    to_bus: str
    length_km: float = Field(gt=0)
    r1_ohm_per_km: float = Field(ge=0)
    x1_ohm_per_km: float = Field(ge=0)
    r0_ohm_per_km: float = Field(ge=0)
    x0_ohm_per_km: float = Field(ge=0)
    c1_nf_per_km: float = Field(default=0.0, ge=0)
    c0_nf_per_km: float = Field(default=0.0, ge=0)
    max_i_ka: float = Field(gt=0, description="thermal rating (ampacity) per phase, kA")
    switch: LineSwitch = Field(default=LineSwitch.NONE, description="switchable, and its normal state")

    @property
    def normally_closed(self) -> bool:
        return self.switch is not LineSwitch.NORMALLY_OPEN


class Transformer(BaseModel):
    model_config = FROZEN
    id: str = Field(min_length=1)
    hv_bus: str
    lv_bus: str
    sn_kva: float = Field(gt=0)
    vn_hv_kv: float = Field(gt=0)
    vn_lv_kv: float = Field(gt=0)
    vk_percent: float = Field(gt=0)
    vkr_percent: float = Field(ge=0)
    vector_group: VectorGroup = VectorGroup.DYN
    shift_deg: float = Field(default=30.0, description="LV lags HV by this angle, clock number × 30° (Dyn1: 30)")

    @model_validator(mode="after")
    def _vkr_below_vk(self) -> Self:
        if self.vkr_percent >= self.vk_percent:
            raise ValueError(f"vkr_percent {self.vkr_percent} must be below vk_percent {self.vk_percent}")
        return self


class Source(BaseModel):
    """The MV grid behind the transformer: a Thevenin source."""

    model_config = FROZEN
    bus: str
    vn_kv: float = Field(gt=0)
    vm_pu: float = Field(default=1.0, gt=0.5, lt=1.5)
    s_sc_mva: float = Field(gt=0, description="three-phase short-circuit power")
    rx_ratio: float = Field(default=0.1, ge=0)
    x0x_ratio: float = Field(default=1.0, gt=0)
    r0x0_ratio: float = Field(default=0.1, ge=0)


class Customer(BaseModel):
    model_config = FROZEN
    id: str = Field(min_length=1)
    bus: str
    phases: tuple[Phase, ...] = Field(min_length=1, max_length=3, description="ordered connection, e.g. CAB")
    feeder: int = Field(default=-1, ge=-1, description="LV feeder index; -1 = derive from the topology")
    distance_km: float = Field(default=-1.0, description="path length from the transformer; <0 = derive")
    power_factor: float = Field(default=0.95, gt=0, le=1, description="used when data carry no reactive power")
    device: DeviceKind | None = None

    @field_validator("phases", mode="before")
    @classmethod
    def _parse_phases(cls, value: Any) -> Any:
        return parse_connection(value) if isinstance(value, str) else value

    @field_validator("phases")
    @classmethod
    def _distinct_phases(cls, value: tuple[Phase, ...]) -> tuple[Phase, ...]:
        if len(set(value)) != len(value):
            raise ValueError(f"phase connection {connection_text(value)!r} repeats a phase")
        return value

    @property
    def n_phases(self) -> int:
        return len(self.phases)

    @property
    def connection(self) -> str:
        return connection_text(self.phases)


class Feeder(BaseModel):
    """A whole LV network below one transformer. Constructing one checks every cross-reference at once.

    Raises FeederError listing every problem (duplicate ids, unknown buses, loops, islands).
    """

    model_config = FROZEN
    name: str
    buses: tuple[Bus, ...]
    lines: tuple[Line, ...]
    transformer: Transformer
    source: Source
    customers: tuple[Customer, ...]

    @model_validator(mode="after")
    def _cross_references(self) -> Self:
        problems = cross_reference_problems(self)
        if problems:
            raise FeederError(self.name, problems)
        return self

    @property
    def lv_bus(self) -> str:
        return self.transformer.lv_bus

    def tree(self) -> RadialTree:
        """The radial tree of the lines in their normal state."""
        return radial_tree(root=self.lv_bus, edges=_edges(ln for ln in self.lines if ln.normally_closed))

    def normal_open_lines(self) -> frozenset[str]:
        return frozenset(ln.id for ln in self.lines if not ln.normally_closed)

    def topology_problems(self, open_lines: frozenset[str]) -> list[str]:
        """Why the network with exactly ``open_lines`` open is not allowed (empty when it is): unknown lines,
        lines without a switch whose state would change, loops, and buses the transformer does not supply."""
        known = {ln.id: ln for ln in self.lines}
        problems = [f"line {i!r} is not a line of feeder {self.name!r}" for i in sorted(open_lines - set(known))]
        problems += [f"line {ln.id!r} has no switch; it cannot be {'opened' if ln.normally_closed else 'closed'}"
                     for ln in self.lines
                     if ln.switch is LineSwitch.NONE and (ln.id in open_lines) == ln.normally_closed]
        tree = radial_tree(root=self.lv_bus, edges=_edges(ln for ln in self.lines if ln.id not in open_lines))
        return problems + tree.problems(expected=set(self.bus_ids()) - {self.transformer.hv_bus})

    def bus_ids(self) -> list[str]:
        return [b.id for b in self.buses]

    def feeder_ids(self) -> list[int]:
        return sorted({c.feeder for c in self.customers})

    def customer(self, customer_id: str) -> Customer:
        for c in self.customers:
            if c.id == customer_id:
                return c
        raise KeyError(f"feeder {self.name!r} has no customer {customer_id!r}")


def _edges(lines: Iterable[Line]) -> list[tuple[str, str, float]]:
    return [(ln.from_bus, ln.to_bus, ln.length_km) for ln in lines]


def _duplicates(ids: list[str]) -> list[str]:
    seen: set[str] = set()
    dup: list[str] = []
    for i in ids:
        if i in seen and i not in dup:
            dup.append(i)
        seen.add(i)
    return dup


def cross_reference_problems(feeder: Feeder) -> list[str]:
    """Every cross-reference problem of a feeder whose elements are individually valid."""
    return _reference_problems(
        buses=list(feeder.buses),
        lines=list(feeder.lines),
        transformer=feeder.transformer,
        source=feeder.source,
        customers=list(feeder.customers),
        unchecked_bus_ids=set(),
    )


def _reference_problems(
    *,
    buses: list[Bus],
    lines: list[Line],
    transformer: Transformer | None,
    source: Source | None,
    customers: list[Customer],
    unchecked_bus_ids: set[str],
) -> list[str]:
    """Cross-reference problems; ``unchecked_bus_ids`` are ids of bus rows that failed on their own."""
    problems: list[str] = []
    bus_ids = {b.id for b in buses} | unchecked_bus_ids
    for kind, ids in (
        ("bus", [b.id for b in buses]),
        ("line", [ln.id for ln in lines]),
        ("customer", [c.id for c in customers]),
    ):
        problems += [f"duplicate {kind} id {i!r}" for i in _duplicates(ids)]
    for ln in lines:
        for end in ("from_bus", "to_bus"):
            if getattr(ln, end) not in bus_ids:
                problems.append(f"line {ln.id!r}: {end} {getattr(ln, end)!r} is not a known bus")
        if ln.from_bus == ln.to_bus:
            problems.append(f"line {ln.id!r}: from_bus and to_bus are both {ln.from_bus!r}")
    if transformer is not None:
        for end in ("hv_bus", "lv_bus"):
            if getattr(transformer, end) not in bus_ids:
                bus = getattr(transformer, end)
                problems.append(f"transformer {transformer.id!r}: {end} {bus!r} is not a known bus")
        if source is not None and source.bus != transformer.hv_bus:
            problems.append(f"source bus {source.bus!r} must be the transformer hv_bus {transformer.hv_bus!r}")
    for c in customers:
        if c.bus not in bus_ids:
            problems.append(f"customer {c.id!r}: bus {c.bus!r} is not a known bus")
        elif transformer is not None and c.bus == transformer.hv_bus:
            problems.append(f"customer {c.id!r}: bus {c.bus!r} is the MV side of the transformer")
    if not problems and not unchecked_bus_ids and transformer is not None:
        problems += radial_tree(
            root=transformer.lv_bus, edges=_edges(ln for ln in lines if ln.normally_closed)
        ).problems(expected=bus_ids - {transformer.hv_bus})
    return problems


def _row_problems(where: str, err: ValidationError) -> list[str]:
    out = []
    for e in err.errors(include_url=False):
        field = ".".join(str(p) for p in e["loc"]) or "row"
        value = e.get("input")
        shown = "" if isinstance(value, dict) else f" = {value!r}"
        out.append(f"{where}: {field}{shown}: {e['msg']}")
    return out


def assemble_feeder(
    *,
    name: str,
    buses: list[tuple[str, dict[str, Any]]],
    lines: list[tuple[str, dict[str, Any]]],
    transformer: tuple[str, dict[str, Any]],
    source: tuple[str, dict[str, Any]],
    customers: list[tuple[str, dict[str, Any]]],
) -> Feeder:
    """Build a Feeder from raw rows, each given with a ``where`` label (file and row) for error messages.

    Every row is validated on its own, then cross-references are checked, and all problems are raised together
    as one FeederError. Customers without a feeder index or distance get them from the topology.
    """
    problems: list[str] = []

    def each(rows: list[tuple[str, dict[str, Any]]], model: type[BaseModel]) -> list[Any]:
        ok = []
        for where, row in rows:
            try:
                ok.append(model.model_validate(row))
            except ValidationError as err:
                problems.extend(_row_problems(where, err))
        return ok

    bus_objs = each(buses, Bus)
    line_objs = each(lines, Line)
    tr_objs = each([transformer], Transformer)
    src_objs = each([source], Source)
    cust_objs = each(customers, Customer)
    valid_bus_ids = {b.id for b in bus_objs}
    failed_bus_ids = {str(row.get("id")) for _, row in buses} - valid_bus_ids
    problems += _reference_problems(
        buses=bus_objs,
        lines=line_objs,
        transformer=tr_objs[0] if tr_objs else None,
        source=src_objs[0] if src_objs else None,
        customers=cust_objs,
        unchecked_bus_ids=failed_bus_ids,
    )
    if problems:
        raise FeederError(name, problems)
    tree = radial_tree(root=tr_objs[0].lv_bus, edges=_edges(ln for ln in line_objs if ln.normally_closed))
    derived = []
    for c in cust_objs:
        update: dict[str, Any] = {}
        if c.feeder < 0 and c.bus in tree.branch_of:
            update["feeder"] = tree.branch_of[c.bus]
        if c.distance_km < 0 and c.bus in tree.distance_km:
            update["distance_km"] = tree.distance_km[c.bus]
        derived.append(c.model_copy(update=update) if update else c)
    return Feeder(
        name=name,
        buses=tuple(bus_objs),
        lines=tuple(line_objs),
        transformer=tr_objs[0],
        source=src_objs[0],
        customers=tuple(derived),
    )
