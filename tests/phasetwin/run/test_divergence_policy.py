"""``--on-divergence``: ticks that no engine solves (400 kW at every one of the 55 IEEE customers: 22 MW on an
800 kVA transformer, no power-flow solution exists) are skipped and counted, or abort the run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from phasetwin.cli.main import EXIT_TICKS_MISSING, app
from twin.loaders.ieee_european_lv import load_feeder

runner = CliRunner()
PLAIN = ["--psd", "0", "--pess", "0", "--controller", "none", "--no-unit-check",
         "--meter-limit-kva", "1000"]  # the data are impossible on purpose
IMPOSSIBLE = (4, 7)


@pytest.fixture(scope="module")
def impossible_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ten minutes of 1 kW per customer, with minutes 4 and 7 at 400 kW each."""
    ids = [c.id for c in load_feeder().customers]
    path = tmp_path_factory.mktemp("data") / "impossible.csv"
    rows = ["time," + ",".join(f"{c}_1" for c in ids)]
    for k in range(10):
        rows.append(f"2024-01-15T00:{k:02d}:00Z," + ",".join(["400" if k in IMPOSSIBLE else "1"] * len(ids)))
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.mark.slow
def test_skip_records_the_ticks_as_missing_goes_on_and_exits_3(impossible_data: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["replay", "--data", str(impossible_data), "--out", str(tmp_path), *PLAIN])
    assert result.exit_code == EXIT_TICKS_MISSING == 3, result.output
    text = " ".join(result.output.split())
    assert ("2 tick(s) had no power-flow solution from any engine and are missing from the run folder (first: "
            "2024-01-15T00:04:00+00:00, 2024-01-15T00:07:00+00:00)") in text
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["ticks"] == 10 and summary["powerflow_failures"] == 2
    assert summary["powerflow"]["ticks_skipped"] == 2 and summary["powerflow"]["fallbacks"] == {}
    metrics = pd.read_parquet(tmp_path / "metrics.parquet")
    missing = np.flatnonzero(metrics["vm_min_a_pu"].isna().to_numpy())
    assert missing.tolist() == list(IMPOSSIBLE)  # every other tick solved, before and after
    assert metrics["vm_min_a_pu"].drop(index=list(IMPOSSIBLE)).between(0.9, 1.1).all()


@pytest.mark.slow
def test_abort_stops_at_the_first_such_tick_with_one_message(impossible_data: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["replay", "--data", str(impossible_data), "--out", str(tmp_path),
                                 "--on-divergence", "abort", *PLAIN])
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert ("power flow (zbus) did not converge at tick 4 (2024-01-15T00:04:00+00:00), nor did any "
            "fallback") in text
    assert "Traceback" not in result.output
