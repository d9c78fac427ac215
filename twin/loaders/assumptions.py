"""Explicit assumptions for data a network file does not carry, and the ``--feeder`` text that states them.

A feeder file is given as ``PATH`` or ``PATH;key=value;key=value``:

- ``zero-sequence=r0/r1=4,x0/x1=4[,c0/c1=1]``: lines without zero-sequence data get r0 = 4·r1, x0 = 4·x1 and
  c0 = c0/c1·c1 (c0/c1 defaults to 1);
- ``ext-grid=s_sc_max_mva=100,rx_max=0.1,x0x_max=1,r0x0_max=0.1``: short-circuit data of the external grid
  for the columns the network leaves empty (any subset of the four);
- ``vector-group=Dyn1``: the vector group of transformers whose ``vector_group`` is empty (e.g. the CIGRE LV
  benchmark's); a clock number sets the phase shift, as in pandapower;
- ``transformer=N``: of a network with several MV/LV transformers, the LV network of ``net.trafo`` index N (or
  name N): each transformer's LV network is a feeder of its own;
- ``service-lines=fold`` (OpenDSS circuits only): single-phase service lines are folded into their customers,
  each load then sits at the line's first bus on the phase the line takes there (the cable is not modelled).

Nothing is assumed unless asked for: missing data are reported, naming the option that would supply them. Every
assumption used is logged once per network (a warning) and listed in ``Feeder``-loading reports.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from twin.errors import ScenarioError

__all__ = ["ASSUMPTION_KEYS", "OPENDSS_KEYS", "FeederSpec", "NetworkAssumptions", "ShortCircuit", "ZeroSequence",
           "assumptions_from_options", "parse_feeder_spec", "split_feeder_text"]

FROZEN = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class ZeroSequence(BaseModel):
    """Zero- to positive-sequence ratios assumed for lines without zero-sequence data."""

    model_config = FROZEN
    r0_r1: float = Field(alias="r0/r1", gt=0)
    x0_x1: float = Field(alias="x0/x1", gt=0)
    c0_c1: float = Field(default=1.0, alias="c0/c1", ge=0)

    def text(self) -> str:
        return f"r0/r1={self.r0_r1:g},x0/x1={self.x0_x1:g},c0/c1={self.c0_c1:g}"


class ShortCircuit(BaseModel):
    """External-grid short-circuit data assumed where the network leaves the pandapower columns empty."""

    model_config = FROZEN
    s_sc_max_mva: float | None = Field(default=None, gt=0)
    rx_max: float | None = Field(default=None, ge=0)
    x0x_max: float | None = Field(default=None, gt=0)
    r0x0_max: float | None = Field(default=None, ge=0)

    def text(self) -> str:
        return ",".join(f"{k}={v:g}" for k, v in self.model_dump().items() if v is not None)


class FeederSpec(BaseModel):
    """A feeder file and the assumptions stated with it."""

    model_config = FROZEN
    path: Path
    zero_sequence: ZeroSequence | None = None
    short_circuit: ShortCircuit | None = None
    transformer: str | None = None
    vector_group: str | None = None
    service_lines: str | None = None

    @classmethod
    def plain(cls, path: Path) -> Self:
        return cls(path=path)


def _pairs(key: str, text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ScenarioError(f"--feeder {key}={text!r}: {item!r} is not name=value")
        out[name.strip()] = value.strip()
    return out


def _path_text(text: str) -> str:
    """The PATH of ``PATH[;key=value…]``."""
    return text.split(";")[0].strip()


def _key_values(text: str) -> Iterator[tuple[str, str]]:
    """(key, value) of each ``;key=value`` part of ``PATH[;key=value…]``, in order, the key stripped; empty parts
    are skipped. ScenarioError when the part reached is not key=value."""
    for part in text.split(";")[1:]:
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep:
            raise ScenarioError(f"--feeder {text!r}: {part!r} is not key=value; expected zero-sequence=…, "
                                "ext-grid=…, vector-group=… or transformer=…")
        yield key.strip(), value


def parse_feeder_spec(spec: str) -> FeederSpec:
    """``PATH[;key=value…]`` → FeederSpec; ScenarioError naming the bad part and the expected form."""
    fields: dict[str, object] = {"path": Path(_path_text(spec))}
    models: dict[str, tuple[str, type[BaseModel]]] = {
        "zero-sequence": ("zero_sequence", ZeroSequence), "ext-grid": ("short_circuit", ShortCircuit)}
    for key, value in _key_values(spec):
        if key == "service-lines":
            if value.strip() != "fold":
                raise ScenarioError(f"--feeder service-lines={value!r}: expected service-lines=fold")
            fields["service_lines"] = "fold"
        elif key in ("transformer", "vector-group"):
            fields[key.replace("-", "_")] = value.strip()
        elif key in models:
            field, model = models[key]
            try:
                fields[field] = model.model_validate(_pairs(key, value))
            except ValidationError as err:
                bad = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors(include_url=False))
                raise ScenarioError(f"--feeder {key}={value!r}: {bad}") from None
        else:
            raise ScenarioError(f"--feeder {spec!r}: unknown key {key!r}; expected zero-sequence, ext-grid, "
                                "vector-group or transformer (or service-lines for an OpenDSS circuit)")
    return FeederSpec.model_validate(fields)


ASSUMPTION_KEYS = ("zero-sequence", "ext-grid", "vector-group", "transformer", "service-lines")
OPENDSS_KEYS = ("service-lines",)
"""The assumptions an OpenDSS circuit takes (the others are for pandapower networks)."""
"""The assumption keys, as written after ``--assume`` and in ``[assumptions]`` tables."""


class NetworkAssumptions(BaseModel):
    """The assumptions of a network file as options (``--assume KEY=VALUE``, ``[assumptions]`` of a scenario
    file, ``[feeders.assumptions]`` of a study): each the text of its ``PATH;key=value`` part, e.g.
    ``zero_sequence = "r0/r1=4,x0/x1=4"``. Kept apart from the path so that the path can be resolved and hashed."""

    model_config = FROZEN
    zero_sequence: str | None = Field(default=None, alias="zero-sequence")
    ext_grid: str | None = Field(default=None, alias="ext-grid")
    vector_group: str | None = Field(default=None, alias="vector-group")
    transformer: str | None = None
    service_lines: Literal["fold"] | None = Field(default=None, alias="service-lines")

    @property
    def empty(self) -> bool:
        return all(v is None for v in self.model_dump().values())

    def items(self) -> list[tuple[str, str]]:
        """(key, value) of every assumption given, keys as written after ``--assume``."""
        return [(name.replace("_", "-"), value) for name, value in self.model_dump().items() if value is not None]

    def suffix(self) -> str:
        """The ``;key=value…`` part of the feeder text these assumptions stand for ('' for none)."""
        return "".join(f";{key}={value}" for key, value in self.items())


def split_feeder_text(text: str) -> tuple[str, dict[str, str]]:
    """``PATH;key=value…`` → (PATH, {key: value}); ScenarioError for a part that is not key=value or a key
    that is not an assumption."""
    found: dict[str, str] = {}
    for key, value in _key_values(text):
        if key not in ASSUMPTION_KEYS:
            raise ScenarioError(f"--feeder {text!r}: unknown key {key!r}; expected zero-sequence, ext-grid, "
                                "vector-group or transformer")
        found[key] = value.strip()
    return _path_text(text), found


def assumptions_from_options(values: list[str]) -> dict[str, str]:
    """``--assume KEY=VALUE`` (repeatable) → {key: value}; ScenarioError naming a bad one."""
    found: dict[str, str] = {}
    for text in values:
        key, sep, value = text.partition("=")
        key = key.strip()
        if not sep or key not in ASSUMPTION_KEYS or not value.strip():
            raise ScenarioError(f"--assume {text!r}: expected KEY=VALUE with KEY one of {', '.join(ASSUMPTION_KEYS)}"
                                " (e.g. --assume zero-sequence=r0/r1=4,x0/x1=4)")
        if key in found:
            raise ScenarioError(f"--assume {key} is given twice ({found[key]!r} and {value.strip()!r})")
        found[key] = value.strip()
    return found
