"""The import rules of ARCHITECTURE.md are checked by import-linter (``lint-imports``, contracts in pyproject.toml).

These tests show the check can fail: a copy of the packages with one forbidden import added breaks the named
contract; and the contracts name whole packages, so a new module cannot slip past the layers unchecked.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("phasetwin", "twin", "controllers", "devices", "streams")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _contracts() -> dict[str, dict]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {c["id"]: c for c in config["contracts"]}


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=tree, env=env, capture_output=True, text=True,
                          timeout=300, check=False)


@pytest.fixture
def tree_copy(tmp_path: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__", "data"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_checkout_keeps_every_contract() -> None:
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "forbidden_import", "contract_name"),
    [
        ("controllers/online/problem.py", "import phasetwin.run.replay", "phasetwin > controllers"),
        ("twin/network.py", "import controllers.errors", "phasetwin > controllers"),
        ("devices/psd.py", "import streams.mqtt.bus", "transports"),
        ("streams/messages.py", "import twin.network", "phasetwin > controllers"),
        ("twin/metrics.py", "import twin.grid", "no import circle"),
    ],
)
def test_a_forbidden_import_breaks_its_contract(tree_copy: Path, module: str, forbidden_import: str,
                                                contract_name: str) -> None:
    path = tree_copy / module
    path.write_text(path.read_text() + f"\n{forbidden_import}  # added by the test\n")
    result = _lint(tree_copy)
    assert result.returncode != 0, result.stdout
    broken = [line for line in result.stdout.splitlines() if line.endswith("BROKEN")]
    assert any(line.startswith(contract_name) for line in broken), result.stdout


def test_the_contracts_name_packages_not_modules() -> None:
    """A contract that lists single modules must be kept in sync by hand; the layers are whole packages."""
    contracts = _contracts()
    assert contracts["layers"]["layers"] == ["phasetwin", "controllers", "devices", "twin", "streams"]
    named = [*contracts["transports"]["source_modules"], *contracts["acyclic"]["ancestors"]]
    assert all("." not in name for name in named), named
