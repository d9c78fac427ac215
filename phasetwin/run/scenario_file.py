"""The scenario file (``phasetwin replay --config run.toml``) and the resolved scenario a run folder records.

A scenario file is the :class:`Scenario` in TOML (its fields at the top level, ``[fleet]`` and ``[controller]``
as tables), plus a ``[replay]`` table for the options of the ``replay`` command that are not part of a scenario
(baseline, bus, database, a named scenario, a plan folder) and, in a recorded ``scenario.toml``, an ``[inputs]``
table with the SHA-256 of every input file. A key left out takes the :class:`Scenario` default (no devices, no
controller), not the ``replay`` command's default. Relative paths are relative to the file's folder. Command
line options given explicitly override the file (``CLI_FIELDS`` says where each one lands).

A recorded ``scenario.toml`` holds the resolved scenario: every field, absolute paths, the period actually
replayed. ``phasetwin replay --config RUN/scenario.toml`` checks the input hashes and replays the same run.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from phasetwin.run.code_version import code_fingerprint
from phasetwin.run.scenario import Scenario
from streams.errors import validation_problems
from twin.errors import ScenarioError
from twin.loaders.assumptions import split_feeder_text

SCENARIO_FILE = "scenario.toml"
"""Name of the resolved scenario in a run folder."""

PATH_FIELDS = ("data", "schedule", "rephase", "seasonal_plan", "out", "keyring", "signing_key", "pv_profile")
"""Scenario fields holding a path, resolved against the scenario file's folder."""

CLI_FIELDS: dict[str, tuple[str, ...]] = {
    "feeder": ("feeder",), "assume": ("assumptions",),
    "data": ("data",), "timezone": ("data_timezone",), "time_format": ("data_time_format",),
    "unit": ("data_unit",), "naive_utc": ("data_naive_utc",),
    "start": ("start_utc",), "end": ("end_utc",), "tick": ("tick_s",), "engine": ("engine",), "speed": ("speed",),
    "per_meter_topics": ("per_meter_topics",), "out": ("out",), "psd": ("fleet", "psd"), "sts": ("fleet", "sts"),
    "pess": ("fleet", "pess"), "pess_access": ("fleet", "pess_access"), "devices": ("fleet", "explicit"),
    "schedule": ("schedule",), "controller": ("controller", "strategy"), "forecast": ("controller", "forecast"),
    "time_limit": ("controller", "solver", "time_limit_s"), "run_id": ("run_id",), "rephase": ("rephase",),
    "solver_backend": ("controller", "solver", "backend"),
    "seasonal_plan": ("seasonal_plan",),
    # the meter-input options of issue 17 (branch meter-inputs)
    "fill_gaps": ("data_fill_steps",), "unit_check": ("data_unit_check",), "unmetered": ("unmetered",),
    "unknown_meters": ("unknown_meters",),
    # and those of replay-control (command lifetimes, divergence policy, time base), merged into main since
    "control_period": ("controller", "period_s"), "command_lifetime": ("controller", "command_lifetime_s"),
    "on_divergence": ("on_divergence",), "time_base": ("time_base",),
    # and those of hostile (signed commands, ingest limit)
    "keyring": ("keyring",), "signing_key": ("signing_key",), "meter_limit_kva": ("meter_limit_kva",),
    "flush_ticks": ("flush_ticks",), "tick_blocks": ("tick_blocks",), "site": ("pv_site",),
    "pv_profile": ("pv_profile",),
    # and the switching budget, objective and placement of issue 28
    "ops_per_day": ("controller", "budget", "ops_per_day"), "min_dwell": ("controller", "budget", "min_dwell_s"),
    "objective": ("controller", "weights"),  # the preset's weights (controllers.online.settings.objective_weights)
    "placement": ("fleet", "placement"),
    "reorder_window": ("reorder_window_s",), "stale_after": ("stale_after_s",),
    "scenario_name": ("replay", "scenario"), "baseline": ("replay", "baseline"), "bus": ("replay", "bus"),
    "influx": ("replay", "influx"), "plan": ("replay", "plan"), "verbose": ("replay", "verbose"),
    "view": ("replay", "view"), "view_port": ("replay", "view_port"),
}
"""Where each ``replay`` option lands in a scenario file (``devices`` is read into ``fleet.explicit``)."""


class ReplayOptions(BaseModel):
    """The ``replay`` command's options that are not part of the scenario."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    baseline: bool = Field(default=True, description="also replay the same fleet without a controller")
    bus: str | None = Field(default=None, description="MQTT broker URL (as --bus)")
    influx: str | None = Field(default=None, description="time-series database URL (as --influx)")
    scenario: str | None = Field(default=None, description="a named scenario (as --scenario)")
    plan: Path | None = Field(default=None, description="a plan folder (as --plan)")
    verbose: bool = False
    view: bool = Field(default=False, description="open the live view of the run (as --view; needs bus)")
    view_port: int = Field(default=5006, ge=1, le=65535, description="port of the live view's page (as --view-port)")


class ScenarioFile(BaseModel):
    """A scenario file read and validated: the scenario, the replay options, the recorded input hashes."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    scenario: Scenario
    replay: ReplayOptions = Field(default_factory=ReplayOptions)
    inputs: dict[str, str] = Field(default_factory=dict, description="input file path -> SHA-256 (recorded runs)")


def _absolute(value: object, folder: Path) -> object:
    if value is None or value == "":
        return value
    path = Path(str(value)).expanduser()
    return str(path if path.is_absolute() else (folder / path).resolve())


def read_toml(path: Path, *, named: str) -> dict[str, Any]:
    """The TOML file at ``path`` parsed; ScenarioError starting with ``named`` (how the user gave the file, e.g.
    ``--config PATH``) when it cannot be read or is not TOML."""
    try:
        return tomllib.loads(path.read_text())
    except OSError as err:
        raise ScenarioError(f"{named}: cannot read it ({err.strerror or err})") from err
    except tomllib.TOMLDecodeError as err:
        raise ScenarioError(f"{named}: not valid TOML ({err})") from err


def read_scenario_file(path: Path) -> ScenarioFile:
    """Read and validate a scenario file. Raises ScenarioError naming the file and every bad field."""
    return scenario_file_from_dict(read_toml(path, named=f"--config {path}"), source=path)


def scenario_file_from_dict(raw: Mapping[str, Any], *, source: Path) -> ScenarioFile:
    """A scenario file's content (parsed TOML) validated; relative paths resolved against ``source``'s folder."""
    folder = source.parent.resolve()
    fields = dict(raw)
    replay = dict(fields.pop("replay", None) or {})
    inputs = fields.pop("inputs", None) or {}
    for name in PATH_FIELDS:
        if name in fields:
            fields[name] = _absolute(fields[name], folder)
    if isinstance(fields.get("feeder"), dict):  # [feeder] path = …, [feeder.assumptions] …
        table = dict(fields["feeder"])
        fields["feeder"] = table.pop("path", table.pop("name", None))
        if "assumptions" in table:
            fields["assumptions"] = table.pop("assumptions")
        if table:
            raise ScenarioError(f"--config {source}: [feeder] takes path (or name) and assumptions, not "
                                f"{', '.join(sorted(table))}")
    if isinstance(fields.get("feeder"), str):
        path, found = split_feeder_text(fields["feeder"])
        if path.lower().endswith((".json", ".dss")):
            fields["feeder"] = str(_absolute(path, folder)) + "".join(f";{k}={v}" for k, v in found.items())
    unmetered = fields.get("unmetered")
    if isinstance(unmetered, str) and unmetered.strip().lower().startswith("profile:"):
        fields["unmetered"] = "profile:" + str(_absolute(unmetered.strip()[len("profile:"):], folder))
    elif isinstance(unmetered, dict) and unmetered.get("annual_kwh_file"):
        fields["unmetered"] = unmetered | {"annual_kwh_file": _absolute(unmetered["annual_kwh_file"], folder)}
    if replay.get("plan"):
        replay["plan"] = _absolute(replay["plan"], folder)
    try:
        scenario = Scenario.model_validate(fields)
        return ScenarioFile(scenario=scenario, replay=ReplayOptions.model_validate(replay), inputs=dict(inputs))
    except ValidationError as err:
        raise ScenarioError(f"--config {source}: {validation_problems(err, root='scenario')}") from err


def override(scenario: Scenario, replay: ReplayOptions, values: Mapping[str, object]) -> tuple[Scenario, ReplayOptions]:
    """The scenario and replay options with the given ``replay`` options (by CLI name, see CLI_FIELDS) set.

    Raises ScenarioError (naming the option) for a value the scenario refuses."""
    fields = scenario.model_dump()
    options = replay.model_dump()
    for name, value in values.items():
        where = CLI_FIELDS[name]
        if where[0] == "replay":
            options[where[1]] = value
            continue
        target: dict[str, Any] = fields
        for key in where[:-1]:
            target = target[key]
        target[where[-1]] = value
    try:
        return Scenario.model_validate(fields), ReplayOptions.model_validate(options)
    except ValidationError as err:
        raise ScenarioError(f"the options override the scenario file: {validation_problems(err, root='scenario')}"
                            ) from err


def input_files(scenario: Scenario, replay: ReplayOptions | None = None) -> list[Path]:
    """Every file a run reads besides the bundled ones: the network file (and, of an OpenDSS circuit, every file
    it redirects to or loads), meter data, the unmetered customers' annual energies, schedule, plans, keyring."""
    paths: list[Path] = []
    if (network := scenario.feeder_file) is not None:
        paths.append(network)
        if network.suffix.lower() == ".dss" and network.is_file():
            from twin.loaders.opendss import referenced_files

            paths.extend(referenced_files(network))
    paths += [p for p in (scenario.data, scenario.unmetered.annual_kwh_file, scenario.schedule, scenario.rephase,
                          scenario.seasonal_plan, scenario.keyring, scenario.pv_profile) if p is not None]
    if replay is not None and replay.plan is not None and replay.plan.is_file():
        paths.append(replay.plan)
    return paths


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def input_hashes(scenario: Scenario, replay: ReplayOptions | None = None) -> dict[str, str]:
    """SHA-256 of every input file, by absolute path. Raises ScenarioError for a file that cannot be read."""
    hashes = {}
    for path in input_files(scenario, replay):
        try:
            hashes[str(path.resolve())] = file_sha256(path.resolve())
        except OSError as err:
            raise ScenarioError(f"input file {path}: cannot read it ({err.strerror or err})") from err
    return hashes


def check_inputs(recorded: Mapping[str, str], *, source: Path) -> None:
    """Raise ScenarioError listing every recorded input file that is gone or whose content changed."""
    problems = []
    for name, expected in recorded.items():
        path = Path(name)
        if not path.is_file():
            problems.append(f"{name} is gone")
        elif (actual := file_sha256(path)) != expected:
            problems.append(f"{name} changed (SHA-256 {actual[:12]}…, recorded {expected[:12]}…)")
    if problems:
        raise ScenarioError(f"--config {source}: the run's input files are not the recorded ones: "
                            f"{'; '.join(problems)}; restore them, or remove their lines from the inputs table")


def scenario_hash(scenario: Scenario, inputs: Mapping[str, str]) -> str:
    """The key of a scenario: SHA-256 of its fields (all but ``out``), of its input files' contents and of the code
    that replays it (``code_fingerprint``: phasetwin's sources and its solvers' releases).

    Two runs with the same key replay the same thing with the same code, wherever their run folders are."""
    fields = scenario.model_dump(mode="json", exclude={"out"})
    canonical = json.dumps({"scenario": fields, "inputs": sorted(inputs.values()), "code": code_fingerprint()},
                           sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _without_none(value: object) -> object:
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value]
    return value


def scenario_toml(scenario: Scenario, *, replay: ReplayOptions | None = None,
                  inputs: Mapping[str, str] | None = None) -> str:
    """The TOML text of a scenario (fields left unset — None — are left out: None is their default)."""
    content: dict[str, Any] = _without_none(scenario.model_dump(mode="json"))  # type: ignore[assignment]
    if replay is not None:
        content["replay"] = _without_none(replay.model_dump(mode="json"))
    if inputs:
        content["inputs"] = dict(inputs)
    return tomli_w.dumps(content)


def record_scenario(scenario: Scenario, *, start_utc: str, end_utc: str, replay: ReplayOptions | None = None) -> Path:
    """Write the resolved scenario of a finished run to ``scenario.out/scenario.toml``: every field, absolute
    paths, the period replayed (``start_utc``/``end_utc`` of its summary), the SHA-256 of each input file."""
    resolved = scenario.model_validate(scenario.model_dump() | {
        "start_utc": start_utc, "end_utc": end_utc,
        **{name: Path(value).resolve() for name in PATH_FIELDS if (value := getattr(scenario, name)) is not None},
        "feeder": str(network.resolve()) if (network := scenario.feeder_file) is not None else scenario.feeder,
        "unmetered": scenario.unmetered.model_copy(update={"annual_kwh_file": profile.resolve()})
        if (profile := scenario.unmetered.annual_kwh_file) is not None else scenario.unmetered,
    })
    path = scenario.out / SCENARIO_FILE
    path.write_text(f"# phasetwin replay --config {path}  reproduces this run\n"
                    + scenario_toml(resolved, replay=replay, inputs=input_hashes(resolved, replay)))
    return path
