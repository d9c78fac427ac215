"""``phasetwin study run|plan|report``: many feeders × periods × fleets × strategies on Dask, resumable."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from phasetwin.report.console import console, err_console
from phasetwin.report.console import fail as _fail
from phasetwin.report.tables import print_table
from twin.errors import StreamError, TwinError

if TYPE_CHECKING:
    import pandas as pd

    from phasetwin.run.result import RunResult
    from phasetwin.run.scenario import Scenario
    from phasetwin.studies.grid import Task

study_app = typer.Typer(no_args_is_help=True, help="Studies: many replays fanned out on Dask, one comparison.")

StudyFileArg = Annotated[Path, typer.Argument(help="study file (TOML; see README, section Studies)")]
OutOpt = Annotated[Path | None, typer.Option(help="study folder (default: the file's `out`, or runs/<file stem>)")]


def register(app: typer.Typer) -> None:
    app.add_typer(study_app, name="study")


@study_app.command("plan")
def plan(study_file: StudyFileArg, out: OutOpt = None) -> None:
    """Print the task grid and an estimate of its cost, without running anything."""
    from phasetwin.studies.estimate import estimate_s
    from phasetwin.studies.execute import default_workers, pending
    from phasetwin.studies.run import study_tasks

    try:
        tasks, study_dir = study_tasks(study_file, out)
        todo = {t.key for t in pending(tasks, study_dir)}
        seconds = estimate_s(tasks)
    except (TwinError, StreamError) as err:
        raise _fail(str(err)) from err
    table = Table("key", "feeder", "period", "fleet", "strategy", "ticks", "est. s", "state",
                  title=f"{len(tasks)} task(s) → {study_dir}")
    for task, s in zip(tasks, seconds, strict=True):
        table.add_row(task.key[:12], task.feeder, task.period, task.fleet, task.strategy, str(task.ticks),
                      f"{s:.0f}", "to run" if task.key in todo else "done")
    print_table(console, table)  # stacked when it does not fit: no cell is cut
    left = sum(s for t, s in zip(tasks, seconds, strict=True) if t.key in todo)
    workers = default_workers()
    console.print(f"{len(todo)} of {len(tasks)} task(s) to run, {sum(t.ticks for t in tasks if t.key in todo)} "
                  f"ticks; estimate {left:.0f} s of replay ({left / 60:.1f} min), about {left / workers / 60:.1f} "
                  f"min on {workers} embedded worker(s) (rough: from per-tick costs measured on a 2-core VM)")


@study_app.command("run")
def run(
    study_file: StudyFileArg,
    scheduler: Annotated[str | None, typer.Option(
        "--scheduler", help="a running Dask scheduler (tcp://HOST:PORT); default: an embedded LocalCluster")] = None,
    workers: Annotated[int | None, typer.Option(
        help="worker processes of the embedded cluster (default: one per core; 0 = in this process, no Dask)",
        min=0)] = None,
    force: Annotated[bool, typer.Option(help="re-run every task, also those already in the results")] = False,
    retry_failed: Annotated[bool, typer.Option(help="re-run the tasks recorded as failed")] = False,
    out: OutOpt = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log warnings and details")] = False,
) -> None:
    """Run every task of the study not yet in its results, then print and write the comparison table."""
    from phasetwin.studies.execute import StudyProgress
    from phasetwin.studies.run import StudyRun, run_study

    logging.basicConfig(level=logging.INFO if verbose else logging.ERROR,
                        format="%(levelname)s %(name)s: %(message)s")
    bar = Progress(TextColumn("[bold]study[/]"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                   TimeElapsedColumn(), console=err_console)
    bar_task = bar.add_task("", total=None)
    state: dict[str, StudyRun] = {}

    def start(run: StudyRun, todo: list[Task]) -> None:
        state["run"] = run
        console.print(f"study {run.study_dir}: {len(run.tasks)} task(s), {run.progress.skipped} already in the "
                      f"results, {len(todo)} to run")
        bar.update(bar_task, total=len(run.tasks), completed=run.progress.skipped)
        if todo and (workers != 0 or scheduler is not None):
            return
        bar.start()

    def client_ready(client: Any) -> None:
        console.print(f"Dask dashboard: {client.dashboard_link} · worker logs: {state['run'].study_dir / 'logs'}/")
        bar.start()

    def update(p: StudyProgress) -> None:
        bar.update(bar_task, completed=p.finished,
                   description=f"done {p.done + p.skipped} · failed {p.failed} · running {p.running}")

    try:
        run = run_study(study_file, out=out, workers=workers, scheduler=scheduler, force=force,
                        retry_failed=retry_failed, log_level=logging.INFO if verbose else logging.WARNING,
                        on_start=start, on_client=client_ready, on_update=update)
    except KeyboardInterrupt:
        done = state["run"].progress.finished if "run" in state else 0
        total = len(state["run"].tasks) if "run" in state else 0
        folder = state["run"].study_dir / "results" if "run" in state else "the results"
        raise _fail(f"interrupted: {done} of {total} task(s) have their row in {folder}; run the study again "
                    "to resume") from None
    except (TwinError, StreamError) as err:
        raise _fail(str(err)) from err
    finally:
        bar.stop()
    tasks, study_dir, progress = run.tasks, run.study_dir, run.progress
    for row in progress.rows:
        if row.get("status") != "ok":
            err_console.print(f"failed: {row['feeder']} {row['period']} {row['fleet']} {row['strategy']}: "
                              f"{row.get('error')}", markup=False, highlight=False)
    _report(study_dir, keys={t.key for t in tasks})


@study_app.command("report")
def report(study_dir: Annotated[Path, typer.Argument(help="a study folder (holds results/)")]) -> None:
    """Re-create the comparison table (printed and comparison.csv) from a study folder's results (every row in
    it, also of tasks since removed from the study file)."""
    if not (study_dir / "results").is_dir():
        raise _fail(f"{study_dir}: not a study folder (no results/ in it)")
    _report(study_dir)


@study_app.command("tables")
def tables(
    study_dir: Annotated[Path, typer.Argument(help="a study folder (holds comparison.csv)")],
    page: Annotated[Path, typer.Option(help="Markdown page holding <!-- study-table:NAME --> … "
                                            "<!-- /study-table:NAME -->: the table goes between them")],
    name: Annotated[str, typer.Option(help="the block's NAME; the figure is NAME-pareto.svg beside the page")],
    title: Annotated[str, typer.Option(help="the figure's title")] = "P_unb reduction against operations a year",
) -> None:
    """Put the study's comparison (every KPI per strategy, the Pareto front) into a docs page, and write the Pareto
    figure of the P_unb reduction against operations a year beside it."""
    from phasetwin.studies.tables import write_study_tables

    try:
        figure = write_study_tables(study_dir, page, name, title=title)
    except TwinError as err:
        raise _fail(str(err)) from err
    console.print(f"table: [bold]{page}[/] · figure: [bold]{figure}[/]")


def _report(study_dir: Path, *, keys: set[str] | None = None) -> None:
    """The comparison of the study's rows (of ``keys`` only: a study file's current tasks)."""
    from phasetwin.studies.report import comparison, write_comparison
    from phasetwin.studies.results import read_results

    results = read_results(study_dir)
    if keys is not None:
        results = results[results["key"].isin(keys)]
    table = comparison(results)
    path = write_comparison(study_dir, table)
    print_comparison(table, title=f"{study_dir.name}: {len(results)} task(s), "
                                  f"{int((results['status'] != 'ok').sum())} failed")
    console.print(f"comparison: [bold]{path}[/] · results: {study_dir / 'results'}/ · run folders: "
                  f"{study_dir / 'runs'}/")


def record_compare(out: Path, runs: list[tuple[Scenario, RunResult]]) -> None:
    """``phasetwin compare`` as a one-feeder study: each of its runs as a study row in ``out/results`` (keyed by
    its scenario's hash) and its scenario.toml, then the study's comparison table, printed and in
    ``out/comparison.csv`` (``phasetwin study report OUT`` re-creates it)."""
    from phasetwin.run.scenario_file import ReplayOptions, input_hashes, record_scenario, scenario_hash
    from phasetwin.studies.results import figures_row, write_row
    from phasetwin.studies.spec import FleetChoice, period_label

    for scenario, result in runs:
        s = result.summary
        record_scenario(scenario, start_utc=s.start_utc, end_utc=s.end_utc, replay=ReplayOptions(baseline=False))
        fleet = FleetChoice(psd=scenario.fleet.psd, sts=scenario.fleet.sts, pess=scenario.fleet.pess)
        write_row(out, {
            "key": scenario_hash(scenario, input_hashes(scenario)), "feeder": scenario.feeder_label,
            "period": period_label(datetime.fromisoformat(s.start_utc), datetime.fromisoformat(s.end_utc)),
            "fleet": fleet.label if not scenario.fleet.explicit else f"{len(scenario.fleet.explicit)} listed",
            "strategy": scenario.controller.strategy.value, "run_folder": str(result.folder), "status": "ok",
            **figures_row(result, limits=scenario.controller.limits), "task_s": s.wall_s})
    _report(out)


def print_comparison(table: pd.DataFrame, *, title: str) -> None:
    out = Table("feeder", "fleet", "strategy", "tasks (failed)", "P_unb, kWh", "reduction vs none",
                "switch ops", "voltage violations (ticks)", "battery, kWh", "rejected", "worse than none on",
                title=title)

    import pandas as pd

    def num(value: object, fmt: str) -> str:
        return "—" if value is None or pd.isna(value) else format(value, fmt)

    for r in table.itertuples(index=False):
        out.add_row(r.feeder, r.fleet, r.strategy, f"{r.tasks} ({r.failed})", num(r.p_unb_kwh, ".1f"),
                    "—" if r.strategy == "none" else num(r.p_unb_reduction_pct, ".1f") + (
                        " %" if not pd.isna(r.p_unb_reduction_pct) else ""),
                    num(r.switch_operations, ".0f"), num(r.voltage_violation_ticks, ".0f"),
                    num(r.battery_throughput_kwh, ".1f"), num(r.rejected, ".0f"),
                    "—" if r.strategy == "none" else (f"[bold red]{r.worse_than_none}[/]"
                                                      if isinstance(r.worse_than_none, str) and r.worse_than_none
                                                      else "nothing"))
    print_table(console, out)
