"""Study strategies on a static re-phasing (issue 28, item 6): planned by the study (yearly, seasonal) or read
from a plan file, keyed by the plan's content; the customer moves a year they cost in the comparison; and the
fleet's placement key.

Liège (the shared data), two 2-hour windows at 900 s on 29 February and 1 September (so that the study's span
holds all four seasons), no devices, small node budgets: the planner's result is not what is tested, its use is.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from controllers.online.settings import Strategy
from devices.fleet import Placement
from phasetwin.studies.grid import task_grid
from phasetwin.studies.report import comparison
from phasetwin.studies.results import read_results
from phasetwin.studies.run import run_study
from phasetwin.studies.spec import Season, read_study
from phasetwin.studies.static_plans import StaticPlans
from twin.errors import ScenarioError

HEAD = """tick_s = 900
[[feeders]]
feeder = "liege-lv"
[[periods]]
start_utc = 2016-02-29T17:00:00Z
end_utc = 2016-02-29T19:00:00Z
[[periods]]
start_utc = 2016-09-01T17:00:00Z
end_utc = 2016-09-01T19:00:00Z
[[fleets]]
psd = 0
[[strategies]]
strategy = "none"
"""
PLANNED = HEAD + """[[strategies]]
strategy = "none"
rephase = { plan = "yearly", node_limit = 20, starts = 0 }
[[strategies]]
strategy = "none"
rephase = { plan = "seasonal", node_limit = 20, starts = 0 }
"""


def _moves(before: dict[str, str], after: dict[str, str]) -> int:
    return sum(1 for c, p in after.items() if before.get(c, p) != p)


@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("static")
    (folder / "study.toml").write_text(PLANNED)
    run_study(folder / "study.toml", workers=0)
    return folder


def test_each_static_arm_replays_its_own_plan_and_counts_its_moves_a_year(planned: Path) -> None:
    spec, study_dir = read_study(planned / "study.toml")
    tasks = task_grid(spec, study_dir=study_dir)
    by = {(t.strategy, t.scenario.start_utc.month): t for t in tasks if t.scenario.start_utc is not None}
    assert by[("none", 2)].scenario.rephase is None
    yearly = by[("static-yearly", 2)].scenario.rephase
    assert yearly is not None and yearly == by[("static-yearly", 9)].scenario.rephase
    winter, autumn = by[("static-seasonal", 2)].scenario.rephase, by[("static-seasonal", 9)].scenario.rephase
    assert winter is not None and autumn is not None and winter != autumn
    # The moves a year, recounted from the plan files themselves (their initial and planned configurations).
    plan = json.loads(yearly.read_text())
    assert by[("static-yearly", 2)].plan_operations_per_year == _moves(plan["initial"], plan["configurations"])
    seasons = {}
    for path in sorted((study_dir / "plans").glob("*.json")):
        if path.name.endswith(".report.json"):
            continue
        report = json.loads(path.with_suffix(".report.json").read_text())
        seasons[report["what"].split(", ")[-1]] = json.loads(path.read_text())["configurations"]
    order = [seasons[f"{s} in the span"] for s in ("winter", "spring", "summer", "autumn")]
    cyclic = sum(_moves(a, b) for a, b in zip(order, [*order[1:], order[0]], strict=True))
    assert by[("static-seasonal", 2)].plan_operations_per_year == cyclic
    table = comparison(read_results(study_dir)).set_index("strategy")
    assert table.loc["static-seasonal", "operations_per_year"] == cyclic
    assert table.loc["static-yearly", "operations_per_year"] == _moves(plan["initial"], plan["configurations"])
    assert table.loc["none", "operations_per_year"] == 0
    assert (table["periods_compared"] == 2).all() and (table["failed"] == 0).all()


def test_the_replay_of_a_static_arm_runs_on_the_re_phased_feeder(planned: Path) -> None:
    spec, study_dir = read_study(planned / "study.toml")
    task = next(t for t in task_grid(spec, study_dir=study_dir) if t.strategy == "static-yearly")
    plan = json.loads(task.scenario.rephase.read_text()) if task.scenario.rephase is not None else {}
    recorded = (task.scenario.out / "scenario.toml").read_text()
    assert str(task.scenario.rephase) in recorded
    results = read_results(study_dir)
    p_unb = results.groupby("strategy")["p_unb_kwh"].sum()
    if _moves(plan["initial"], plan["configurations"]):  # a plan that moves someone changes the physics
        assert p_unb["static-yearly"] != pytest.approx(p_unb["none"], rel=1e-9)


def test_a_plan_file_is_keyed_by_its_content_not_its_path(planned: Path, tmp_path: Path) -> None:
    spec, study_dir = read_study(planned / "study.toml")
    task = next(t for t in task_grid(spec, study_dir=study_dir) if t.strategy == "static-yearly")
    assert task.scenario.rephase is not None
    copy = tmp_path / "elsewhere" / "my-plan.json"
    copy.parent.mkdir()
    shutil.copy(task.scenario.rephase, copy)
    (tmp_path / "study.toml").write_text(
        HEAD + f'[[strategies]]\nstrategy = "none"\nname = "static-yearly"\nrephase = {{ file = "{copy}" }}\n')
    spec2, _ = read_study(tmp_path / "study.toml")
    again = {t.period: t.key for t in task_grid(spec2, study_dir=tmp_path / "s") if t.strategy == "static-yearly"}
    first = {t.period: t.key for t in task_grid(spec, study_dir=study_dir) if t.strategy == "static-yearly"}
    assert again == first
    copy.write_text(copy.read_text().replace('"A"', '"B"', 1))  # another plan: another key
    changed = {t.period: t.key for t in task_grid(spec2, study_dir=tmp_path / "s") if t.strategy == "static-yearly"}
    assert set(changed.values()).isdisjoint(first.values())


def test_a_period_across_a_season_change_is_refused_with_its_seasons() -> None:
    plans = StaticPlans(by_season={Season.WINTER: Path("w.json"), Season.SPRING: Path("s.json"),
                                   Season.SUMMER: Path("s2.json"), Season.AUTUMN: Path("a.json")},
                        operations_per_year=0)
    assert plans.plan_for(datetime(2016, 2, 1, tzinfo=UTC), datetime(2016, 3, 1, tzinfo=UTC),
                          label="t") == Path("w.json")
    with pytest.raises(ScenarioError, match="spans winter and spring"):
        plans.plan_for(datetime(2016, 2, 28, tzinfo=UTC), datetime(2016, 3, 2, tzinfo=UTC), label="t")


def test_the_fleet_placement_reaches_the_tasks_and_their_keys(tmp_path: Path) -> None:
    (tmp_path / "study.toml").write_text(HEAD.replace("psd = 0", "psd = 4\n[[fleets]]\npsd = 4\n"
                                                      "placement = \"impact\""))
    spec, study_dir = read_study(tmp_path / "study.toml")
    tasks = [t for t in task_grid(spec, study_dir=study_dir) if t.scenario.controller.strategy is Strategy.NONE]
    placements = {t.fleet: t.scenario.fleet.placement for t in tasks}
    assert placements == {"4psd-0sts-0pess": Placement.FARTHEST, "4psd-0sts-0pess-impact": Placement.IMPACT}
    assert len({t.key for t in tasks}) == len(tasks) == 4


def test_the_pareto_front_is_the_set_no_other_strategy_dominates() -> None:
    import itertools

    import numpy as np
    import pandas as pd

    from phasetwin.studies.tables import pareto_front

    rng = np.random.default_rng(5)
    table = pd.DataFrame({"feeder": "f", "fleet": "x", "strategy": [f"s{i}" for i in range(9)],
                          "p_unb_reduction_pct": rng.integers(0, 5, 9).astype(float),
                          "operations_per_year": rng.integers(0, 5, 9).astype(float)})
    brute = []
    for i, a in table.iterrows():  # brute force: dominated by some other row in both, strictly in one
        dominated = any(b["p_unb_reduction_pct"] >= a["p_unb_reduction_pct"]
                        and b["operations_per_year"] <= a["operations_per_year"]
                        and (b["p_unb_reduction_pct"], b["operations_per_year"])
                        != (a["p_unb_reduction_pct"], a["operations_per_year"])
                        for j, b in table.iterrows() if j != i)
        brute.append(not dominated)
    assert pareto_front(table).tolist() == brute
    assert any(brute) and not all(brute)
    assert list(itertools.compress(table["strategy"], brute)) == table["strategy"][pareto_front(table)].tolist()


def test_study_tables_puts_the_comparison_into_the_page_and_draws_the_front(planned: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from phasetwin.cli.main import app
    from phasetwin.studies.report import write_comparison

    _, study_dir = read_study(planned / "study.toml")
    table = comparison(read_results(study_dir))
    write_comparison(study_dir, table)
    page = tmp_path / "page.md"
    page.write_text("# Page\n\ntext before\n<!-- study-table:dvs -->\nold\n<!-- /study-table:dvs -->\ntext after\n")
    result = CliRunner().invoke(app, ["study", "tables", str(study_dir), "--page", str(page), "--name", "dvs"])
    assert result.exit_code == 0, result.output
    body = page.read_text()
    assert "old" not in body and body.startswith("# Page\n\ntext before\n") and body.endswith("text after\n")
    rows = {line.split(" | ")[1]: line for line in body.splitlines() if line.startswith("| liege")}
    assert set(rows) == {"none", "static-yearly", "static-seasonal"}
    moves = int(table.set_index("strategy").loc["static-seasonal", "plan_operations_per_year"])
    assert rows["static-seasonal"].split(" | ")[6] == str(moves)  # the re-phasing moves a year column
    assert (tmp_path / "dvs-pareto.svg").read_text().lstrip().startswith(("<?xml", "<svg"))
    missing = CliRunner().invoke(app, ["study", "tables", str(study_dir), "--page", str(page), "--name", "other"])
    assert missing.exit_code != 0 and "study-table:other" in missing.output
    import phasetwin  # the Python API writes the same page

    again = tmp_path / "api" / "page.md"
    again.parent.mkdir()
    again.write_text("<!-- study-table:dvs -->\n<!-- /study-table:dvs -->\n")
    assert phasetwin.study_tables(study_dir=study_dir, page=again, name="dvs") == again.parent / "dvs-pareto.svg"
    assert again.read_text().strip() in body
