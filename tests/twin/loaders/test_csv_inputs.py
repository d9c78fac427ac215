"""Device lists and command schedules: every bad row and field is reported at once, with its line."""

from pathlib import Path

import pytest

from controllers.scripted.schedule import read_schedule
from devices.fleet import read_device_list
from twin.errors import ScenarioError


def test_device_list_names_each_bad_row(tmp_path: Path) -> None:
    path = tmp_path / "devices.csv"
    path.write_text("customer_id,kind,access\nLOAD53,psd,\nLOAD1,lamp,\nLOAD2,pess,sideways\n")
    with pytest.raises(ScenarioError, match=r"line 3: kind = 'lamp'.*; line 4: access = 'sideways'"):
        read_device_list(path)


def test_schedule_refuses_naive_times_and_rows_missing_what_their_action_needs(tmp_path: Path) -> None:
    path = tmp_path / "schedule.csv"
    path.write_text("time_utc,device_id,action,phase\n2024-01-15T08:00,psd-a,set_phase,B\n"
                    "2024-01-15T09:00Z,psd-a,set_phase,\n")
    with pytest.raises(ScenarioError, match=r"line 2: time_utc = .*no UTC offset.*; line 3: .*needs a phase"):
        read_schedule(path)


def test_empty_schedule_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "schedule.csv"
    path.write_text("time_utc,device_id,action\n")
    with pytest.raises(ScenarioError, match="has no rows; expected columns time_utc,device_id,action"):
        read_schedule(path)
