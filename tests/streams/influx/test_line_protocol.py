"""Line protocol: escaping, typed field values, templates; tag values with spaces, commas and equals signs
survive a round trip through real servers.

```
series()/line() ────► V1Transport ──POST /write────────► influxd          ──/query──────► tag values
                     └─► V2Transport ──POST /api/v2/write─► VictoriaMetrics ──/api/v1/export► labels
```
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np
import pytest

from streams.influx.line_protocol import (
    LineSpec,
    LineTemplate,
    epoch_s,
    escape_key,
    escape_measurement,
    escape_tag_value,
    line,
    series,
    string_field,
)
from streams.influx.recorder import InfluxSettings
from streams.influx.transport import Outcome, create_transport

if TYPE_CHECKING:
    from support.servers import InfluxDBServer, VictoriaMetricsServer

WEIRD = {"run": "run 1,a=b", "scenario": "peak, x=2 =", "feeder": "f,1"}
TS = 1705276800


def test_escaping_follows_the_line_protocol_reference() -> None:
    assert escape_measurement("a b,c=d") == "a\\ b\\,c=d"
    assert escape_key("k 1,=") == "k\\ 1\\,\\="
    assert escape_tag_value("run", "run 1,a=b") == "run\\ 1\\,a\\=b"
    assert string_field('say "hi" \\ bye\nnext') == '"say \\"hi\\" \\\\ bye\\nnext"'


@pytest.mark.parametrize(("value", "match"), [
    ("", r"tag 'run' has an empty value; InfluxDB refuses empty tag values"),
    ("a\\b", r"tag run='a\\\\b' holds '\\\\' at 1; tag values may not contain a backslash"),
    ("a\nb", r"tag run='a\\nb' holds '\\n' at 1"),
])
def test_tag_values_servers_would_read_differently_are_refused(value: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        escape_tag_value("run", value)


def test_series_checks_measurement_and_tags_against_the_schema() -> None:
    assert series("transformer", {"run": "r", "scenario": "s", "feeder": "f", "phase": "A"}) == \
        "transformer,feeder=f,phase=A,run=r,scenario=s "
    with pytest.raises(ValueError, match=r"measurement 'voltage' is not in streams.influx.schema"):
        series("voltage", {})
    with pytest.raises(ValueError, match=r"measurement 'transformer' takes the tags \['feeder', 'phase', 'run', "
                                         r"'scenario'\]; got \['feeder', 'run', 'scenario'\]"):
        series("transformer", {"run": "r", "scenario": "s", "feeder": "f"})


def test_fields_are_typed_by_the_schema_and_missing_values_left_out() -> None:
    prefix = series("device", {"run": "r", "scenario": "s", "feeder": "f", "device": "psd-1", "kind": "psd"})
    text = line(prefix, "device", {"phase": "B", "phase_index": 1, "in_transition": False, "p_kw": 1,
                                   "e_kwh": None, "charge_kw": float("nan"), "unsupplied_kwh": 1 / 3}, TS)
    assert text == ('device,device=psd-1,feeder=f,kind=psd,run=r,scenario=s phase="B",phase_index=1i,'
                    f"in_transition=false,p_kw=1.0,unsupplied_kwh=0.3333333333333333 {TS}\n")
    assert line(prefix, "device", {"e_kwh": float("inf")}, TS) == ""
    with pytest.raises(KeyError, match=r"field 'volts' is not in measurement 'device'"):
        line(prefix, "device", {"volts": 1.0}, TS)
    assert epoch_s(datetime(2024, 1, 15, 0, 0, 0, 999_999, tzinfo=UTC)) == TS


def _parse(text: bytes) -> list[tuple[str, dict[str, float], int]]:
    """Lines of a template (float fields only, no escapes in these prefixes) as (prefix, fields, timestamp)."""
    out = []
    for row in text.decode().splitlines():
        prefix, fields, ts = row.rsplit(" ", 2)
        out.append((prefix, {k: float(v) for k, v in (f.split("=") for f in fields.split(","))}, int(ts)))
    return out


def test_a_template_writes_every_float_losslessly_and_leaves_non_finite_values_out() -> None:
    tags = {"run": "r%d", "scenario": "100%", "feeder": "f"}
    lines = [LineSpec(series("voltage_band", {**tags, "phase": p}), "voltage_band", ("vm_min_pu", "vm_max_pu"))
             for p in "ABC"]
    lines.append(LineSpec(series("network", tags), "network", ("loss_kw",)))
    template = LineTemplate(lines)
    rng = np.random.default_rng(7)
    values = rng.normal(size=(50, 7)) * 10.0 ** rng.integers(-30, 30, size=(50, 7))
    values[0] = [0.95, 1.05, 1.0, -0.0, 1e-20, 1.5e-7, 1e21]
    stamps = [TS + 60 * i for i in range(50)]
    text, n = template.render(values, stamps)
    parsed = _parse(text)
    assert n == len(parsed) == 200
    assert [p for p, _, _ in parsed[:4]] == [spec.prefix.rstrip() for spec in lines]
    got = np.array([v for _, fields, _ in parsed for v in fields.values()]).reshape(50, 7)
    assert np.array_equal(got, values)  # bit for bit: the shortest text that reads back as the same double
    assert [ts for _, _, ts in parsed] == [t for t in stamps for _ in range(4)]

    values[1, [1, 4, 5]] = np.nan
    values[2, 6] = np.inf
    text, n = template.render(values[:3], stamps[:3])
    parsed = _parse(text)
    assert n == len(parsed) == 10  # row 1 loses its phase C line (both fields missing), row 2 its network line
    by_row = {(p, ts): f for p, f, ts in parsed}
    assert by_row[(lines[0].prefix.rstrip(), stamps[1])] == {"vm_min_pu": values[1, 0]}
    assert (lines[2].prefix.rstrip(), stamps[1]) not in by_row and (lines[3].prefix.rstrip(), stamps[2]) not in by_row
    with pytest.raises(ValueError, match=r"template takes 3 rows of 7 values; got an array of shape \(3, 5\)"):
        template.render(values[:3, :5], stamps[:3])
    with pytest.raises(ValueError, match=r"template field device.phase_index is not a float field"):
        LineTemplate([LineSpec("device ", "device", ("phase_index",))])


def _weird_lines() -> bytes:
    lines = line(series("controller", {**WEIRD, "controller": "ctl 1,x=y", "strategy": "rolling milp"}),
                     "controller", {"status": 'said "no" \\ twice', "objective": 2.5, "switches": 3,
                                    "repaired": True}, TS)
    lines += line(series("network", WEIRD), "network", {"loss_kw": 1e21, "vuf_max_pct": 1.5e-7}, TS)
    return lines.encode()


def test_weird_tags_and_strings_round_trip_through_influxdb_1(influxdb: InfluxDBServer) -> None:
    db = f"lp_{uuid.uuid4().hex[:8]}"
    transport = create_transport(InfluxSettings(url=influxdb.url, api="v1", bucket=db))
    try:
        result = transport.post(_weird_lines())
    finally:
        transport.close()
    assert result.outcome is Outcome.WRITTEN, result.detail
    answer = influxdb.query('SELECT * FROM "controller"', db=db, epoch="s")
    serie = answer["results"][0]["series"][0]
    row = dict(zip(serie["columns"], serie["values"][0], strict=True))
    assert {k: row[k] for k in (*WEIRD, "controller", "strategy", "status", "objective", "switches", "repaired",
                                "time")} == {
        **WEIRD, "controller": "ctl 1,x=y", "strategy": "rolling milp", "status": 'said "no" \\ twice',
        "objective": 2.5, "switches": 3, "repaired": True, "time": TS}
    answer = influxdb.query('SELECT loss_kw, vuf_max_pct FROM "network"', db=db, epoch="s")
    assert answer["results"][0]["series"][0]["values"] == [[TS, 1e21, 1.5e-7]]


def test_weird_tags_round_trip_through_victoriametrics_v2(victoriametrics: VictoriaMetricsServer) -> None:
    transport = create_transport(InfluxSettings(url=victoriametrics.url, api="v2", bucket="b"))
    try:
        result = transport.post(_weird_lines())
    finally:
        transport.close()
    assert result.outcome is Outcome.WRITTEN, result.detail
    samples = victoriametrics.samples('{__name__=~"controller_.*|network_.*", scenario="peak, x=2 ="}')
    got = {(labels["__name__"], labels["run"], labels["feeder"], labels.get("controller")): (t, v)
           for labels, t, v in samples}
    assert got == {
        ("controller_objective", "run 1,a=b", "f,1", "ctl 1,x=y"): (TS * 1000, 2.5),
        ("controller_switches", "run 1,a=b", "f,1", "ctl 1,x=y"): (TS * 1000, 3),
        ("controller_repaired", "run 1,a=b", "f,1", "ctl 1,x=y"): (TS * 1000, 1),
        ("controller_status", "run 1,a=b", "f,1", "ctl 1,x=y"): (TS * 1000, 0),  # strings are stored as 0
        ("network_loss_kw", "run 1,a=b", "f,1", None): (TS * 1000, 1e21),
        ("network_vuf_max_pct", "run 1,a=b", "f,1", None): (TS * 1000, 1.5e-7),
    }
