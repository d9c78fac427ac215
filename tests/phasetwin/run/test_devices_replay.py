"""Devices in a replay: a scripted schedule moves three customers, and the phase loads the twin records change
at exactly the scheduled ticks (plus the operating time), against a sum of the raw load-shape CSVs."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from devices.fleet import DeviceSpec, FleetSpec
from devices.limits import psd_limits
from phasetwin.run.replay import replay
from phasetwin.run.scenario import Scenario
from streams.messages import DeviceKind
from twin.loaders.ieee_european_lv import bundled_dir

START = datetime(2024, 1, 15, 7, 0, tzinfo=UTC)
END = datetime(2024, 1, 15, 13, 0, tzinfo=UTC)
MOVES = [  # customer, from, to, scheduled time (a time between ticks runs at the next tick)
    ("LOAD53", "B", "A", "2024-01-15T08:00:00Z"),
    ("LOAD50", "B", "C", "2024-01-15T08:00:30Z"),
    ("LOAD52", "A", "C", "2024-01-15T12:00:00Z"),
]


def raw_loads_kw() -> dict[str, tuple[str, np.ndarray]]:
    """Every load's (phase, 1440 kW values) straight from the CSVs, without the package's loaders."""
    folder = bundled_dir()
    with (folder / "LoadShapes.csv").open() as fh:
        files = {r[0]: r[3] for r in csv.reader(fh) if r and r[0].startswith("Shape_")}
    loads = {}
    with (folder / "Loads.csv").open() as fh:
        for row in csv.reader(fh):
            if row and row[0].startswith("LOAD"):
                with (folder / "load_profiles" / files[row[9]]).open() as shape:
                    values = np.array([float(r[1]) for r in list(csv.reader(shape))[1:]])
                loads[row[0]] = (row[3], values)
    return loads


@pytest.mark.slow
@pytest.mark.parametrize("operating_time_s", [0.060, 90.0])
def test_scripted_moves_change_phase_loads_at_the_scheduled_ticks(tmp_path: Path, operating_time_s: float) -> None:
    schedule = tmp_path / "schedule.csv"
    schedule.write_text("time_utc,device_id,action,phase\n" + "".join(
        f"{t},psd-{c},set_phase,{to}\n" for c, _, to, t in MOVES))
    fleet = FleetSpec(explicit=tuple(DeviceSpec(customer_id=c, kind=DeviceKind.PSD) for c, *_ in MOVES),
                      psd_limits=psd_limits(operating_time_s=operating_time_s))
    run = replay(Scenario(start_utc=START, end_utc=END, fleet=fleet, schedule=schedule, out=tmp_path / "run"))

    loads = raw_loads_kw()
    first = (START.hour * 60)
    n = run.recorder.phase_load_kw.shape[0]
    phase_of = {c: np.array([ph] * n, dtype=object) for c, (ph, _) in loads.items()}
    unsupplied = {c: np.zeros(n, dtype=bool) for c in loads}
    for c, was, to, t in MOVES:
        assert loads[c][0] == was
        moment = datetime.fromisoformat(t.replace("Z", "+00:00"))
        tick = -int(-(moment - START).total_seconds() // 60)  # first tick starting at or after the time
        delay_ticks = int(operating_time_s // 60)  # ticks still disconnected at their end
        unsupplied[c][tick:tick + delay_ticks] = True
        phase_of[c][tick:] = to
    expected = np.zeros((n, 3))
    for c, (_, kw) in loads.items():
        for j, ph in enumerate("ABC"):
            expected[:, j] += np.where((phase_of[c] == ph) & ~unsupplied[c], kw[first:first + n], 0.0)
    recorded = run.recorder.phase_load_kw.sum(axis=1)
    np.testing.assert_allclose(recorded, expected, rtol=0, atol=1e-9)
    acks = run.summary.acks
    assert acks == {"accepted": 3, "applied": 3}
    ops = {d: v["operations"] for d, v in run.summary.devices.items()}
    assert ops == {f"psd-{c}": 1 for c, *_ in MOVES}
    # LOAD53 is switched at the start of tick 60 (08:00): unsupplied for the operating time, tick by tick
    kw = loads["LOAD53"][1][first + 60:first + 62]
    expected_kwh = kw[0] * min(operating_time_s, 60.0) / 3600 + kw[1] * max(operating_time_s - 60.0, 0.0) / 3600
    assert run.summary.devices["psd-LOAD53"]["unsupplied_kwh"] == pytest.approx(expected_kwh, rel=1e-9)
