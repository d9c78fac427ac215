"""The Python API: what the ``phasetwin`` command does, as functions a notebook can call.

    import phasetwin
    run = phasetwin.replay()                      # the bundled IEEE European LV day, default fleet and controller
    run.summary.p_unb_kwh, run.baseline.summary.p_unb_kwh
    run.table("transformer")                      # a pandas DataFrame

Every function takes keyword arguments only. The options of ``replay`` and ``compare`` are those of the command
line (``phasetwin replay --help``), with underscores: ``ScenarioOptions`` lists them with their defaults. Errors
in what you give raise ``twin.errors.TwinError`` (or ``streams.errors.StreamError`` for data) with a message
naming the option, the value and what was expected.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from controllers.online.settings import Strategy
    from phasetwin.run.compare import StrategyFigures
    from phasetwin.run.meter_readings import IdentificationResult
    from phasetwin.run.reference import LabelledProgress
    from phasetwin.run.result import RunResult
    from phasetwin.run.scenario import Scenario
    from phasetwin.run.summary import RunSummary
    from streams.bus import Bus
    from streams.influx.settings import InfluxSettings
    from streams.meters.record import DataRecord

__all__ = ["Comparison", "Run", "compare", "identify", "replay", "study", "study_tables"]


@dataclass(frozen=True)
class Run:
    """A finished run: its summary, its run folder with its tables, and the no-control reference when one ran."""

    folder: Path
    summary: RunSummary
    files: tuple[Path, ...]
    data: DataRecord = field(repr=False)
    baseline: Run | None = None
    result: RunResult | None = field(default=None, repr=False)
    """The replay's own result object (recorded series, device log), for code that builds on the runner."""

    @classmethod
    def of(cls, result: RunResult, *, baseline: RunResult | None = None) -> Run:
        return cls(folder=result.folder, summary=result.summary, files=tuple(result.files), data=result.data,
                   baseline=cls.of(baseline) if baseline is not None else None, result=result)

    @property
    def tables(self) -> tuple[str, ...]:
        """The names of the run folder's tables (``transformer``, ``metrics``, ``voltages_pu``, ``devices``…)."""
        return tuple(sorted(p.name.removesuffix(".parquet") for p in self.folder.glob("*.parquet")))

    def table(self, name: str) -> pd.DataFrame:
        """One table of the run folder as a DataFrame (``voltages_pu`` and ``line_currents_ka`` wide: ``time_utc``, then
        one column per bus-phase or line); ValueError naming the tables there when it has no such one."""
        import pandas as pd

        from streams.runfolder.matrix import read_frame
        from streams.runfolder.recorder import LIST_TABLES

        path = self.folder / f"{name}.parquet"
        if not path.exists():
            raise ValueError(f"run folder {self.folder} has no table {name!r}; it has {', '.join(self.tables)}")
        if name in LIST_TABLES:  # one column per bus-phase (line), as stored before the list layout
            return read_frame(path)
        return pd.read_parquet(path)


@dataclass(frozen=True)
class Comparison:
    """Several controllers on the same period: one run each (``none`` first, the reference), their figures."""

    runs: dict[str, Run]
    figures: dict[str, StrategyFigures]

    def table(self) -> pd.DataFrame:
        """One column per controller, one row per figure (``StrategyFigures``' fields)."""
        import pandas as pd

        return pd.DataFrame({name: dataclasses.asdict(fig) for name, fig in self.figures.items()})


def replay(*, config: str | Path | None = None, baseline: bool = True, out: str | Path | None = None,
           progress: LabelledProgress | None = None, **options: Any) -> Run:
    """Replay meter data through the twin, its devices and controller, and write a run folder.

    ``options`` are ``ScenarioOptions``' fields (``feeder``, ``data``, ``start``, ``end``, ``tick``,
    ``controller``, ``psd``, ``pess``…); ``config``: a scenario file (a run folder's ``scenario.toml``
    reproduces that run), with ``options`` applied over it. ``out``: the run folder (default: a new temporary
    folder). With ``baseline`` the same fleet also runs without a controller, into ``out/no-control``
    (``Run.baseline``).
    """
    from phasetwin.run.scenario_file import override, read_scenario_file

    folder = _folder(out)
    if config is None:
        scenario = scenario_of(options, out=folder)
    else:
        file = read_scenario_file(Path(config))
        scenario, file_options = override(file.scenario, file.replay, _file_values(options))
        scenario = scenario.model_copy(update={"out": folder})
        baseline = baseline and file_options.baseline
    return replay_scenario(scenario, baseline=baseline, progress=progress)


def replay_scenario(scenario: Scenario, *, baseline: bool = True, progress: LabelledProgress | None = None,
                    bus: Bus | None = None, influx: InfluxSettings | None = None,
                    stop_requested: Callable[[], bool] | None = None) -> Run:
    """``replay`` of a ready ``Scenario`` (what the command line builds), on a given bus and database."""
    from phasetwin.run.reference import replay_with_reference

    pair = replay_with_reference(scenario, baseline=baseline, progress=progress, bus=bus, influx=influx,
                                 stop_requested=stop_requested)
    return Run.of(pair.result, baseline=pair.reference)


def compare(*, controllers: Iterable[str] = ("none", "static", "greedy", "rolling-milp"),
            out: str | Path | None = None, progress: Callable[[int, int], None] | None = None,
            **options: Any) -> Comparison:
    """Run several controllers on the same period into ``out/<controller>/``; ``none`` is always run, first, as
    the reference. ``options`` as for ``replay``."""
    from controllers.online.settings import Strategy
    from twin.errors import ScenarioError

    try:
        strategies = [Strategy(name) for name in controllers]
    except ValueError as err:
        raise ScenarioError(f"controllers {list(controllers)!r}: {err}; expected names out of "
                            f"{', '.join(s.value for s in Strategy)}") from err
    folder = _folder(out)
    first = next((s for s in strategies if s is not Strategy.NONE), Strategy.NONE)  # its timing is checked
    return compare_scenario(scenario_of({**options, "controller": first}, out=folder), strategies,
                            progress=progress)


def compare_scenario(scenario: Scenario, strategies: Iterable[Strategy], *,
                     progress: Callable[[int, int], None] | None = None) -> Comparison:
    """``compare`` of a ready ``Scenario`` (what the command line builds), into ``scenario.out/<controller>/``."""
    from phasetwin.run.compare import compare as run_compare

    rows = run_compare(scenario, list(strategies), out=scenario.out, progress=progress)
    return Comparison(runs={fig.strategy: Run.of(result) for fig, result in rows},
                      figures={fig.strategy: fig for fig, _ in rows})


def study(*, file: str | Path, out: str | Path | None = None, workers: int | None = None,
          scheduler: str | None = None, force: bool = False, retry_failed: bool = False) -> pd.DataFrame:
    """Run every task of a study file (TOML) not yet in its results, on Dask (``workers=0``: in this process),
    and return the comparison table (one row per feeder, period, fleet and strategy)."""
    from phasetwin.studies.report import comparison
    from phasetwin.studies.results import read_results
    from phasetwin.studies.run import run_study

    run = run_study(Path(file), out=Path(out) if out is not None else None, workers=workers, scheduler=scheduler,
                    force=force, retry_failed=retry_failed)
    return comparison(read_results(run.study_dir))


def study_tables(*, study_dir: str | Path, page: str | Path, name: str,
                 title: str = "P_unb reduction against operations a year") -> Path:
    """``phasetwin study tables``: the study's comparison (every KPI per strategy, the Pareto front) written into
    ``page`` between ``<!-- study-table:NAME -->`` markers, and the Pareto figure beside it; returns the figure."""
    from phasetwin.studies.tables import write_study_tables

    return write_study_tables(Path(study_dir), Path(page), name, title=title)


def identify(*, meters: str | Path, feeder: str = "ieee-european-lv", method: str = "both",
             time_limit_s: float = 120.0) -> IdentificationResult:
    """Each single-phase customer's phase from its meter's voltages (and powers), by correlation, energy
    balance, or both (``phasetwin identify``). ``meters``: a meter-voltage file (``phasetwin meter-voltages``)."""
    from controllers.identification import Method
    from phasetwin.run.meter_readings import run_identification
    from streams.meters.voltages import read_meter_voltages
    from twin.feeders import open_feeder

    return run_identification(open_feeder(feeder).load_feeder(), read_meter_voltages(Path(meters)),
                              method=Method(method), time_limit_s=time_limit_s)


def scenario_of(options: Mapping[str, Any], *, out: Path) -> Scenario:
    """The scenario of ``ScenarioOptions(**options)``; TypeError naming an unknown option and listing the known."""
    from phasetwin.run.options import ScenarioOptions

    known = {f.name for f in dataclasses.fields(ScenarioOptions)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"unknown option(s) {', '.join(unknown)}; expected names out of {', '.join(sorted(known))}")
    return ScenarioOptions(**{**options, "out": out}).scenario()


def _file_values(options: Mapping[str, Any]) -> dict[str, object]:
    from phasetwin.run.options import parse_time

    return {k: parse_time(v, f"--{k}") if k in ("start", "end") else v for k, v in options.items()}


def _folder(out: str | Path | None) -> Path:
    return Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="phasetwin-run-"))
