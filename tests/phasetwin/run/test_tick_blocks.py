"""Network-only ticks in blocks (``phasetwin.run.blocks``) write the tables that tick by tick writes.

    replay --tick-blocks     meters ─┐ one pass: guard · grid (solve ahead) · recorders, per part ──► tables
    replay --no-tick-blocks  meters ─┴ tick by tick: frame → guard → grid → GridState → recorders ──► tables
                                                                                     identical, cell by cell
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandapower as pp
import pandapower.networks as pn
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from phasetwin.cli.main import app
from streams.bus import LocalBus
from streams.ingest import IngestGuard, MeterEnvelope
from streams.ingest.guard import Plausibility
from twin.loaders import pandapower_json
from twin.loaders.assumptions import parse_feeder_spec

ASSUME = "zero-sequence=r0/r1=4,x0/x1=4,c0/c1=1;ext-grid=s_sc_max_mva=100,rx_max=0.1,x0x_max=1,r0x0_max=0.1"
TABLES = ("voltages_pu", "line_currents_ka", "transformer", "metrics", "loading")
TIMING = {"wall_s", "ticks_per_s", "powerflow", "auth", "memory"}
"""Summary entries that hold times or paths of the run folder; the rest must be equal."""


def _kerber_3h(tmp_path: Path) -> tuple[str, Path]:
    """Kerber Landnetz Freileitung 1 (pandapower) and three hours of seeded 1-minute terminal data."""
    path = tmp_path / "net.json"
    pp.to_json(pn.create_kerber_landnetz_freileitung_1(), str(path))
    spec = f"{path};{ASSUME}"
    feeder = pandapower_json.load_feeder(path, spec=parse_feeder_spec(spec))
    rng = np.random.default_rng(31)
    minutes = np.arange(180)
    shape = 0.4 + 0.6 * np.exp(-((minutes - 120) ** 2) / 900.0)
    columns: dict[str, object] = {"time": pd.date_range("2024-01-15T17:00", periods=180, freq="min", tz="UTC")
                                  .strftime("%Y-%m-%dT%H:%M:%SZ")}
    for c in feeder.customers:
        for terminal in range(1, c.n_phases + 1):
            columns[f"{c.id}_{terminal}"] = np.round(3.0 * shape * rng.uniform(0.3, 1.2, 180), 4)
    data = tmp_path / "3h.csv"
    pd.DataFrame(columns).to_csv(data, index=False)
    return spec, data


@pytest.mark.slow
def test_blocks_write_the_tables_tick_by_tick_writes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spec, data = _kerber_3h(tmp_path)
    summaries = {}
    for mode in ("--tick-blocks", "--no-tick-blocks"):
        out = tmp_path / mode
        with caplog.at_level(logging.DEBUG, logger="phasetwin.run.execute"):
            caplog.clear()
            # parts of 50 ticks: the block (180 ticks, solved ahead as one batch) is recorded in four parts
            result = CliRunner().invoke(app, [
                "replay", "--feeder", spec, "--data", str(data), "--psd", "0", "--pess", "0", "--controller", "none",
                "--no-baseline", "--flush-ticks", "50", "--out", str(out), mode])
        assert result.exit_code == 0, result.output
        went_tick_by_tick = any("tick by tick" in r.getMessage() for r in caplog.records)
        assert went_tick_by_tick == (mode == "--no-tick-blocks")
        summaries[mode] = json.loads((out / "summary.json").read_text())
    assert summaries["--tick-blocks"]["ticks"] == 180
    for table in TABLES:
        ours, theirs = (pq.read_table(tmp_path / mode / f"{table}.parquet") for mode in summaries)
        assert ours.num_rows == 180 and ours.equals(theirs), table
    same = {k: v for k, v in summaries["--tick-blocks"].items() if k not in TIMING}
    assert same == {k: v for k, v in summaries["--no-tick-blocks"].items() if k not in TIMING}
    assert summaries["--tick-blocks"]["powerflow"]["rebuilds"] == summaries["--no-tick-blocks"]["powerflow"][
        "rebuilds"]


def test_a_block_the_guard_would_quarantine_a_row_of_is_refused_unchanged() -> None:
    """A step larger than the meter's data ever made, inside a block: the block goes tick by tick instead, and
    the guard has counted and remembered nothing of it."""
    guard = IngestGuard(bus=LocalBus(), feeder="f", envelopes={"m": MeterEnvelope(n_terminals=1, s_max_kva=20.0)},
                        start_utc=datetime(2024, 1, 15, tzinfo=UTC), tick_s=60, skew_ticks=2)
    guard.learn({"m": Plausibility(p_max_kw=10.0, export_max_kw=0.0, step_max_kw=2.0)})
    p = np.zeros((5, 1, 3))
    p[:, 0, 0] = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert guard.admit_block(first_tick=0, p_kw=p, q_kvar=np.zeros_like(p))
    assert guard.counters.checked == 5
    jump = np.zeros_like(p)
    jump[:, 0, 0] = [5.0, 6.0, 9.5, 9.0, 8.0]  # 6 → 9.5: a step of 3.5 kW, the data's largest is 2
    assert not guard.admit_block(first_tick=5, p_kw=jump, q_kvar=np.zeros_like(p))
    assert guard.counters.checked == 5
    np.testing.assert_array_equal(guard._last_p[0], [5.0, 0.0, 0.0])


def test_a_stop_request_ends_a_block_at_the_next_part(tmp_path: Path) -> None:
    """SIGTERM's stop request, asked before each part of 30 ticks: the third answer is yes, so two parts stay."""
    from phasetwin.run.replay import replay
    from phasetwin.run.scenario import Scenario

    answers = iter([False, False, True])
    start = datetime(2024, 1, 15, 6, tzinfo=UTC)
    result = replay(Scenario(start_utc=start, end_utc=start.replace(hour=8), flush_ticks=30, out=tmp_path),
                    stop_requested=lambda: next(answers, True))
    assert result.summary.ticks == 60 and result.summary.stopped_early
    assert pq.read_table(tmp_path / "metrics.parquet").num_rows == 60
