"""A `phasetwin replay` killed with SIGKILL (by PID, a real subprocess) keeps every tick up to its last flush,
readable with pandas, and the next run into the same folder reports the crash: what was kept, what was lost.

    replay (720 ticks, a part every 60) ──SIGKILL after ≥ 3 parts──► run/metrics.parquet/part-*.parquet
    replay into run/ again ──► "the previous run … crashed: it kept K of its 720 ticks" + its tables in crashed-*/
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from streams.runfolder.journal import JOURNAL, read_journal

ROOT = Path(__file__).resolve().parents[3]
FLUSH = 60
START = "2024-01-15T12:00"
PLANNED = 720
"""From noon to the end of the bundled day."""
# power-grid-model: its states do not depend, to the last bit, on how many share a batch (runs of 720 and 180
# ticks are compared bit for bit below); zbus's transformer sums can differ in the last bit (about 4e-16).
REPLAY = [sys.executable, "-m", "phasetwin.cli.main", "replay", "--start", START, "--psd", "2", "--pess", "0",
          "--controller", "none", "--no-baseline", "--flush-ticks", str(FLUSH), "--engine", "power-grid-model"]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def _flushed(out: Path) -> int:
    path = out / JOURNAL
    if not path.exists():
        return 0
    return max((int(e["ticks"]) for e in read_journal(path) if e["event"] == "flushed"), default=0)


@pytest.mark.slow
def test_sigkill_mid_replay_keeps_every_flushed_tick_and_the_next_run_reports_the_crash(tmp_path: Path) -> None:
    out = tmp_path / "run"
    log = tmp_path / "replay.log"
    with log.open("w") as sink:
        twin = subprocess.Popen([*REPLAY, "--out", str(out)], cwd=ROOT, env=_env(), stdout=sink, stderr=sink)
    deadline = time.monotonic() + 120
    while _flushed(out) < 3 * FLUSH and twin.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert twin.poll() is None, f"the replay ended before it could be killed: {log.read_text()}"
    os.kill(twin.pid, signal.SIGKILL)
    twin.wait(timeout=30)
    assert twin.returncode == -signal.SIGKILL

    kept = _flushed(out)
    events = read_journal(out / JOURNAL)
    assert events[0]["event"] == "started" and events[-1]["event"] == "flushed"  # no closing event: a crash
    assert not (out / "summary.json").exists()
    metrics = pd.read_parquet(out / "metrics.parquet")  # the part directory, as pandas reads it
    devices = pd.read_parquet(out / "devices.parquet")
    # the journal line follows the parts: a kill in between leaves at most one part more than it says
    assert len(metrics) in (kept, kept + FLUSH) and kept < PLANNED
    assert (metrics["time_utc"].diff().dropna() == pd.Timedelta(minutes=1)).all()
    assert metrics["time_utc"].iloc[0] == pd.Timestamp(START, tz="UTC")
    assert metrics["p_unb_kw_f0"].notna().all()
    assert len(devices) >= 2 * kept and devices["device_id"].nunique() == 2

    again = subprocess.run([*REPLAY, "--out", str(out), "--end", "2024-01-15T15:00"], cwd=ROOT, env=_env(),
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    text = " ".join(again.stdout.split())
    assert f"crashed: it kept {kept} of its {PLANNED} ticks" in text, text
    summary = json.loads((out / "summary.json").read_text())
    previous = summary["previous_run"]
    assert (previous["kept_ticks"], previous["lost_ticks"]) == (kept, PLANNED - kept)
    assert previous["planned_ticks"] == PLANNED
    assert previous["pid"] == twin.pid
    moved = Path(previous["moved_to"])
    assert moved.parent == out and (moved / "metrics.parquet").is_dir()
    crashed = pd.read_parquet(moved / "metrics.parquet")
    pd.testing.assert_frame_equal(crashed, metrics)
    # what was kept is what the twin computes: the new run's 180 ticks equal the crashed run's first 180
    fresh = pd.read_parquet(out / "metrics.parquet")
    assert len(fresh) == 180
    np.testing.assert_array_equal(fresh.to_numpy(), crashed.iloc[:180].to_numpy())
    assert [e["event"] for e in read_journal(out / JOURNAL)][-1] == "finished"
