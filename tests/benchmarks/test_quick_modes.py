"""Benchmarks that cannot rot: every script in benchmarks/ runs in its ``--quick`` mode (no figures asserted).

Each quick mode solves a trivially small case of what its benchmark measures, so that an import that moved or
an API that changed fails here rather than the next time someone runs the benchmark.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(p for p in (ROOT / "benchmarks").glob("*.py") if 'if __name__ == "__main__":' in p.read_text())
TIMEOUT_S = 120


def test_every_benchmark_script_is_found() -> None:
    assert {p.name for p in SCRIPTS} >= {"powerflow_engines.py", "replay_day.py"}
    assert all("--quick" in p.read_text() for p in SCRIPTS), [p.name for p in SCRIPTS if "--quick" not in p.read_text()]


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_quick_mode_runs(script: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "benchmarks")])}
    done = subprocess.run([sys.executable, str(script), "--quick"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=TIMEOUT_S, check=False)
    assert done.returncode == 0, f"{script.name} --quick failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
