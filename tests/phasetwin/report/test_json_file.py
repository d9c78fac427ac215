"""Reports are strict JSON (issue 29, item 10: the re-phasing report held ``Infinity``, a gap over no bound)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from phasetwin.report.json_file import write_json


def _strict(text: str) -> object:
    def refuse(token: str) -> object:
        raise ValueError(f"not JSON: {token}")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_numbers_are_written_as_null_and_the_rest_unchanged(tmp_path: Path) -> None:
    report = {"gap": float("inf"), "lower_bound": -np.inf, "ratio": np.float64("nan"), "objective": np.float64(6.5),
              "n": np.int64(3), "feeders": [{"feeder": 0, "gap": float("inf")}, (1.5, float("nan"))], "name": "x"}
    write_json(tmp_path / "report.json", report)
    assert _strict((tmp_path / "report.json").read_text()) == {
        "gap": None, "lower_bound": None, "ratio": None, "objective": 6.5, "n": 3,
        "feeders": [{"feeder": 0, "gap": None}, [1.5, None]], "name": "x"}
