"""``phasetwin view``: the operator's web view of a finished run folder, or of a live run on the MQTT bus."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from phasetwin.view.errors import RunFolderError
from twin.errors import TwinError

if TYPE_CHECKING:
    from phasetwin.view.timeline import Timeline

console = Console(stderr=True)
DEFAULT_PORT = 5006


def _fail(message: str) -> typer.Exit:
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code=2)


def open_view(folder: Path | None = None, *, live: str | None = None, feeder: str = "ieee-european-lv",
              tick_s: float = 60.0, control_period_s: float = 900.0,
              vm_limits_pu: tuple[float, float] = (0.90, 1.10)) -> Timeline:
    """The timeline a view shows: the run in ``folder``, or (``live``: an MQTT URL) an empty one of ``feeder``
    that a ``LiveFollower`` fills. Raises RunFolderError / TwinError with what is wrong."""
    if live is None:
        if folder is None:
            raise RunFolderError("give a run folder to open, or --live mqtt://host:port to follow a live run")
        from phasetwin.view.runfolder import read_run_folder

        return read_run_folder(folder)
    from phasetwin.view.runfolder import empty_timeline
    from twin.feeders import open_feeder

    entry = open_feeder(feeder)
    return empty_timeline(feeder=entry.load_feeder(), title=f"{entry.name} · live on {live}", tick_s=tick_s,
                          vm_limits_pu=vm_limits_pu, control_period_s=control_period_s or None, live=True)


def view(
    folder: Annotated[Path | None, typer.Argument(help="run folder to open (e.g. runs/latest)")] = None,
    live: Annotated[str | None, typer.Option(
        "--live", help="follow a live run on this MQTT broker (mqtt://host:port), as `replay --view` does")] = None,
    feeder: Annotated[str, typer.Option(help="with --live: the feeder the run simulates")] = "ieee-european-lv",
    tick: Annotated[int, typer.Option(help="with --live: tick length in seconds")] = 60,
    control_period: Annotated[int, typer.Option(
        "--control-period", help="with --live: seconds between controller decisions (0: no controller)")] = 900,
    port: Annotated[int, typer.Option(help="TCP port (0: a free one)")] = DEFAULT_PORT,
    address: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Open the operator's view of a run in the browser: one-line diagram, charts, plan, alarms, time travel."""
    import logging

    from phasetwin.view.server import serve

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING)
    try:
        timeline = open_view(folder, live=live, feeder=feeder, tick_s=tick, control_period_s=control_period)
    except (RunFolderError, TwinError, FileNotFoundError) as err:
        raise _fail(str(err)) from err
    follower = None
    if live is not None:
        from phasetwin.view.live import LiveFollower

        follower = LiveFollower(timeline, url=live, feeder=timeline.feeder_name)
    try:
        serve(timeline, port=port, address=address,
              on_ready=lambda url: print(f"view: {url} ({timeline.count()} ticks of {timeline.title})", flush=True))
    finally:
        if follower is not None:
            follower.close()


def start_view_process(*, bus_url: str, feeder: str, tick_s: int, control_period_s: int, port: int,
                       ready_timeout_s: float = 120.0) -> tuple[subprocess.Popen[str], str]:
    """``phasetwin view --live`` in its own process (the replay keeps its own core), for ``replay --view``;
    returns the process and its URL once it listens (and follows the bus), so that no tick is missed.
    Raises RunFolderError when it does not come up in ``ready_timeout_s``."""
    import select
    import time

    process = subprocess.Popen(
        [sys.executable, "-m", "phasetwin.cli.main", "view", "--live", bus_url, "--feeder", feeder,
         "--tick", str(tick_s), "--control-period", str(control_period_s), "--port", str(port)],
        stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    deadline = time.monotonic() + ready_timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        readable, _, _ = select.select([process.stdout], [], [], 0.5)
        if readable:
            line = process.stdout.readline()
            if line.startswith("view: "):
                return process, line.split()[1]
    process.kill()
    raise RunFolderError(f"the live view did not start within {ready_timeout_s:.0f} s (exit status "
                         f"{process.poll()}); run `phasetwin view --live {bus_url}` to see why")


def register(app: typer.Typer) -> None:
    app.command()(view)
