"""Benchmarks that cannot rot: every script in benchmarks/ runs in its ``--quick`` mode (no figures asserted).

Each quick mode solves a small case of what its benchmark measures, so that an import that moved or an API that
changed fails here rather than the next time someone runs the benchmark. The scripts run in this process, one
after the other (``runpy``, as ``__main__`` with ``--quick``), so that the heavy imports are paid once.
"""

from __future__ import annotations

import logging
import runpy
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
SCRIPTS = sorted(p for p in BENCHMARKS.glob("*.py") if 'if __name__ == "__main__":' in p.read_text())


def test_every_benchmark_script_is_found_and_has_a_quick_mode() -> None:
    assert {p.name for p in SCRIPTS} >= {"powerflow_engines.py", "replay_day.py"}
    assert [p.name for p in SCRIPTS if "--quick" not in p.read_text()] == []


@pytest.fixture(autouse=True)
def _logging_restored() -> Iterator[None]:
    """A script configures logging for its own process; the tests after it get the logging they had."""
    loggers = [logging.root, *(lg for lg in logging.root.manager.loggerDict.values() if isinstance(lg, logging.Logger))]
    levels = {lg: (lg.level, lg.disabled) for lg in loggers}
    disable = logging.root.manager.disable
    yield
    logging.disable(disable)
    for lg, (level, disabled) in levels.items():
        lg.setLevel(level)
        lg.disabled = disabled
    for added in logging.root.manager.loggerDict.values():
        if isinstance(added, logging.Logger) and added not in levels:
            added.setLevel(logging.NOTSET)


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_quick_mode_runs(script: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # scripts that write runs/... write them here
    monkeypatch.setattr(sys, "argv", [str(script), "--quick"])
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as end:  # a script that ends with sys.exit(status) ran to its end: status 0 passes
        assert end.code in (0, None), f"{script.name} --quick exited with status {end.code}"


WITH_TEST_SUPPORT = [p for p in SCRIPTS if '/ "tests"' in p.read_text() or "opendss_day" in p.read_text()]


@pytest.mark.parametrize("script", WITH_TEST_SUPPORT, ids=lambda p: p.stem)
def test_scripts_that_use_the_test_servers_start_from_any_folder(script: Path, tmp_path: Path) -> None:
    # tests/ holds folders named like the packages (tests/phasetwin, tests/twin): put first on sys.path they
    # shadowed the packages, and `python benchmarks/replay_day.py` from another folder could not import phasetwin
    done = subprocess.run([sys.executable, str(script), "--help"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
