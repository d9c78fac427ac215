"""Every panel query of the Grafana dashboard and every alert rule, run against a real InfluxDB 1.x holding a
replay written by ``phasetwin replay --influx``: each returns the series the panel shows, with the values of the
run folder (Parquet), so a panel that names a measurement, field or tag the recorder does not write fails. The
replay's no-control reference is written too, tagged ``<run>-no-control``; the panels' dashed reference series
are compared with its folder.

Grafana's macros are replaced as Grafana does: ``$feeder``/``$run`` by the variables, ``$timeFilter`` by the
run's simulated period, ``$__interval`` by the tick (60 s), so each point of a series is one tick.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from support.servers import InfluxDBServer

from twin.feeders import open_feeder

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "docker" / "grafana" / "dashboards" / "phasetwin.json"
ALERTS = ROOT / "docker" / "grafana" / "provisioning" / "alerting" / "phasetwin.yaml"
PHASETWIN = str(Path(sys.executable).with_name("phasetwin"))
START, END = "2024-01-15T06:00:00Z", "2024-01-15T08:00:00Z"
_SELECT = re.compile(r'SELECT\s+(\w+)\("(\w+)"\)(?:\s*\*\s*([\d.]+))?.*?FROM\s+"(\w+)"', re.S)
_GROUP_TAGS = re.compile(r'"(\w+)"')
PHASE_INDEX = {"A": 0, "B": 1, "C": 2}

Series = dict[tuple[tuple[str, str], ...], np.ndarray]


@pytest.fixture(scope="module")
def recorded(influxdb: InfluxDBServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    db = f"dash_{uuid.uuid4().hex[:8]}"
    influxdb.query(f'CREATE DATABASE "{db}"')
    out = tmp_path_factory.mktemp("dashboard") / "run"
    done = subprocess.run(
        [PHASETWIN, "replay", "--start", START[:16], "--end", END[:16], "--psd", "10", "--pess", "2",
         "--controller", "greedy", "--out", str(out),
         "--influx", f"influxdb+v1://{influxdb.host}:{influxdb.port}/{db}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((out / "summary.json").read_text())
    return {"db": db, "out": out, "summary": summary, "stdout": done.stdout}


def _run_query(influxdb: InfluxDBServer, recorded: dict[str, Any], query: str, *, interval: str = "60s") -> Series:
    text = (query.replace("$feeder", recorded["summary"]["feeder"]).replace("${run}", recorded["summary"]["run_id"])
            .replace("$run", recorded["summary"]["run_id"])
            .replace("$timeFilter", f"time >= '{START}' AND time < '{END}'").replace("$__interval", interval))
    answer = influxdb.query(text, recorded["db"], epoch="s")
    series: Series = {}
    for result in answer["results"]:
        for s in result.get("series", []):
            key = tuple(sorted((s.get("tags") or {}).items()))
            series[key] = np.array([np.nan if row[1] is None else row[1] for row in s["values"]], dtype=float)
    return series


def _targets() -> list[tuple[str, str, str]]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [(p["title"], t["refId"], t["query"]) for p in dashboard["panels"] for t in p["targets"]]


def _group_tags(query: str) -> list[str]:
    group = query.split("GROUP BY", 1)[1] if "GROUP BY" in query else ""
    return [t for t in _GROUP_TAGS.findall(group)]


def _expected(measurement: str, field: str, out: Path, summary: dict[str, Any]) -> Callable[[dict[str, str]],
                                                                                            np.ndarray | None]:
    """What the run folder says the series of (measurement, field) with these tags holds, one value per tick;
    None: checked for presence only."""
    metrics = pd.read_parquet(out / "metrics.parquet")
    transformer = pd.read_parquet(out / "transformer.parquet")
    devices = pd.read_parquet(out / "devices.parquet").sort_values(["device_id", "time_utc"])
    loading = pd.read_parquet(out / "loading.parquet")
    feeder = open_feeder(summary["feeder"]).load_feeder()
    rating_ka = {ln.id: ln.max_i_ka for ln in feeder.lines}

    def device(tags: dict[str, str], column: str) -> np.ndarray:
        rows = devices[devices.device_id == tags["device"]]
        if column == "phase_index":
            return rows["phase"].map(PHASE_INDEX).to_numpy(dtype=float)
        return rows[column].to_numpy(dtype=float)

    table: dict[tuple[str, str], Callable[[dict[str, str]], np.ndarray | None]] = {
        ("transformer", "p_kw"): lambda t: transformer[f"p_{t['phase'].lower()}_kw"].to_numpy(),
        ("network", "p_unb_kw"): lambda t: metrics.filter(like="p_unb_kw_f").sum(axis=1).to_numpy(),
        ("unbalance", "p_unb_kw"): lambda t: metrics[f"p_unb_kw_f{t['lv_feeder']}"].to_numpy(),
        ("voltage_band", "vm_min_pu"): lambda t: metrics[f"vm_min_{t['phase'].lower()}_pu"].to_numpy(),
        ("voltage_band", "vm_max_pu"): lambda t: metrics[f"vm_max_{t['phase'].lower()}_pu"].to_numpy(),
        ("network", "i_n_max_a"): lambda t: metrics["i_n_max_a"].to_numpy(),
        ("network", "vuf_max_pct"): lambda t: metrics["vuf_max_pct"].to_numpy(),
        ("line_current", "i_ka"): lambda t: None if t["phase"] == "N" else (
            loading[f"head_{t['line']}_{t['phase'].lower()}_pct"].to_numpy() / 100 * rating_ka[t["line"]]),
        ("loading", "trafo_pct"): lambda t: loading[f"trafo_{t['phase'].lower()}_pct"].to_numpy(),
        ("loading", "line_max_pct"): lambda t: loading[f"line_max_{t['phase'].lower()}_pct"].to_numpy(),
        ("device", "phase_index"): lambda t: device(t, "phase_index"),
        ("device", "operations_total"): lambda t: device(t, "operations_total"),
        ("device", "rejections"): lambda t: device(t, "rejections"),
        ("device", "e_kwh"): lambda t: device(t, "e_kwh"),
        ("twin", "lateness_s"): lambda t: np.zeros(summary["ticks"]),
        ("twin", "max_lateness_s"): lambda t: np.zeros(summary["ticks"]),
        ("controller", "solve_s"): lambda t: None,
        ("controller", "fallbacks"): lambda t: None,
    }
    if (measurement, field) not in table:
        raise AssertionError(f"the test does not know what {measurement}.{field} should hold: add it here")
    return table[(measurement, field)]


@pytest.mark.slow
@pytest.mark.parametrize(("title", "ref", "query"), _targets(), ids=[f"{t}-{r}" for t, r, _ in _targets()])
def test_every_panel_query_returns_the_run_folders_series(influxdb: InfluxDBServer, recorded: dict[str, Any],
                                                          title: str, ref: str, query: str) -> None:
    got = _run_query(influxdb, recorded, query)
    assert got, f"{title} {ref}: no series for {query!r}"
    out, summary = recorded["out"], recorded["summary"]
    if "-no-control'" in query:  # the reference run the replay wrote beside it, tagged <run>-no-control
        out = out / "no-control"
        summary = json.loads((out / "summary.json").read_text())
        assert summary["run_id"] == f"{recorded['summary']['run_id']}-no-control"
    if title == "Run health":
        ((_, values),) = got.items()
        field = _SELECT.search(query).group(2)  # type: ignore[union-attr]
        expected = {"overruns": summary["overruns"], "readings_missing": summary["readings_missing"],
                    "readings_rejected": summary["readings_rejected"], "deadletters": 0,
                    "points_dropped": summary["recorder"]["dropped"] + summary["recorder"]["rejected"]}
        assert values.tolist() == [expected[field]]
        return
    match = _SELECT.search(query)
    assert match, query
    _, field, scale, measurement = match.groups()
    expect = _expected(measurement, field, out, summary)
    tags = _group_tags(query)
    for key, values in got.items():
        t = dict(key)
        assert set(t) == set(tags), (title, t)
        want = expect(t)
        if want is None:
            assert np.isfinite(values).any(), (title, t)
            continue
        if scale is not None:
            want = want * float(scale)
        ok = np.isfinite(values)
        assert ok.sum() == np.isfinite(want).sum() == summary["ticks"] or "kind" in query, (title, t)
        np.testing.assert_allclose(values[ok], want[np.isfinite(want)], rtol=1e-5, atol=1e-6,
                                   err_msg=f"{title} {ref} {t}")
    if "device" in tags:  # every device of the run has its series (PESS only where the panel filters on them)
        devices = pd.read_parquet(out / "devices.parquet")
        wanted = devices if "'pess'" not in query else devices[devices.kind == "pess"]
        assert {dict(k)["device"] for k in got} == set(wanted.device_id)


def test_the_loading_panel_shows_the_three_phases_of_the_transformer_and_the_most_loaded_line() -> None:
    queries = [q for title, _, q in _targets() if title == "Loading, % of rating"]
    assert [_SELECT.search(q).groups()[1:] for q in queries] == [  # type: ignore[union-attr]
        ("trafo_pct", None, "loading"), ("line_max_pct", None, "loading")]
    assert all(_group_tags(q) == ["phase"] for q in queries)


def test_a_query_naming_what_the_recorder_does_not_write_returns_nothing(influxdb: InfluxDBServer,
                                                                         recorded: dict[str, Any]) -> None:
    (_, _, query) = next(t for t in _targets() if t[0] == "Transformer load per phase")
    assert _run_query(influxdb, recorded, query)
    assert _run_query(influxdb, recorded, query.replace('"p_kw"', '"p_kW"')) == {}
    assert _run_query(influxdb, recorded, query.replace('"transformer"', '"trafo"')) == {}


def test_the_replay_prints_and_records_the_dashboard_url_of_its_period(recorded: dict[str, Any]) -> None:
    url = recorded["summary"]["recorder"]["dashboard_url"]
    start, end = (int(pd.Timestamp(t).timestamp() * 1000) for t in (START, END))
    assert f"from={start}" in url and f"to={end}" in url and f"var-run={recorded['summary']['run_id']}" in url
    assert url in "".join(recorded["stdout"].split())


def _alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [r for g in doc["groups"] for r in g["rules"]]


def test_alert_rules_query_what_the_recorder_writes_and_fire_as_the_run_folder_says(
        influxdb: InfluxDBServer, recorded: dict[str, Any]) -> None:
    metrics = pd.read_parquet(recorded["out"] / "metrics.parquet")
    # The value each rule reduces its query to, from the run folder (independently of the database).
    extreme = {
        "phasetwin-voltage-low": float(metrics.filter(like="vm_min_").to_numpy().min()),
        "phasetwin-voltage-high": float(metrics.filter(like="vm_max_").to_numpy().max()),
        "phasetwin-vuf": float(metrics["vuf_max_pct"].max()),
        "phasetwin-neutral": float(metrics["i_n_max_a"].max()),
        "phasetwin-controller-silent": float(recorded["summary"]["controller"]["periods"]),
    }
    rules = _alert_rules()
    assert sorted(r["uid"] for r in rules) == sorted(extreme)
    reducers = {"min": np.nanmin, "max": np.nanmax, "last": lambda v: v[np.isfinite(v)][-1]}
    for rule in rules:
        query = next(d for d in rule["data"] if d["refId"] == "A")["model"]["query"]
        reduce_ = next(d for d in rule["data"] if d["refId"] == "B")["model"]["reducer"]
        (cond,) = next(d for d in rule["data"] if d["refId"] == "C")["model"]["conditions"]
        op, (threshold,) = cond["evaluator"]["type"], cond["evaluator"]["params"]
        got = _run_query(influxdb, recorded, query)
        assert got, f"{rule['uid']}: no series"
        assert all(dict(k)["feeder"] == recorded["summary"]["feeder"] for k in got)
        reduced = [float(reducers[reduce_](v)) for v in got.values()]
        # over the whole period, the worst series is the run folder's extreme
        worst = min(reduced) if op == "lt" else max(reduced)
        if rule["uid"] != "phasetwin-controller-silent":
            assert worst == pytest.approx(extreme[rule["uid"]], rel=1e-6), rule["uid"]
        else:
            assert worst == extreme[rule["uid"]]
        firing = worst < threshold if op == "lt" else worst > threshold
        assert firing == (extreme[rule["uid"]] < threshold if op == "lt" else extreme[rule["uid"]] > threshold)


@pytest.mark.slow
def test_a_live_run_with_wall_time_base_lands_in_a_now_range_and_never_ahead_of_the_clock(
        influxdb: InfluxDBServer, tmp_path: Path) -> None:
    db = f"wall_{uuid.uuid4().hex[:8]}"
    influxdb.query(f'CREATE DATABASE "{db}"')
    before_s = pd.Timestamp.now(tz="UTC").timestamp()
    done = subprocess.run(
        [PHASETWIN, "replay", "--start", "2024-01-15T06:00", "--end", "2024-01-15T06:10", "--psd", "0", "--pess",
         "0", "--controller", "none", "--speed", "60", "--time-base", "wall", "--out", str(tmp_path / "run"),
         "--influx", f"influxdb+v1://{influxdb.host}:{influxdb.port}/{db}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    after_s = pd.Timestamp.now(tz="UTC").timestamp()
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    offset = summary["recorder"]["time_offset_s"]
    start_s = pd.Timestamp("2024-01-15T06:00Z").timestamp()
    assert abs(start_s + offset - before_s) < 30
    query = (f'SELECT "p_kw" FROM "transformer" WHERE "run" = \'{summary["run_id"]}\' AND time > now() - 1h '
             'GROUP BY "phase"')
    answer = influxdb.query(query, db, epoch="s")
    stamps = {s["tags"]["phase"]: [row[0] for row in s["values"]] for s in answer["results"][0]["series"]}
    assert sorted(stamps) == ["A", "B", "C"]
    # One tick of 60 s per wall second at --speed 60: the ticks one second apart from the run's wall start,
    # the last no later than the wall clock when the run ended.
    assert stamps["A"] == [start_s + offset + k for k in range(10)]
    assert stamps["A"][-1] <= after_s
    url = summary["recorder"]["dashboard_url"]
    assert f"from={int((start_s + offset) * 1000)}" in url and f"to={int((start_s + offset + 10) * 1000)}" in url


def test_wall_time_base_refuses_a_speed_of_more_than_one_tick_per_second(influxdb: InfluxDBServer,
                                                                          tmp_path: Path) -> None:
    done = subprocess.run(
        [PHASETWIN, "replay", "--start", "2024-01-15T06:00", "--end", "2024-01-15T06:10", "--psd", "0", "--pess",
         "0", "--controller", "none", "--speed", "600", "--time-base", "wall", "--out", str(tmp_path / "run"),
         "--influx", f"influxdb+v1://{influxdb.host}:{influxdb.port}/wall_refused"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert "--time-base wall at --speed 600 runs 10 ticks of 60 s per wall second" in " ".join(done.stderr.split())
