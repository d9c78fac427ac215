"""report.html in a real headless Chromium (Debian's ``chromium``): every figure loads, is shown at a readable
width and is not blank, the page logs no error, and a screenshot is taken (kept in the test's folder).

The check runs in the page: a copy of the report gets a script that records every error event from the first
byte on and, once loaded, draws each figure on a canvas and counts its non-white pixels; ``--dump-dom`` returns
the result. The report itself carries no script.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from phasetwin.report.html import Report

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.slow

_PROBE = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(
  (e.message || (e.target && (e.target.outerHTML || '').slice(0, 80)) || 'error')), true);
window.addEventListener('load', () => {
  const images = [...document.images].map(img => {
    const c = document.createElement('canvas');
    c.width = img.naturalWidth; c.height = img.naturalHeight;
    let ink = 0;
    if (c.width && c.height) {
      const g = c.getContext('2d'); g.drawImage(img, 0, 0);
      const d = g.getImageData(0, 0, c.width, c.height).data;
      for (let i = 0; i < d.length; i += 4) if (d[i] < 200 || d[i + 1] < 200 || d[i + 2] < 200) ink++;
      ink /= d.length / 4;
    }
    return {figure: img.closest('figure') ? img.closest('figure').id : '', width: img.naturalWidth,
            shown_px: img.getBoundingClientRect().width, ink: ink};
  });
  const pre = document.createElement('pre'); pre.id = 'probe';
  pre.textContent = JSON.stringify({images: images, errors: window.__errors});
  document.body.appendChild(pre);
});
</script>"""

_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess[str]:
    if not Path(CHROMIUM).exists():  # fail, never skip, as the server fixtures do
        pytest.fail("no chromium: run scripts/test (it installs Debian's chromium) or apt-get install chromium")
    profile.mkdir(parents=True, exist_ok=True)
    return subprocess.run([CHROMIUM, *_FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
                           *args], capture_output=True, text=True, timeout=120, check=False)


def test_every_figure_loads_and_is_not_blank_and_the_page_logs_no_error(
        runs: tuple[object, object, Report], tmp_path: Path) -> None:
    report = runs[2]
    html = report.path.read_text(encoding="utf-8")
    probe = report.path.with_name("report-probe.html")
    probe.write_text(html.replace('<meta charset="utf-8">', '<meta charset="utf-8">' + _PROBE, 1), encoding="utf-8")
    try:
        dom = _chromium(["--virtual-time-budget=15000", "--window-size=1100,900", "--dump-dom", probe.as_uri()],
                        tmp_path / "profile-dom")
    finally:
        probe.unlink()
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout, re.S)
    assert found, f"no probe result; chromium said: {dom.stderr[-2000:]}"
    result = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert result["errors"] == []
    assert "Uncaught" not in dom.stderr and ":CONSOLE(" not in dom.stderr
    shown = {img["figure"]: img for img in result["images"]}
    assert sorted(shown) == sorted(f"fig-{d.path.stem}" for d in report.figures)
    for name, img in shown.items():
        assert img["width"] >= 900, name  # loaded at its full resolution
        assert img["shown_px"] >= 900, name  # and shown at a readable width
        assert 0.02 < img["ink"] < 0.6, (name, img["ink"])  # drawn on, not a blank or black box

    shot = tmp_path / "report.png"
    page = _chromium([f"--screenshot={shot}", "--window-size=1100,7000", "--hide-scrollbars", report.path.as_uri()],
                     tmp_path / "profile-shot")
    assert shot.is_file(), page.stderr[-2000:]
    pixels = imread(shot)
    assert pixels.shape[1] == 1100 and float(np.mean(pixels[..., :3] < 0.8)) > 0.01
    kept = Path(report.path.parent / "report-screenshot.png")
    shutil.copy(shot, kept)
