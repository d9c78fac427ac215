"""The import report (issue 29, item 1): ``phasetwin import FILE --report`` and ``import_report.json`` in the run
folder list every value the import of a network file assumed, defaulted, folded or dropped, with counts."""

from __future__ import annotations

import json
from pathlib import Path

import pandapower as pp
import pandapower.networks as pn
from typer.testing import CliRunner

from phasetwin.cli.main import app

runner = CliRunner()
ASSUME = ["--assume", "zero-sequence=r0/r1=4,x0/x1=4", "--assume",
          "ext-grid=s_sc_max_mva=100,rx_max=0.1,x0x_max=1,r0x0_max=0.1"]


def _kerber(tmp_path: Path) -> tuple[Path, int]:
    net = pn.create_kerber_landnetz_freileitung_1()
    path = tmp_path / "kerber.json"
    pp.to_json(net, str(path))
    return path, len(net.line)


def test_import_report_lists_every_assumption_with_counts(tmp_path: Path) -> None:
    path, n_lines = _kerber(tmp_path)
    result = runner.invoke(app, ["import", str(path), *ASSUME, "--report"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert f"zero-sequence data of {n_lines} of {n_lines} line(s) assumed: r0/r1=4,x0/x1=4,c0/c1=1" in text
    assert "external grid short-circuit data assumed: s_sc_max_mva=100" in text
    assert "the network carries no profiles: its static loads" in text
    short = runner.invoke(app, ["import", str(path), *ASSUME])
    assert short.exit_code == 0 and "give --report to list them" in " ".join(short.output.split())
    refused = runner.invoke(app, ["import", str(path)])
    assert refused.exit_code == 2 and "zero-sequence" in refused.output


def test_the_run_folder_holds_the_import_report(tmp_path: Path) -> None:
    path, n_lines = _kerber(tmp_path)
    out = tmp_path / "run"
    result = runner.invoke(app, ["replay", "--feeder", str(path), *ASSUME, "--tick", "3600", "--end",
                                 "2024-01-15T02:00", "--psd", "0", "--pess", "0", "--controller", "none",
                                 "--no-baseline", "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "import_report.json").read_text())
    assert report["lines"] == n_lines and report["customers"] > 0
    assert any(f"{n_lines} of {n_lines} line(s) assumed" in note for note in report["notes"])
    assert any("static loads" in note for note in report["notes"])
