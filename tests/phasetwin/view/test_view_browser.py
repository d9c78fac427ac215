"""The view of finished runs in a real headless Chromium: the page loads without a console error, the diagram
holds every bus, scrubbing to a tick shows that tick (compared with the Parquet tables, read here with pandas),
and a low-voltage run's alarm appears and is acknowledged.

Runs: the IEEE European LV feeder, 2024-01-15 17:00–17:30 at 1 min, rolling MILP with 10 PSDs and 2 PESS and its
no-control reference; and a scripted low-voltage run, the same half hour with phase A's single-phase loads × 6
and no control (|V| of phase A falls to about 0.79 p.u.).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import DEEP, MODEL, console_errors, wait_for  # type: ignore[import-not-found]
from selenium import webdriver

from controllers.online.settings import ControllerSettings, Strategy
from devices.fleet import FleetSpec
from phasetwin.run.replay import replay
from phasetwin.run.scenario import Scenario
from phasetwin.view.runfolder import read_run_folder
from phasetwin.view.timeline import Timeline
from streams.runfolder.matrix import read_frame
from twin.phase import Phase

pytestmark = pytest.mark.browser
START, END = datetime(2024, 1, 15, 17, tzinfo=UTC), datetime(2024, 1, 15, 17, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def controlled_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("view") / "run"
    scenario = Scenario(fleet=FleetSpec(psd=10, pess=2), controller=ControllerSettings(strategy=Strategy.ROLLING_MILP),
                        start_utc=START, end_utc=END, out=out)
    replay(scenario)
    replay(scenario.model_copy(update={"controller": ControllerSettings(strategy=Strategy.NONE),
                                       "out": out / "no-control"}))
    return out


@pytest.fixture(scope="module")
def low_voltage_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("view") / "low"
    replay(Scenario(fleet=FleetSpec(psd=0, pess=0), controller=ControllerSettings(strategy=Strategy.NONE),
                    start_utc=START, end_utc=END, out=out, scale_phase=Phase.A, scale_factor=6.0))
    return out


def _open(chrome: webdriver.Chrome, url: str) -> None:
    chrome.get(url)
    wait_for(lambda: chrome.execute_script(f"return Bokeh.documents.length > 0 && {MODEL.format('tick')}"
                                           ".data.tick[0] >= 0"), what="the view's first tick")


def _js(chrome: webdriver.Chrome, expression: str) -> object:
    return chrome.execute_script(f"return {expression};")


def _scrub(chrome: webdriver.Chrome, index: int) -> None:
    """Move the slider in the browser (the change goes to the server and the new tick comes back)."""
    chrome.execute_script(f"{MODEL.format('slider')}.value = {index};")
    wait_for(lambda: _js(chrome, f"{MODEL.format('tick')}.data.index[0]") == index, what=f"tick index {index}")


def _worst_phase(voltages: pd.DataFrame, bus_ids: list[str], row: int) -> np.ndarray:
    """Independently of the view: per bus the phase voltage farthest from 1 p.u., from the table's columns."""
    out = []
    for bus in bus_ids:
        values = [float(voltages[f"{bus}_{p}"].iloc[row]) for p in "ABC"]
        out.append(max(values, key=lambda v: abs(v - 1.0)))
    return np.array(out)


def test_page_loads_every_bus_without_console_error(controlled_run: Path, chrome: webdriver.Chrome,
                                                    serve_timeline: Callable[[Timeline], str],
                                                    artefacts: Path) -> None:
    url = serve_timeline(read_run_folder(controlled_run))
    _open(chrome, url)
    voltages = read_frame(controlled_run / "voltages_pu.parquet")
    buses_in_table = sorted({c.rsplit("_", 1)[0] for c in voltages.columns if c != "time_utc"})
    drawn = _js(chrome, f"{MODEL.format('buses')}.data.bus")
    assert isinstance(drawn, list)
    assert sorted(drawn) == buses_in_table and len(drawn) == 907  # 906 LV buses + the MV source bus
    # Every bus has a place on the canvas: finite coordinates inside the diagram's ranges.
    xs = np.array(_js(chrome, f"Array.from({MODEL.format('buses')}.data.x)"), dtype=float)
    assert np.isfinite(xs).all() and len(xs) == 907
    n_lines = _js(chrome, f"{MODEL.format('lines')}.data.line.length")
    assert n_lines == len(read_frame(controlled_run / "line_currents_ka.parquet").columns) - 1
    chrome.save_screenshot(str(artefacts / "view_finished.png"))
    assert console_errors(chrome) == []


def test_scrubbing_shows_the_ticks_values(controlled_run: Path, chrome: webdriver.Chrome,
                                          serve_timeline: Callable[[Timeline], str], artefacts: Path) -> None:
    timeline = read_run_folder(controlled_run)
    url = serve_timeline(timeline)
    _open(chrome, url)
    voltages = read_frame(controlled_run / "voltages_pu.parquet")
    transformer = pd.read_parquet(controlled_run / "transformer.parquet")
    currents = read_frame(controlled_run / "line_currents_ka.parquet")
    bus_ids = list(_js(chrome, f"{MODEL.format('buses')}.data.bus"))  # type: ignore[call-overload]
    for index in (17, 3):
        _scrub(chrome, index)
        shown = np.array(_js(chrome, f"Array.from({MODEL.format('buses')}.data.vm_worst_pu)"), dtype=float)
        np.testing.assert_allclose(shown, _worst_phase(voltages, bus_ids, index), rtol=0, atol=1e-6)
        text = str(chrome.execute_script(DEEP + "const el = deep(document, e => e.classList.contains('pt-values'));"
                                         "return (el.shadowRoot || el).textContent;"))
        t = pd.Timestamp(transformer["time_utc"].iloc[index])
        assert f"tick {index}" in text and f"{t:%Y-%m-%d %H:%M:%S}" in text
        p = " / ".join(f"{transformer[f'p_{ph}_kw'].iloc[index]:.2f}" for ph in "abc")
        assert p in text
        line = str(currents.columns[1])
        loading = _js(chrome, f"{MODEL.format('lines')}.data.loading_pct[0]")
        max_i_ka = timeline.drawing.line_max_i_ka[0]
        assert loading == pytest.approx(100 * float(currents[line].iloc[index]) / max_i_ka, rel=1e-5)
    chrome.save_screenshot(str(artefacts / "view_scrubbed.png"))
    assert console_errors(chrome) == []


def test_low_voltage_alarm_appears_and_is_acknowledged(low_voltage_run: Path, chrome: webdriver.Chrome,
                                                       serve_timeline: Callable[[Timeline], str],
                                                       artefacts: Path) -> None:
    metrics = pd.read_parquet(low_voltage_run / "metrics.parquet")
    low = metrics[["vm_min_a_pu", "vm_min_b_pu", "vm_min_c_pu"]].min(axis=1) < 0.90
    assert low.any(), "the scripted run must go below 0.90 p.u."
    first = int(np.argmax(low.to_numpy()))
    url = serve_timeline(read_run_folder(low_voltage_run))
    _open(chrome, url)
    if first > 0:
        _scrub(chrome, first - 1)
        kinds = _js(chrome, f"{MODEL.format('alarms')}.data.kind")
        assert "voltage-low" not in kinds  # type: ignore[operator]
    _scrub(chrome, first)
    kinds = list(_js(chrome, f"{MODEL.format('alarms')}.data.kind"))  # type: ignore[call-overload]
    row = kinds.index("voltage-low")
    raised = _js(chrome, f"{MODEL.format('alarms')}.data.raised[{row}]")
    assert raised == f"{pd.Timestamp(metrics['time_utc'].iloc[first]):%Y-%m-%d %H:%M}"
    assert _js(chrome, f"{MODEL.format('alarms')}.data.state[{row}]") == "active"
    chrome.execute_script(f"{MODEL.format('alarms')}.selected.indices = [{row}];")
    chrome.execute_script(DEEP + "deep(document, e => e.tagName === 'BUTTON' && "
                                 "e.textContent.includes('Acknowledge selected')).click();")
    wait_for(lambda: _js(chrome, f"{MODEL.format('alarms')}.data.state[{row}]") == "active, acknowledged",
             what="the acknowledged alarm")
    chrome.save_screenshot(str(artefacts / "view_alarm.png"))
    assert console_errors(chrome) == []
