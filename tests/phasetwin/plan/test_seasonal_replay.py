"""Seasonal plans replayed in the twin on its ``cigre-mv`` feeder: every applied topology is radial and supplies
every bus (networkx, independent of the planner's and the twin's own checks), a bad plan is refused, the twin's
nonlinear flow confirms the planner's direction, and agrees with the planner's surrogate per scenario."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from controllers.planning.seasonal.case import cigre_mv_seasonal
from controllers.planning.seasonal.evaluation import SeasonalPlan, evaluate, radial_topologies
from phasetwin.plan.seasonal.compare import FeederHeads, compare_seasonal
from phasetwin.plan.seasonal.replay import scenario_states
from phasetwin.plan.seasonal.study import CaseRow, plan_file
from phasetwin.run.replay import replay
from phasetwin.run.scenario import Scenario
from twin.errors import ScenarioError
from twin.loaders import cigre_mv
from twin.powerflow import Engine, create_powerflow

CASE4_PLAN = Path(__file__).parents[2] / "data" / "seasonal" / "plan-case4-milp.json"
# Monday 27 Feb to Monday 6 Mar 2023: winter → spring on 1 March, weekdays and a weekend, days and nights.
WEEK = (datetime(2023, 2, 27, tzinfo=UTC), datetime(2023, 3, 6, tzinfo=UTC))


@pytest.fixture(scope="module")
def switching_plan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Sixteen different radial topologies (one per scenario) and random schemes, as the planner writes them."""
    net = cigre_mv_seasonal()
    tops = radial_topologies(net)
    rng = np.random.default_rng(7)
    plan = SeasonalPlan(np.arange(16) * 11 % len(tops), rng.integers(0, 6, (4, len(net.loads))))
    row = CaseRow("case 1", "test", 0.0, None, evaluate(net, tops, plan), plan, 0.0)
    path = tmp_path_factory.mktemp("plan") / "plan.json"
    path.write_text(plan_file(net, tops, row).model_dump_json(indent=2), encoding="utf-8")
    return path


def _scenario(plan: Path | None, out: Path, period: tuple[datetime, datetime] = WEEK) -> Scenario:
    return Scenario(feeder="cigre-mv", start_utc=period[0], end_utc=period[1], tick_s=3600, out=out,
                    seasonal_plan=plan)


def test_every_applied_topology_is_radial_and_supplies_every_bus(switching_plan: Path, tmp_path: Path) -> None:
    result = replay(_scenario(switching_plan, tmp_path))
    feeder = cigre_mv.load_feeder()
    log = pd.read_csv(tmp_path / "switching.csv")
    # a step at every scenario change: the start, 07:00 and 19:00 every day, and at midnight when the season
    # (1 March) or weekday/weekend (Saturday 4 March) changes
    assert log.time_utc.tolist()[:3] == ["2023-02-27T00:00:00+00:00", "2023-02-27T07:00:00+00:00",
                                         "2023-02-27T19:00:00+00:00"]
    assert len(log) == 1 + 2 * 7 + 2
    plan = json.loads(switching_plan.read_text())
    assert len(set(log.open_lines)) >= 4
    for row in log.itertuples():
        open_lines = set(row.open_lines.split(";"))
        graph = nx.Graph()
        graph.add_nodes_from(feeder.bus_ids())
        graph.add_edge(feeder.transformer.hv_bus, feeder.transformer.lv_bus)
        graph.add_edges_from((ln.from_bus, ln.to_bus) for ln in feeder.lines if ln.id not in open_lines)
        assert nx.is_tree(graph), f"{row.time_utc}: {row.open_lines}"
        # the twin applied what the plan says for that scenario, lines named by their end buses
        want = {"-".join(sorted(t.split("-"))) for t in plan["open_lines"][row.label]}
        got = {"-".join(sorted((ln.from_bus, ln.to_bus))) for ln in feeder.lines if ln.id in open_lines}
        assert got == want
    # connections change at the season boundary (1 March 00:00 UTC), and match the plan's season
    season_change = log[log.time_utc == "2023-03-01T00:00:00+00:00"]
    assert season_change.label.tolist() == ["spring-weekday-night"]
    for row in (log.iloc[0], season_change.iloc[0]):
        season = row.label.split("-")[0]
        conns = dict(kv.split("=") for kv in row.connections.split(";"))
        assert {cigre_mv.customer_id(k): v for k, v in plan["phase_connection"][season].items()}.items() \
            <= conns.items()
    # the power flow saw the topology: an open line carried no current in the ticks it was open
    line_index = {ln.id: e for e, ln in enumerate(feeder.lines)}
    ticks = [*log.tick, result.summary.ticks]
    for row, end in zip(log.itertuples(), ticks[1:], strict=True):
        for line_id in row.open_lines.split(";"):
            assert (result.recorder.i_max_ka[row.tick:end, line_index[line_id]] == 0).all()
    assert result.summary.powerflow_failures == 0


def test_a_plan_with_a_loop_is_refused_naming_time_and_lines(switching_plan: Path, tmp_path: Path) -> None:
    plan = json.loads(switching_plan.read_text())
    plan["open_lines"]["winter-weekday-day"] = ["Bus 6-Bus 7", "Bus 11-Bus 4"]  # S1 (14-8) closed: a loop
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(plan), encoding="utf-8")
    with pytest.raises(ScenarioError, match=r"at 2023-02-27T07:00:00\+00:00 \(tick 7, winter-weekday-day\), "
                                            r"lines open Line 11-4, Line 6-7: line '.*'-'.*' closes a loop"):
        replay(_scenario(bad, tmp_path / "run"))


def test_twin_confirms_the_planners_direction(tmp_path: Path) -> None:
    """The case-4 MILP plan (tests/data) against the network as connected: a weekday in each season."""
    days = [datetime(2023, m, 12, tzinfo=UTC) for m in (1, 4, 7, 10)]  # Thursdays, Wednesdays
    before_loss = after_loss = 0.0
    before_i_n = after_i_n = 0.0
    for day in days:
        out = tmp_path / f"{day:%m}"
        c = compare_seasonal(_scenario(CASE4_PLAN, out, (day, day + pd.Timedelta(days=1))))
        before_loss += c.before_figures.e_loss_kwh
        after_loss += c.after_figures.e_loss_kwh
        before_i_n = max(before_i_n, c.before_figures.i_n_head_max_a)
        after_i_n = max(after_i_n, c.after_figures.i_n_head_max_a)
        assert "seasonal plan, after" in (out / "before_after_losses.svg").read_text()
        assert (out / "before_after_neutral.svg").exists()
    planned = json.loads(CASE4_PLAN.read_text())
    original = cigre_mv_seasonal()
    ref = evaluate(original, radial_topologies(original),
                   SeasonalPlan(np.zeros(16, dtype=int), np.zeros((4, len(original.loads)), dtype=int)))
    assert planned["e_loss_kwh"] < ref.e_loss_kwh and planned["i_n_a"] < ref.i_n_a  # the planner's claim
    assert after_loss < 0.97 * before_loss
    assert after_i_n < 0.8 * before_i_n


def test_twin_agrees_with_the_planner_per_scenario() -> None:
    """The planner's 16 scenario-mean states on the twin (both engines, one batch switching topology per state):
    feeder-line losses within 10 % of the surrogate's (the twin is lower: its source is at 1.03 p.u., the
    surrogate at nominal voltage), head neutral currents within 10 %."""
    net = cigre_mv_seasonal()
    tops = radial_topologies(net)
    rng = np.random.default_rng(1)
    plan = SeasonalPlan(np.arange(16) * 11 % len(tops), rng.integers(0, 6, (4, len(net.loads))))
    planner = evaluate(net, tops, plan)
    feeder = cigre_mv.load_feeder()
    p, q, closed = scenario_states(net, tops, plan, feeder=feeder)
    assert len({tuple(row) for row in closed}) == 16
    pgm = create_powerflow(feeder, engine=Engine.PGM).solve(p_kw=p, q_kvar=q, line_closed=closed)
    ref = create_powerflow(feeder, engine=Engine.PANDAPOWER).solve(p_kw=p, q_kvar=q, line_closed=closed)
    assert np.abs(pgm.vm_pu - ref.vm_pu).max() < 1e-6
    assert np.abs(pgm.i_n_ka - ref.i_n_ka).max() < 1e-6
    h = FeederHeads.of(feeder)
    station_kw = (h.station_r_ohm[None, :, None] * (pgm.i_ka[:, h.station_lines] * 1000) ** 2).sum(axis=(1, 2)) / 1e3
    loss = pgm.loss_kw - station_kw
    assert np.abs(loss / planner.loss_kw - 1).max() < 0.10
    i_n = pgm.i_n_ka[:, h.head_lines].max(axis=1) * 1000
    assert np.abs(i_n / planner.i_n_scenario_a - 1).max() < 0.10


def test_replay_figures_cached_by_content(tmp_path: Path) -> None:
    """``seasonal_figures`` with a cache: the same plan written elsewhere replays nothing and gives the same
    figures as ``compare_seasonal``; a plan changed by one phase connection has another key and is replayed."""
    from phasetwin.plan.seasonal.compare import replay_key, seasonal_figures

    day = (datetime(2023, 1, 12, tzinfo=UTC), datetime(2023, 1, 12, 6, tzinfo=UTC))
    cache = tmp_path / "cache"
    first = seasonal_figures(_scenario(CASE4_PLAN, tmp_path / "a", day), cache=cache)
    assert first.replayed == 2
    copy = tmp_path / "elsewhere" / "plan.json"
    copy.parent.mkdir()
    copy.write_text(CASE4_PLAN.read_text(encoding="utf-8"), encoding="utf-8")
    again = seasonal_figures(_scenario(copy, tmp_path / "b", day), cache=cache)
    assert again.replayed == 0
    assert (again.before_figures, again.after_figures) == (first.before_figures, first.after_figures)
    full = compare_seasonal(_scenario(CASE4_PLAN, tmp_path / "c", day))
    assert full.after_figures == first.after_figures and full.before_figures == first.before_figures
    plan = json.loads(CASE4_PLAN.read_text(encoding="utf-8"))
    season = plan["phase_connection"]["winter"]
    load = sorted(season)[0]
    season[load] = season[load][1:] + season[load][:1]  # the load's terminals rotated: another plan
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps(plan), encoding="utf-8")
    assert replay_key(_scenario(changed, tmp_path / "d", day)) != replay_key(_scenario(copy, tmp_path / "e", day))
    other = seasonal_figures(_scenario(changed, tmp_path / "d", day), cache=cache)
    assert other.replayed == 1  # the no-plan replay is the same one
    assert other.after_figures != first.after_figures
