"""Every code block of the tutorials runs, in order, as a reader would run them from the checkout's root.

Python blocks of one page share one namespace; bash blocks run in a shell. Each page runs in a fresh folder
that sees the checkout's ``.venv`` and ``examples`` (as the reader's working directory would), so that what a
page writes (``runs/…``) stays out of the checkout."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TUTORIALS = sorted((ROOT / "docs" / "tutorials").glob("*.md"))
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.M | re.S)


def blocks(page: Path) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(page.read_text(encoding="utf-8"))]


def test_every_tutorial_has_code_and_only_runnable_kinds() -> None:
    assert {p.stem for p in TUTORIALS} >= {"first-replay", "own-feeder", "hil", "study"}
    for page in TUTORIALS:
        kinds = {kind for kind, _ in blocks(page)}
        assert kinds and kinds <= {"python", "bash"}, (page.name, kinds)


@pytest.mark.slow
@pytest.mark.parametrize("page", TUTORIALS, ids=lambda p: p.stem)
def test_the_tutorial_runs(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (".venv", "examples"):
        (tmp_path / name).symlink_to(ROOT / name)
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": f"tutorial_{page.stem.replace('-', '_')}"}
    for i, (kind, code) in enumerate(blocks(page)):
        if kind == "python":
            exec(compile(code, f"{page.name}[block {i}]", "exec"), namespace)
        else:
            done = subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=tmp_path, capture_output=True,
                                  text=True, timeout=600, env={**os.environ, "COLUMNS": "120"}, check=False)
            assert done.returncode == 0, f"{page.name} block {i}:\n{code}\n{done.stdout}\n{done.stderr}"
