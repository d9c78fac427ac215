"""The Grafana alert rules are the live view's alarms: the provisioning file is what docker/grafana/make_alerts.py
writes from ``phasetwin.view.alarms``, rule for rule (uids, thresholds, comparisons, quantities)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import yaml

from phasetwin.view.alarms import CONTROLLER_SILENT_PERIODS, Comparison, grid_rules

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "docker" / "grafana" / "make_alerts.py"


def _make_alerts() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_alerts", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_provisioned_rules_are_what_the_script_writes_from_the_alarms() -> None:
    make_alerts = _make_alerts()
    assert make_alerts.OUT.read_text(encoding="utf-8") == make_alerts.alert_rules(), \
        "run python docker/grafana/make_alerts.py after changing phasetwin/view/alarms.py"


def test_each_grid_alarm_has_a_rule_with_its_threshold_and_quantity() -> None:
    doc = yaml.safe_load(_make_alerts().OUT.read_text(encoding="utf-8"))
    rules = {r["title"]: r for g in doc["groups"] for r in g["rules"]}
    for alarm in grid_rules():
        rule = rules[alarm.title]
        (condition,) = rule["data"][2]["model"]["conditions"]
        assert condition["evaluator"] == {"type": "lt" if alarm.comparison is Comparison.BELOW else "gt",
                                          "params": [alarm.threshold]}
        assert f'{alarm.reduce}("{alarm.field}") FROM "{alarm.measurement}"' in rule["data"][0]["model"]["query"]
    silent = rules[f"Controller silent for {CONTROLLER_SILENT_PERIODS * 15} minutes"]
    assert silent["data"][0]["relativeTimeRange"]["from"] == CONTROLLER_SILENT_PERIODS * 900
