"""Writes docker/grafana/provisioning/alerting/phasetwin.yaml from the alarms of the live view
(``phasetwin.view.alarms``): one definition of each rule for both. Run after changing a rule:
``python docker/grafana/make_alerts.py``; tests/docker/test_dashboard_queries.py checks that the file is what
this script writes and runs every query against a real InfluxDB 1.x.

A device gone silent has no Grafana rule: InfluxQL cannot group a series that has stopped arriving by its device
(its "no data" carries no tag); the live view raises that alarm.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from phasetwin.view.alarms import CONTROLLER_SILENT_PERIODS, AlarmKind, GridRule, grid_rules

OUT = Path(__file__).parent / "provisioning" / "alerting" / "phasetwin.yaml"
UIDS = {AlarmKind.VOLTAGE_LOW: "phasetwin-voltage-low", AlarmKind.VOLTAGE_HIGH: "phasetwin-voltage-high",
        AlarmKind.VUF_HIGH: "phasetwin-vuf", AlarmKind.NEUTRAL_HIGH: "phasetwin-neutral"}
SUMMARIES = {
    AlarmKind.VOLTAGE_LOW: "A phase of {{ $labels.feeder }} (run {{ $labels.run }}) fell below {threshold:.2f} p.u.",
    AlarmKind.VOLTAGE_HIGH: "A phase of {{ $labels.feeder }} (run {{ $labels.run }}) rose above {threshold:.2f} p.u.",
    AlarmKind.VUF_HIGH: "VUF above {threshold:g} % (EN 50160) on {{ $labels.feeder }}, run {{ $labels.run }}",
    AlarmKind.NEUTRAL_HIGH: "Neutral current above {threshold:g} A (set the threshold to the feeder's neutral rating) "
                            "on {{ $labels.feeder }}",
}
CONTROL_PERIOD_S = 900
HEADER = """\
# Grafana alert rules over the phasetwin InfluxDB (InfluxQL; time = the points' time, so they watch live
# runs: --speed > 0 with --time-base wall). Written by docker/grafana/make_alerts.py from phasetwin/view/alarms.py
# (the live view's alarms); every query is run against a real InfluxDB 1.x by
# tests/docker/test_dashboard_queries.py, which also checks when each rule fires.
"""


def _rule(*, uid: str, title: str, summary: str, query: str, reducer: str, op: str, threshold: float,
          window_s: int, for_: str, no_data: str) -> dict[str, Any]:
    return {
        "uid": uid, "title": title, "condition": "C", "for": for_, "noDataState": no_data, "execErrState": "Error",
        "annotations": {"summary": summary}, "labels": {"team": "operations"},
        "data": [
            {"refId": "A", "relativeTimeRange": {"from": window_s, "to": 0}, "datasourceUid": "phasetwin-influxdb",
             "model": {"refId": "A", "rawQuery": True, "resultFormat": "time_series", "query": query}},
            {"refId": "B", "datasourceUid": "__expr__",
             "model": {"refId": "B", "type": "reduce", "expression": "A", "reducer": reducer}},
            {"refId": "C", "datasourceUid": "__expr__",
             "model": {"refId": "C", "type": "threshold", "expression": "B",
                       "conditions": [{"evaluator": {"type": op, "params": [threshold]}}]}},
        ],
    }


def grid_rule(rule: GridRule) -> dict[str, Any]:
    group = '"feeder", "run", "phase"' if rule.measurement == "voltage_band" else '"feeder", "run"'
    query = (f'SELECT {rule.reduce}("{rule.field}") FROM "{rule.measurement}" WHERE $timeFilter GROUP BY time(1m), '
             f"{group} fill(none)")
    return _rule(uid=UIDS[rule.kind], title=rule.title, summary=SUMMARIES[rule.kind].replace(
        "{threshold:.2f}", f"{rule.threshold:.2f}").replace("{threshold:g}", f"{rule.threshold:g}"),
        query=query, reducer=rule.reduce, op=rule.comparison.value, threshold=rule.threshold, window_s=900,
        for_="2m", no_data="OK")


def controller_rule() -> dict[str, Any]:
    window_s = CONTROLLER_SILENT_PERIODS * CONTROL_PERIOD_S
    return _rule(uid="phasetwin-controller-silent", title=f"Controller silent for {window_s // 60} minutes",
                 summary=f"No controller decision in {window_s // 60} minutes ({CONTROLLER_SILENT_PERIODS} control "
                         "periods): the devices run on their leases' safe state",
                 query='SELECT count("solve_s") FROM "controller" WHERE $timeFilter GROUP BY "feeder", "run"',
                 reducer="last", op="lt", threshold=1.0, window_s=window_s, for_="0s", no_data="Alerting")


def alert_rules() -> str:
    doc = {"apiVersion": 1, "groups": [{
        "orgId": 1, "name": "phasetwin", "folder": "phasetwin", "interval": "1m",
        "rules": [*(grid_rule(r) for r in grid_rules()), controller_rule()]}]}
    return HEADER + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


if __name__ == "__main__":
    OUT.write_text(alert_rules(), encoding="utf-8")
    print(f"wrote {OUT}")
