"""A seasonal plan replayed against the network as it is: two replays of the same period, their figures and
before/after charts (``phasetwin replay --seasonal-plan plan.json``).

Figures of a replay (the planner's three objectives, measured on the twin's nonlinear three-phase power flow):
- ``e_loss_kwh``: energy lost in the feeder lines (all lines below the feeder heads, the buses one line below
  the transformer's LV bus), i.e. the run's losses without the lines from the LV bus to the heads (on
  ``cigre-mv`` they stand for the HV/MV transformers, which the planner leaves out) — the planner's E_loss;
- ``dv_pu``: mean over ticks, phases and buses below the heads of (mean head voltage − bus voltage), p.u.;
- ``i_n_head_max_a``: the largest neutral (|Ia + Ib + Ic|) current leaving a feeder head, A.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from phasetwin.run.inputs import load_inputs, plan_clock
from phasetwin.run.replay import replay
from phasetwin.run.result import Progress, RunResult
from phasetwin.run.scenario import Scenario
from streams import topics
from streams.bus import LocalBus
from streams.messages import GridState, Message
from twin.network import Feeder


@dataclass(frozen=True)
class FeederHeads:
    """Which lines feed the heads from the LV bus (``station_lines``), which leave the heads, which buses are below."""

    station_lines: np.ndarray  # line indices
    station_r_ohm: np.ndarray  # their resistance
    head_lines: np.ndarray
    head_buses: np.ndarray  # bus indices
    below_buses: np.ndarray

    @classmethod
    def of(cls, feeder: Feeder) -> FeederHeads:
        root = feeder.lv_bus
        bus_index = {b: i for i, b in enumerate(feeder.bus_ids())}
        station = [e for e, ln in enumerate(feeder.lines) if root in (ln.from_bus, ln.to_bus)]
        heads = {ln.to_bus if ln.from_bus == root else ln.from_bus for ln in (feeder.lines[e] for e in station)}
        head_lines = [e for e, ln in enumerate(feeder.lines)
                      if e not in station and ({ln.from_bus, ln.to_bus} & heads)]
        below = [i for b, i in bus_index.items() if b not in heads | {root, feeder.transformer.hv_bus}]
        return cls(station_lines=np.array(station), head_lines=np.array(head_lines),
                   station_r_ohm=np.array([feeder.lines[e].r1_ohm_per_km * feeder.lines[e].length_km
                                           for e in station]),
                   head_buses=np.array(sorted(bus_index[b] for b in heads)), below_buses=np.array(below))


class HeadRecorder:
    """Per tick, from the grid state: feeder-line losses (kW) and the largest neutral current leaving a head (A)."""

    def __init__(self, *, bus: LocalBus, feeder: Feeder, n_ticks: int) -> None:
        self.heads = FeederHeads.of(feeder)
        self.line_loss_kw = np.full(n_ticks, np.nan)
        self.i_n_head_a = np.full(n_ticks, np.nan)
        self._first: int | None = None
        bus.subscribe(topics.grid_state(feeder.name), self._on_state)

    def _on_state(self, topic: str, message: Message) -> None:
        if not isinstance(message, GridState):
            return
        h = self.heads
        self._first = message.tick if self._first is None else self._first
        t = message.tick - self._first
        i_a = np.asarray(message.i_ka)[h.station_lines] * 1000.0
        station_loss_kw = float((h.station_r_ohm[:, None] * i_a**2).sum()) / 1000.0
        self.line_loss_kw[t] = message.loss_kw - station_loss_kw
        self.i_n_head_a[t] = float(np.asarray(message.i_n_ka)[h.head_lines].max()) * 1000.0


@dataclass(frozen=True)
class PlanFigures:
    e_loss_kwh: float
    dv_pu: float
    i_n_head_max_a: float


@dataclass(frozen=True)
class SeasonalComparison:
    before: RunResult
    after: RunResult
    before_figures: PlanFigures
    after_figures: PlanFigures

    def text(self) -> str:
        b, a = self.before_figures, self.after_figures

        def pct(x: float, y: float) -> str:
            return f"{100 * (y - x) / x:+.1f} %" if x else "n/a"

        return (f"seasonal plan vs no plan (same period): feeder E_loss {a.e_loss_kwh:.1f} vs {b.e_loss_kwh:.1f} kWh "
                f"({pct(b.e_loss_kwh, a.e_loss_kwh)}), ΔV {a.dv_pu:.5f} vs {b.dv_pu:.5f} p.u., max head I_n "
                f"{a.i_n_head_max_a:.2f} vs {b.i_n_head_max_a:.2f} A ({pct(b.i_n_head_max_a, a.i_n_head_max_a)}); "
                f"charts in {self.after.folder}")


def figures(result: RunResult, heads: HeadRecorder) -> PlanFigures:
    """The planner's three objectives over a replay (module docstring)."""
    h = heads.heads
    vm = result.recorder.vm_pu.astype(float)
    head_v = vm[:, h.head_buses, :].mean(axis=(1, 2))
    drop = head_v[:, None, None] - vm[:, h.below_buses, :]
    hours = result.summary.tick_s / 3600.0
    return PlanFigures(e_loss_kwh=float(np.nansum(heads.line_loss_kw) * hours), dv_pu=float(np.nanmean(drop)),
                       i_n_head_max_a=float(np.nanmax(heads.i_n_head_a)))


def replay_with_heads(scenario: Scenario, *, progress: Progress | None = None,
                      stop_requested: Callable[[], bool] | None = None) -> tuple[RunResult, HeadRecorder]:
    """One replay on a local bus, with the feeder-head figures recorded alongside."""
    feeder, table = load_inputs(scenario)
    bus = LocalBus()
    heads = HeadRecorder(bus=bus, feeder=feeder, n_ticks=plan_clock(scenario, table).n_ticks)
    result = replay(scenario, progress=progress, bus=bus, stop_requested=stop_requested)
    heads.line_loss_kw = heads.line_loss_kw[: result.summary.ticks]
    heads.i_n_head_a = heads.i_n_head_a[: result.summary.ticks]
    return result, heads


def compare_seasonal(scenario: Scenario, *, progress: Progress | None = None,
                     stop_requested: Callable[[], bool] | None = None) -> SeasonalComparison:
    """Replay ``scenario`` (with its seasonal plan) into ``scenario.out`` and without the plan into
    ``scenario.out / "no-plan"``; write ``before_after_losses.svg`` and ``before_after_neutral.svg`` into
    ``scenario.out``."""
    from phasetwin.plan.seasonal.replay import write_replay_chart

    after, after_heads = replay_with_heads(scenario, progress=progress, stop_requested=stop_requested)
    before, before_heads = replay_with_heads(
        scenario.model_copy(update={"seasonal_plan": None, "out": scenario.out / "no-plan"}), progress=progress)
    write_replay_chart(scenario.out / "before_after_losses.svg", before={"no plan": before_heads.line_loss_kw},
                       after={"seasonal plan": after_heads.line_loss_kw},
                       title="Feeder line losses, twin (nonlinear three-phase)", y_label="kW")
    write_replay_chart(scenario.out / "before_after_neutral.svg", before={"no plan": before_heads.i_n_head_a},
                       after={"seasonal plan": after_heads.i_n_head_a},
                       title="Largest neutral current leaving a feeder head, twin", y_label="A")
    return SeasonalComparison(before=before, after=after, before_figures=figures(before, before_heads),
                              after_figures=figures(after, after_heads))


def replay_key(scenario: Scenario) -> str:
    """A replay's content key: ``scenario_hash`` (every field but ``out``, every input file's content, the code's
    fingerprint) with the seasonal plan keyed by its content, not its path."""
    from phasetwin.run.scenario_file import file_sha256, input_hashes, scenario_hash

    inputs = input_hashes(scenario)
    if scenario.seasonal_plan is None:
        return scenario_hash(scenario, inputs)
    inputs.pop(str(scenario.seasonal_plan.resolve()), None)
    keyed = scenario.model_copy(update={"seasonal_plan": Path(f"sha256:{file_sha256(scenario.seasonal_plan)}")})
    return scenario_hash(keyed, inputs)


@dataclass(frozen=True)
class PricedFigures:
    """The figures of a plan's replay and of the same replay without the plan; ``replayed``: how many of the two
    ran (the others came from the cache)."""

    before_figures: PlanFigures
    after_figures: PlanFigures
    replayed: int


def seasonal_figures(scenario: Scenario, *, cache: Path | None = None) -> PricedFigures:
    """``compare_seasonal``'s figures only, each replay's figures taken from ``cache`` (a folder, one
    ``<replay_key>.json`` a replay) when they are there, else replayed and stored there: a replay is
    deterministic, so the same key gives the same figures."""

    def one(sc: Scenario) -> tuple[PlanFigures, int]:
        path = None if cache is None else cache / f"{replay_key(sc)}.json"
        if path is not None and path.is_file():
            return PlanFigures(**json.loads(path.read_text(encoding="utf-8"))), 0
        result, heads = replay_with_heads(sc)
        found = figures(result, heads)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(asdict(found)), encoding="utf-8")
        return found, 1

    after, n_after = one(scenario)
    before, n_before = one(scenario.model_copy(update={"seasonal_plan": None, "out": scenario.out / "no-plan"}))
    return PricedFigures(before_figures=before, after_figures=after, replayed=n_after + n_before)
