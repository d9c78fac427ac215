"""The Liège data for the tests that need it: it lives in the shared data folder, not in the checkout, so the tests
that read it are skipped where it is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from twin.errors import DataError
from twin.loaders import liege

LIEGE_FOLDER: Path | None
try:
    LIEGE_FOLDER = liege.default_folder()
except DataError:
    LIEGE_FOLDER = None
needs_liege = pytest.mark.skipif(LIEGE_FOLDER is None, reason="../shared/data/liege_lv not found")
