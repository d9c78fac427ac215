"""``phasetwin --help`` answers without the heavy libraries (issue 29, item 10: it took 4.5–6 s).

Measured as work, not time: the modules the command loads. A help text needs the option types, not the
simulation, the plots, the view's graph layout or the power-flow engines.
"""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("matplotlib", "networkx", "simpy", "bokeh", "pandapower", "power_grid_model", "dask", "highspy")


def test_help_of_every_command_loads_no_heavy_library() -> None:
    probe = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from phasetwin.cli.main import app\n"
        "runner = CliRunner()\n"
        "codes = [runner.invoke(app, [*cmd, '--help']).exit_code for cmd in ([], ['replay'], ['view'], ['study'],"
        " ['identify'], ['plan'], ['compare'], ['run'])]\n"
        f"print(__import__('json').dumps([codes, [m for m in {HEAVY!r} if m in sys.modules]]))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    codes, loaded = json.loads(out.strip().splitlines()[-1])
    assert codes == [0] * 8
    assert loaded == []
