"""The ``phasetwin`` command."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from streams.meter_data import PowerUnit
from twin.errors import StreamError, TwinError
from twin.fleet import PessAccess
from twin.powerflow import Engine
from twin.summary import RunSummary

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Digital twin of LV three-phase feeders.")
console = Console()
err_console = Console(stderr=True)


def _fail(message: str) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code=2)


def _validation_text(err: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'scenario'}: {e['msg']}" for e in err.errors(include_url=False))


def _parse_time(text: str | None, option: str) -> datetime | None:
    """ISO date or date-time; a naive value is taken as UTC, an offset is converted to UTC."""
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError as err:
        raise _fail(f"{option} {text!r} is not an ISO date or date-time (e.g. 2024-01-15 or 2024-01-15T06:00)") from err
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@app.command()
def feeders() -> None:
    """List the feeders phasetwin knows by name."""
    from twin.feeders import known_feeders

    table = Table("name", "description", "where")
    for entry in known_feeders():
        table.add_row(entry.name, entry.description, entry.where)
    console.print(table)


@app.command()
def replay(
    feeder: Annotated[str, typer.Option(help="feeder name (see `phasetwin feeders`) or a pandapower .json")] = (
        "ieee-european-lv"
    ),
    data: Annotated[Path | None, typer.Option(help="meter data (CSV/Parquet); default: the feeder's own")] = None,
    unit: Annotated[PowerUnit, typer.Option(help="unit of --data values (Wh, kWh, MWh: energy per interval)")] = (
        PowerUnit.KW
    ),
    naive_utc: Annotated[bool, typer.Option("--naive-utc", help="--data times without offset are UTC")] = False,
    start: Annotated[str | None, typer.Option(help="period start, ISO, UTC if no offset; default: data start")] = None,
    end: Annotated[str | None, typer.Option(help="period end (exclusive); default: one day after start")] = None,
    tick: Annotated[int, typer.Option(help="tick length in seconds")] = 60,
    engine: Annotated[Engine, typer.Option(help="power-flow engine")] = Engine.PGM,
    speed: Annotated[float, typer.Option(help="simulated seconds per wall second; 0 = as fast as possible")] = 0.0,
    per_meter_topics: Annotated[bool, typer.Option(
        "--per-meter-topics", help="publish one message per meter (meter/{id}) instead of one frame per tick")] = False,
    out: Annotated[Path, typer.Option(help="run folder to write (overwritten)")] = Path("runs/latest"),
    psd: Annotated[int, typer.Option(help="PSDs on the N single-phase customers farthest from the transformer")] = 0,
    sts: Annotated[int, typer.Option(help="STSs on the next N farthest single-phase customers")] = 0,
    pess: Annotated[int, typer.Option(help="PV + battery systems on the next N farthest customers")] = 0,
    pess_access: Annotated[PessAccess, typer.Option(help="PESS connection: three-phase, one fixed phase, "
                                                         "or one phase behind an STS")] = PessAccess.SWITCHABLE,
    devices: Annotated[Path | None, typer.Option(
        help="device list CSV (customer_id,kind[,access]); replaces --psd/--sts/--pess")] = None,
    schedule: Annotated[Path | None, typer.Option(
        help="scripted command CSV (time_utc,device_id,action[,phase,battery_kw,curtailment])")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log warnings and details")] = False,
) -> None:
    """Replay meter data through the twin and write a run folder (Parquet series + summary.json)."""
    from twin.fleet import FleetSpec, read_device_list
    from twin.runner import replay as run_replay
    from twin.scenario import Scenario

    logging.basicConfig(level=logging.INFO if verbose else logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    try:
        explicit = read_device_list(devices) if devices is not None else ()
        fleet = FleetSpec(psd=psd, sts=sts, pess=pess, pess_access=pess_access, explicit=explicit)
    except TwinError as err:
        raise _fail(str(err)) from err
    except ValidationError as err:
        raise _fail(_validation_text(err)) from err
    try:
        scenario = Scenario(
            feeder=feeder, data=data, data_unit=unit, data_naive_utc=naive_utc, start_utc=_parse_time(start, "--start"),
            end_utc=_parse_time(end, "--end"), tick_s=tick, engine=engine, speed=speed, out=out,
            per_meter_topics=per_meter_topics, fleet=fleet, schedule=schedule,
        )
    except ValidationError as err:
        raise _fail(_validation_text(err)) from err
    try:
        with Progress(TextColumn("[bold]replay[/]"), BarColumn(), MofNCompleteColumn(), TextColumn("ticks"),
                      TimeElapsedColumn(), console=err_console, transient=False) as bar:
            task = bar.add_task("replay", total=None)
            every = 10

            def progress(done: int, total: int) -> None:
                if done % every == 0 or done == total:
                    bar.update(task, completed=done, total=total)

            result = run_replay(scenario, progress=progress)
    except (TwinError, StreamError) as err:
        raise _fail(str(err)) from err
    _print_summary(result.summary)
    console.print(f"run folder: [bold]{result.folder}[/] ({', '.join(p.name for p in result.files)})")


def _print_summary(s: RunSummary) -> None:
    table = Table(title=f"{s.feeder} · {s.start_utc} .. {s.end_utc} · {s.ticks} ticks of {s.tick_s} s · {s.engine}")
    table.add_column("")
    for p in ("A", "B", "C"):
        table.add_column(f"phase {p}", justify="right")
    rows = (("energy, kWh", s.energy_kwh, "{:.1f}"), ("peak load, kW", s.peak_load_kw, "{:.1f}"),
            ("min voltage, p.u.", s.vm_min_pu, "{:.4f}"), ("max voltage, p.u.", s.vm_max_pu, "{:.4f}"))
    for label, fig, fmt in rows:
        table.add_row(label, fmt.format(fig.a), fmt.format(fig.b), fmt.format(fig.c))
    console.print(table)
    unb = ", ".join(f"feeder {f}: {v:.2f}" for f, v in enumerate(s.max_p_unb_kw))
    console.print(f"max P_unb (kW): {unb} · peak neutral current: {s.peak_neutral_current_a:.1f} A · "
                  f"max VUF: {s.max_vuf_pct:.2f} % · max transformer κ: {s.max_kappa_trafo:.2f} · "
                  f"losses: {s.losses_kwh:.2f} kWh")
    console.print(f"wall time: {s.wall_s:.2f} s ({s.ticks_per_s:.0f} ticks/s) · power-flow solves: "
                  f"{s.powerflow_solves} for {s.states_solved} states · missing readings: {s.readings_missing} · "
                  f"overruns: {s.overruns}")


if __name__ == "__main__":
    app()
