"""The streaming run folder: parts written as the run goes and readable before the end, running totals equal to
numpy's reductions over the whole series, and the journal that reports a crashed run.

    grid states ──► ParquetRecorder (≤ flush_ticks held) ──flush──► voltages_pu.parquet/part-000000.parquet …
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from phasetwin.run.summary import physics
from streams import topics
from streams.bus import LocalBus
from streams.errors import StreamError
from streams.messages import GridState
from streams.runfolder.journal import JOURNAL, JournalEvent, RunFolderBusy, RunJournal, read_journal
from streams.runfolder.matrix import read_frame, read_matrix
from streams.runfolder.recorder import Layout, ParquetRecorder, finite_or_nan

START = datetime(2024, 3, 1, tzinfo=UTC)
LAYOUT = Layout(bus_ids=("b0", "b1", "b2"), line_ids=("l0", "l1"), n_lv_feeders=2)
TABLES = ("voltages_pu.parquet", "metrics.parquet")


def _state(tick: int, rng: np.random.Generator) -> GridState:
    return GridState.trusted(
        feeder="f", tick=tick, time_utc=START + timedelta(minutes=tick), engine="test",
        vm_pu=rng.uniform(0.9, 1.1, (3, 3)), va_deg=np.zeros((3, 3)), i_ka=rng.uniform(0, 0.3, (2, 3)),
        i_n_ka=np.zeros(2), p_trafo_kw=tuple(rng.uniform(-5, 50, 3)), q_trafo_kvar=tuple(rng.uniform(0, 5, 3)),
        loss_kw=float(rng.uniform(0, 2)), phase_load_kw=rng.uniform(0, 20, (2, 3)), p_unb_kw=rng.uniform(0, 9, 2),
        vm_min_pu=tuple(rng.uniform(0.9, 1.0, 3)), vm_max_pu=tuple(rng.uniform(1.0, 1.1, 3)),
        vuf_max_pct=float(rng.uniform(0, 2)), i_n_max_a=float(rng.uniform(0, 80)), kappa_trafo=float(rng.uniform(0, 1)),
    )


def _recorder(tmp_path: Path, n_ticks: int, flush_ticks: int) -> tuple[LocalBus, ParquetRecorder]:
    bus = LocalBus()
    times = pd.date_range(START, periods=n_ticks, freq="60s")
    return bus, ParquetRecorder(bus=bus, feeder="f", layout=LAYOUT, time_utc=times, folder=tmp_path,
                                flush_ticks=flush_ticks)


def test_parts_are_readable_while_the_run_lasts_and_after(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    bus, rec = _recorder(tmp_path, n_ticks=25, flush_ticks=10)
    sent = [_state(t, rng) for t in range(23)]
    for state in sent:
        bus.publish(topics.grid_state("f"), state)
        bus.settle()
    # ticks 0..19 went out by themselves when tick 20 arrived: two parts, a directory pandas reads as one table
    assert rec.flushed_ticks == 20
    parts = sorted(p.name for p in (tmp_path / "voltages_pu.parquet").iterdir())
    assert parts == ["part-000000.parquet", "part-000001.parquet"]
    early = read_frame(tmp_path / "voltages_pu.parquet")
    assert len(early) == 20 and early["time_utc"].is_monotonic_increasing
    np.testing.assert_array_equal(early["b1_C"], np.float32([s.vm_pu[1, 2] for s in sent[:20]]))
    # pandas reads the list layout as it is: a time column and one array of 9 bus-phase values per tick
    raw = pd.read_parquet(tmp_path / "voltages_pu.parquet")
    assert list(raw.columns) == ["time_utc", "vm_pu"]
    np.testing.assert_array_equal(raw["vm_pu"].iloc[7], np.float32(sent[7].vm_pu.reshape(-1)))

    files = rec.close(23)
    assert {p.name for p in files} == {"voltages_pu.parquet", "line_currents_ka.parquet", "transformer.parquet",
                                       "metrics.parquet"}
    assert all(p.is_dir() for p in files)
    assert len(list((tmp_path / "voltages_pu.parquet").glob("part-*.parquet"))) == 3
    whole = pq.read_table(tmp_path / "voltages_pu.parquet")
    assert whole.num_rows == 23 and whole.column("time_utc").to_pandas().is_monotonic_increasing
    lines = read_frame(tmp_path / "line_currents_ka.parquet")
    assert list(lines.columns) == ["time_utc", "l0", "l1"]
    np.testing.assert_array_equal(lines["l1"], np.float32([s.i_ka[1].max() for s in sent]))
    metrics = pd.read_parquet(tmp_path / "metrics.parquet")
    np.testing.assert_array_equal(metrics["p_unb_kw_f1"], [s.p_unb_kw[1] for s in sent])
    assert list(metrics["time_utc"]) == [pd.Timestamp(START + timedelta(minutes=t)) for t in range(23)]


def test_running_totals_equal_numpy_over_the_whole_series_with_missing_ticks(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    bus, rec = _recorder(tmp_path, n_ticks=40, flush_ticks=7)
    missing = {3, 4, 15, 38}
    sent = {t: _state(t, rng) for t in range(40) if t not in missing}
    for state in sent.values():
        bus.publish(topics.grid_state("f"), state)
        bus.settle()
    rec.close(40)
    figures = physics(rec.totals, tick_s=60)
    nan = np.full(3, np.nan)
    p_trafo = np.array([sent[t].p_trafo_kw if t in sent else nan for t in range(40)])
    p_unb = np.array([sent[t].p_unb_kw if t in sent else np.full(2, np.nan) for t in range(40)])
    vm_min = np.array([sent[t].vm_min_pu if t in sent else nan for t in range(40)])
    assert figures["energy_kwh"].a == pytest.approx(np.nansum(p_trafo[:, 0]) / 60)  # type: ignore[attr-defined]
    assert figures["peak_load_kw"].c == pytest.approx(np.nanmax(p_trafo[:, 2]))  # type: ignore[attr-defined]
    assert figures["mean_p_unb_kw"] == pytest.approx(np.nanmean(p_unb, axis=0).tolist())
    assert figures["max_p_unb_kw"] == pytest.approx(np.nanmax(p_unb, axis=0).tolist())
    assert figures["vm_min_pu"].b == pytest.approx(np.nanmin(vm_min[:, 1]))  # type: ignore[attr-defined]
    assert figures["peak_neutral_current_a"] == pytest.approx(max(s.i_n_max_a for s in sent.values()))
    assert figures["losses_kwh"] == pytest.approx(sum(s.loss_kw for s in sent.values()) / 60)
    assert rec.recorded == 36
    metrics = pd.read_parquet(tmp_path / "metrics.parquet")
    assert len(metrics) == 40 and metrics.loc[sorted(missing), "vuf_max_pct"].isna().all()


def test_a_folder_in_the_wide_layout_of_earlier_runs_still_reads(tmp_path: Path) -> None:
    """Before the list layout every bus-phase was a float32 column ``<bus>_<A|B|C>``: such tables read the same."""
    rng = np.random.default_rng(4)
    bus, rec = _recorder(tmp_path / "list", n_ticks=5, flush_ticks=2)  # three parts
    sent = [_state(t, rng) for t in range(5)]
    for state in sent:
        bus.publish(topics.grid_state("f"), state)
        bus.settle()
    rec.close(5)
    wide = {"time_utc": pd.date_range(START, periods=5, freq="60s")}
    wide |= {f"{b}_{p}": np.float32([s.vm_pu[i, j] for s in sent]) for i, b in enumerate(LAYOUT.bus_ids)
             for j, p in enumerate("ABC")}
    (tmp_path / "wide").mkdir()
    pd.DataFrame(wide).to_parquet(tmp_path / "wide" / "voltages_pu.parquet", index=False)
    listed, old = read_matrix(tmp_path / "list" / "voltages_pu.parquet"), read_matrix(tmp_path / "wide" /
                                                                                     "voltages_pu.parquet")
    assert listed.names == old.names == tuple(f"{b}_{p}" for b in LAYOUT.bus_ids for p in "ABC")
    np.testing.assert_array_equal(listed.values, old.values)
    assert listed.time_utc.equals(old.time_utc)
    pd.testing.assert_frame_equal(read_frame(tmp_path / "list" / "voltages_pu.parquet"),
                                  read_frame(tmp_path / "wide" / "voltages_pu.parquet"))
    for folder in ("list", "wide"):  # a few names: the list layout read part by part, the wide one by column
        some = read_matrix(tmp_path / folder / "voltages_pu.parquet", ["b2_C", "b0_A"])
        assert some.names == ("b2_C", "b0_A") and some.time_utc.equals(old.time_utc)
        np.testing.assert_array_equal(some.values, old.values[:, [8, 0]])
        with pytest.raises(StreamError, match=r"1 column\(s\) not in the table \(first 'b9_A'\)"):
            read_matrix(tmp_path / folder / "voltages_pu.parquet", ["b9_A"])
    from streams.runfolder.series import RunSeries

    np.testing.assert_array_equal(RunSeries(folder=tmp_path / "wide", layout=LAYOUT).bus_vm_pu("b2"),
                                  np.array([s.vm_pu[2] for s in sent], dtype=np.float32))


def test_nothing_recorded_gives_nan_figures_not_infinities() -> None:
    from streams.runfolder.recorder import SeriesTotals

    figures = physics(SeriesTotals(n_lv_feeders=1), tick_s=60)
    assert np.isnan(figures["max_vuf_pct"]) and np.isnan(figures["vm_max_pu"].a)  # type: ignore[attr-defined,arg-type]
    assert np.isnan(figures["mean_p_unb_kw"][0])  # type: ignore[index]
    assert np.isnan(finite_or_nan(-np.inf))


def test_a_state_for_a_tick_already_written_is_counted_not_lost_silently(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    bus, rec = _recorder(tmp_path, n_ticks=10, flush_ticks=4)
    for t in range(6):
        bus.publish(topics.grid_state("f"), _state(t, rng))
        bus.settle()
    rec.flush(6)
    bus.publish(topics.grid_state("f"), _state(2, rng))
    bus.settle()
    assert rec.rejected == 1
    rec.close(6)
    assert len(pd.read_parquet(tmp_path / "metrics.parquet")) == 6


def _begin(folder: Path, n_ticks: int = 100) -> RunJournal:
    return RunJournal.begin(folder, run_id="r1", start_utc=START, tick_s=60, n_ticks=n_ticks, tables=TABLES)


def test_a_journal_left_open_is_reported_with_what_was_kept_and_lost(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    journal = _begin(tmp_path)
    bus, rec = _recorder(tmp_path, n_ticks=100, flush_ticks=10)
    for t in range(27):
        bus.publish(topics.grid_state("f"), _state(t, rng))
        bus.settle()
        if (t + 1) % 10 == 0:
            rec.flush(t + 1)
            journal.flushed(t + 1)
    # a SIGKILL now: no closing event, parts of 20 ticks on disk, 7 ticks only in memory; the kernel frees the lock
    journal._lock.close()  # what the kernel does for a killed process
    journal._journal.close()
    assert [e["event"] for e in read_journal(tmp_path / JOURNAL)][-1] == JournalEvent.FLUSHED

    second = _begin(tmp_path, n_ticks=50)
    previous = second.previous
    assert previous is not None
    assert (previous.run_id, previous.kept_ticks, previous.lost_ticks, previous.planned_ticks) == ("r1", 20, 80, 100)
    assert previous.kept_until_utc == (START + timedelta(minutes=20)).isoformat()
    moved = Path(previous.moved_to)
    assert moved.parent == tmp_path and moved.name.startswith("crashed-")
    kept = pd.read_parquet(moved / "metrics.parquet")
    assert len(kept) == 20
    assert not (tmp_path / "metrics.parquet").exists()
    assert "crashed: it kept 20 of its 100 ticks" in previous.text()
    second.close(JournalEvent.FINISHED, ticks=50)
    events = read_journal(tmp_path / JOURNAL)
    assert [e["event"] for e in events] == ["started", "finished"]

    third = _begin(tmp_path)  # a run that closed its journal is no crash
    assert third.previous is None
    third.close(JournalEvent.STOPPED, ticks=0)


def test_a_second_run_into_a_folder_in_use_is_refused(tmp_path: Path) -> None:
    first = _begin(tmp_path)
    with pytest.raises(RunFolderBusy, match=r"run folder .* is in use by a running run \(pid \d+, run id r1\)"):
        _begin(tmp_path)
    first.close(JournalEvent.FINISHED, ticks=100)
    _begin(tmp_path).close(JournalEvent.FINISHED, ticks=100)


def test_a_torn_last_journal_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / JOURNAL
    path.write_text(json.dumps({"event": "started", "planned_ticks": 5}) + "\n" + '{"event": "flus')
    assert [e["event"] for e in read_journal(path)] == ["started"]
