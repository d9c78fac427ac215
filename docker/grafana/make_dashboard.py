"""Writes docker/grafana/dashboards/phasetwin.json: every panel an InfluxQL query over the selected feeder and run.

InfluxQL is what InfluxDB 1.x answers natively, 2.x through its DBRP mapping (every bucket has a virtual one,
database = bucket name) and 3.x natively; Flux only 2.x. Run after changing a panel:
``python docker/grafana/make_dashboard.py``; tests/docker/test_dashboard_queries.py runs every query against a
real InfluxDB 1.x.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DS = {"type": "influxdb", "uid": "phasetwin-influxdb"}
RUN = "\"feeder\" = '$feeder' AND \"run\" = '$run' AND $timeFilter"


REFERENCE = "\"run\" = '${run}-no-control'"
"""The no-control reference a replay writes beside its run (run tag ``<run>-no-control``), drawn dashed."""
DASHED = {"matcher": {"id": "byRegexp", "options": "/^no control/"},
          "properties": [{"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}}]}


def reference(query: str) -> str:
    return query.replace("\"run\" = '$run'", REFERENCE)


def q(agg: str, field: str, measurement: str, group: str = "", where: str = "", fill: str = "none") -> str:
    by = f"time($__interval){', ' + group if group else ''}"
    extra = f" AND {where}" if where else ""
    return f'SELECT {agg}("{field}") FROM "{measurement}" WHERE {RUN}{extra} GROUP BY {by} fill({fill})'


# title, panel type, unit, [(query, alias)], extra field config
PANELS: list[tuple[str, str, str, list[tuple[str, str]], dict[str, Any]]] = [
    ("Transformer load per phase", "timeseries", "kwatt",
     [(q("mean", "p_kw", "transformer", '"phase"'), "phase $tag_phase"),
      (reference(q("mean", "p_kw", "transformer", '"phase"')), "no control, phase $tag_phase")], {}),
    ("Phase unbalance P_unb", "timeseries", "kwatt",
     [(q("mean", "p_unb_kw", "network"), "total"),
      (q("mean", "p_unb_kw", "unbalance", '"lv_feeder"'), "LV feeder $tag_lv_feeder"),
      (reference(q("mean", "p_unb_kw", "network")), "no control, total")], {}),
    ("Voltage band per phase", "timeseries", "none",
     [(q("min", "vm_min_pu", "voltage_band", '"phase"'), "min $tag_phase"),
      (q("max", "vm_max_pu", "voltage_band", '"phase"'), "max $tag_phase")], {}),
    ("Neutral current (worst line)", "timeseries", "amp",
     [(q("max", "i_n_max_a", "network"), "I_N max"),
      (reference(q("max", "i_n_max_a", "network")), "no control, I_N max")], {}),
    ("Voltage unbalance factor (worst bus)", "timeseries", "percent",
     [(q("max", "vuf_max_pct", "network"), "VUF max")], {}),
    ("Feeder-head line current", "timeseries", "amp",
     [('SELECT mean("i_ka") * 1000 FROM "line_current" WHERE ' + RUN
       + ' GROUP BY time($__interval), "line", "phase" fill(none)', "$tag_line $tag_phase")], {}),
    ("Loading, % of rating", "timeseries", "percent",
     [(q("max", "trafo_pct", "loading", '"phase"'), "transformer $tag_phase"),
      (q("max", "line_max_pct", "loading", '"phase"'), "most loaded line $tag_phase")], {}),
    ("Device phases", "state-timeline", "none",
     [(q("last", "phase_index", "device", '"device"', fill="previous"), "$tag_device")], {}),
    ("Switch operations per device", "timeseries", "none",
     [(q("last", "operations_total", "device", '"device"'), "$tag_device")], {}),
    ("Rejected commands per device", "timeseries", "none",
     [(q("last", "rejections", "device", '"device"'), "$tag_device")], {}),
    ("Battery energy (PESS)", "timeseries", "kwatth",
     [(q("mean", "e_kwh", "device", '"device"', "\"kind\" = 'pess'"), "$tag_device")], {}),
    ("Controller solve time", "timeseries", "s",
     [(q("max", "solve_s", "controller", '"controller"'), "$tag_controller")], {}),
    ("Controller fallbacks", "timeseries", "none",
     [(q("last", "fallbacks", "controller", '"controller"'), "$tag_controller")], {}),
    ("Twin lateness", "timeseries", "s",
     [(q("max", "lateness_s", "twin"), "lateness"), (q("last", "max_lateness_s", "twin"), "max so far")], {}),
    ("Run health", "stat", "none",
     [(f'SELECT last("{f}") AS "{f}" FROM "twin" WHERE {RUN}', f) for f in
      ("overruns", "readings_missing", "readings_rejected", "deadletters", "points_dropped")], {}),
]


def panel(i: int, title: str, kind: str, unit: str, targets: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "id": i + 1, "type": kind, "title": title, "datasource": DS,
        "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
        "fieldConfig": {"defaults": {"unit": unit},
                        "overrides": [DASHED] if any(a.startswith("no control") for _, a in targets) else []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}},
        "targets": [{"refId": chr(ord("A") + k), "datasource": DS, "rawQuery": True, "resultFormat": "time_series",
                     "query": query, "alias": alias} for k, (query, alias) in enumerate(targets)],
    }


def variable(name: str, query: str) -> dict[str, Any]:
    return {"name": name, "label": name, "type": "query", "datasource": DS, "query": query, "definition": query,
            "refresh": 1, "sort": 1, "multi": False, "includeAll": False, "hide": 0, "current": {}, "options": [],
            "skipUrlSync": False}


def dashboard() -> dict[str, Any]:
    return {
        "id": None, "uid": "phasetwin", "title": "phasetwin — LV feeder twin",
        "description": "Per-phase load, unbalance, voltages, neutral current, loading, devices, controller and twin "
                       "health of one phasetwin run (InfluxQL). Replays write simulation time: open the URL a replay "
                       "prints (its from/to are the simulated period), or run live with --time-base wall.",
        "tags": ["phasetwin"], "timezone": "utc", "editable": True, "graphTooltip": 1, "schemaVersion": 39,
        "version": 2, "refresh": "10s", "time": {"from": "now-6h", "to": "now"}, "timepicker": {},
        "annotations": {"list": []}, "links": [], "fiscalYearStartMonth": 0, "liveNow": False, "weekStart": "",
        "templating": {"list": [
            variable("feeder", 'SHOW TAG VALUES FROM "network" WITH KEY = "feeder"'),
            variable("run", "SHOW TAG VALUES FROM \"network\" WITH KEY = \"run\" WHERE \"feeder\" = '$feeder'"),
        ]},
        "panels": [panel(i, *p[:4]) for i, p in enumerate(PANELS)],
    }


if __name__ == "__main__":
    out = Path(__file__).parent / "dashboards" / "phasetwin.json"
    out.write_text(json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {out}")
