"""``export_run`` pushes a Parquet run folder as the live recorder's points: into a fresh run it holds exactly the
folder's values; over the live recording of the same run it overwrites and adds nothing, also when repeated.

```
controlled replay ──live──► influxd (run R) ◄──export_run(run folder, run R)── twice: same points, same count
        └──► run folder ──────────────────────export_run(run folder, run R2)──► influxd ──► == Parquet values
```
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pytest
from support.influx_readback import (
    FeederLayout,
    Points,
    by_measurement,
    compare,
    influxdb_points,
    key,
    loading_points,
    run_id,
)

from streams.influx.recorder import Detail, InfluxError, InfluxSettings, export_run
from streams.runfolder.matrix import read_frame

if TYPE_CHECKING:
    from conftest import RecordedRun
    from support.servers import InfluxDBServer

pytestmark = pytest.mark.slow


def _folder_points(r: RecordedRun, run: str, feeder: str) -> Points:
    """What the run folder holds, as points (every bus: detail full), read with pandas."""
    common = {"run": run, "scenario": r.scenario, "feeder": feeder}
    out: Points = {}
    volts = read_frame(r.folder / "voltages_pu.parquet")
    stamps = [int(t.timestamp()) for t in volts["time_utc"]]
    for column in volts.columns.drop("time_utc"):
        bus, phase = column.rsplit("_", 1)
        for ts, v in zip(stamps, volts[column].to_numpy(dtype=float), strict=True):
            out[key("bus_voltage", ts, bus=bus, phase=phase, **common)] = {"vm_pu": v}
    trafo = pd.read_parquet(r.folder / "transformer.parquet")
    metrics = pd.read_parquet(r.folder / "metrics.parquet")
    for i, ts in enumerate(stamps):
        t, m = trafo.iloc[i], metrics.iloc[i]
        for p in "abc":
            out[key("transformer", ts, phase=p.upper(), **common)] = {"p_kw": t[f"p_{p}_kw"],
                                                                      "q_kvar": t[f"q_{p}_kvar"]}
            out[key("voltage_band", ts, phase=p.upper(), **common)] = {"vm_min_pu": m[f"vm_min_{p}_pu"],
                                                                       "vm_max_pu": m[f"vm_max_{p}_pu"]}
            out[key("phase_load", ts, lv_feeder="0", phase=p.upper(), **common)] = {"p_kw": m[f"load_{p}_kw_f0"]}
        out[key("unbalance", ts, lv_feeder="0", **common)] = {"p_unb_kw": m["p_unb_kw_f0"]}
        out[key("network", ts, **common)] = {"p_unb_kw": m["p_unb_kw_f0"], "loss_kw": t["loss_kw"],
                                             "vuf_max_pct": m["vuf_max_pct"], "i_n_max_a": m["i_n_max_a"],
                                             "kappa_trafo": m["kappa_trafo"]}
    for d in pd.read_parquet(r.folder / "devices.parquet").itertuples():
        fields: dict[str, Any] = {
            "phase_index": "ABC".index(d.phase) if d.phase else -1, "mode": d.mode,
            "in_transition": bool(d.in_transition), "p_kw": d.p_a_kw + d.p_b_kw + d.p_c_kw,
            "operations_today": d.operations_today, "operations_total": d.operations_total,
            "rejections": d.rejections, "unsupplied_kwh": d.unsupplied_kwh}
        if d.phase:
            fields["phase"] = d.phase
        if d.kind == "pess":
            fields |= {"e_kwh": d.e_kwh, "charge_kw": d.charge_kw, "discharge_kw": d.discharge_kw,
                       "pv_available_kw": d.pv_available_kw, "pv_used_kw": d.pv_used_kw}
        out[key("device", int(d.time_utc.timestamp()), device=d.device_id, kind=d.kind, **common)] = fields
    tags = {"controller": "phasetwin-controller", **common}
    for c in pd.read_parquet(r.folder / "controller.parquet").itertuples():
        start = c.step_start_utc
        out[key("controller", int((start - timedelta(seconds=60)).timestamp()), strategy="rolling-milp", **tags)] = {
            "status": c.status, "objective": c.objective, "solve_s": c.solve_s, "switches": c.switches,
            "p_unb_kwh": c.p_unb_kwh, "violations": c.violations, "repaired": bool(c.repaired),
            "predicted_vm_min_pu": c.predicted_vm_min_pu, "predicted_vm_max_pu": c.predicted_vm_max_pu}
        step = metrics[(metrics["time_utc"] >= start) & (metrics["time_utc"] < start + timedelta(minutes=15))]
        lo = float(step[["vm_min_a_pu", "vm_min_b_pu", "vm_min_c_pu"]].min().min())
        hi = float(step[["vm_max_a_pu", "vm_max_b_pu", "vm_max_c_pu"]].max().max())
        out[key("ltupf", int(start.timestamp()), **tags)] = {
            "predicted_vm_min_pu": c.predicted_vm_min_pu, "actual_vm_min_pu": lo,
            "error_vm_min_pu": c.predicted_vm_min_pu - lo, "predicted_vm_max_pu": c.predicted_vm_max_pu,
            "actual_vm_max_pu": hi, "error_vm_max_pu": c.predicted_vm_max_pu - hi}
    out |= loading_points(r.folder, **common)
    return {k: {f: float(v) if isinstance(v, np.floating) else v for f, v in fields.items()}
            for k, fields in out.items()}


def test_an_export_into_a_new_run_holds_exactly_the_run_folder(
    recorded_run: RecordedRun, influxdb: InfluxDBServer, ieee_layout: FeederLayout
) -> None:
    r, run = recorded_run, run_id("exported")
    settings = InfluxSettings.model_validate({**r.settings.model_dump(), "detail": Detail.FULL, "spool_dir": None})
    report = export_run(r.folder, settings, run_id=run, scenario=r.scenario)
    expected = _folder_points(r, run, ieee_layout.name)
    got = influxdb_points(influxdb, r.db, run)
    assert compare(got, expected, rel=1e-9) == []
    assert report.points == dict(by_measurement(expected))
    assert report.points["loading"] == 3 * len(pd.read_parquet(r.folder / "loading.parquet"))
    assert (report.counts.written, report.counts.lost) == (len(expected), 0)
    assert not any(math.isnan(v) for fields in expected.values() for v in fields.values() if isinstance(v, float))


def test_exporting_a_run_recorded_live_overwrites_it_and_twice_adds_nothing(
    recorded_run: RecordedRun, influxdb: InfluxDBServer, ieee_layout: FeederLayout
) -> None:
    r = recorded_run
    live = influxdb_points(influxdb, r.db, r.run)
    for _ in range(2):
        report = export_run(r.folder, r.settings, run_id=r.run, scenario=r.scenario,
                            buses=ieee_layout.operator_buses)
        assert report.counts.written == sum(report.points.values()) > 0
        after = influxdb_points(influxdb, r.db, r.run)
        assert by_measurement(after) == by_measurement(live)
        assert set(after) == set(live)
        assert all(after[k] == live[k] for k in live if k[0] == "loading")  # the same floats, live and export
    exported = _folder_points(r, r.run, ieee_layout.name)
    # vm_pu now holds the folder's float32 values; the angle (not in the folder) is the live one
    for k, fields in after.items():
        if k[0] == "bus_voltage":
            assert fields["vm_pu"] == pytest.approx(exported[k]["vm_pu"], rel=1e-9)
            assert fields["va_deg"] == live[k]["va_deg"]
    assert report.points["bus_voltage"] == by_measurement(live)["bus_voltage"]


def test_export_refuses_what_it_cannot_do(recorded_run: RecordedRun, tmp_path: Any) -> None:
    r = recorded_run
    with pytest.raises(InfluxError, match=r"export with detail=operator needs buses="):
        export_run(r.folder, r.settings, run_id="x", scenario="s")
    with pytest.raises(InfluxError, match=r"buses \['nowhere'\] are not in .*voltages_pu.parquet"):
        export_run(r.folder, r.settings, run_id="x", scenario="s", buses={"nowhere"})
    with pytest.raises(InfluxError, match=r"cannot read .*summary.json"):
        export_run(tmp_path, r.settings, run_id="x", scenario="s", buses=set())
    down = InfluxSettings.model_validate({**r.settings.model_dump(), "url": "http://127.0.0.1:9", "max_retries": 0})
    with pytest.raises(InfluxError, match=r"the server did not take a batch after the retries .*Connection refused"):
        export_run(r.folder, down, run_id="x", scenario="s", buses=set())
