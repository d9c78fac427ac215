"""Tables read at 80 and 120 columns: a table that does not fit is stacked, never cut to "s…"."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from rich.table import Table

from phasetwin.report.tables import print_table

COLUMNS = ("scenario", "method", "S_IN", "ins", "cub", "lo", "ab", "κ mean", "κ max", "curt. max", "#STS", "buses",
           "paper buses", "optimal", "s")
ROWS = [("S1", "single-level", "21634.2", "0.0", "0.0", "13012.7", "8621.5", "0.216", "0.412", "0.00", "0", "-",
         "-", "yes", "0.4"),
        ("S4", "single-level", "20331.9", "1304.1", "212.0", "12107.5", "6708.3", "0.034", "0.088", "0.12", "3",
         "9,11,12", "9,11,12", "yes", "118.6")]


def _render(width: int, columns: tuple[str, ...] = COLUMNS) -> str:
    table = Table(title="STS siting, IEEE 13-node feeder (S_IN in yuan per day)")
    for c in columns:
        table.add_column(c)
    for r in ROWS:
        table.add_row(*r[: len(columns)])
    out = io.StringIO()
    print_table(Console(file=out, width=width, force_terminal=False, color_system=None), table)
    return out.getvalue()


@pytest.mark.parametrize("width", [80, 120])
def test_every_cell_is_printed_whole(width: int) -> None:
    text = _render(width)
    assert "…" not in text
    assert all(len(line) <= width for line in text.splitlines())
    for row in ROWS:
        for header, cell in zip(COLUMNS, row, strict=True):
            assert cell in text, (header, cell)
    assert "S_IN in yuan per day" in text


def test_a_table_that_fits_stays_a_table_and_a_wide_one_is_stacked() -> None:
    narrow = _render(80, COLUMNS[:4])
    assert "┃" in narrow or "│" in narrow
    assert "│" in _render(160)  # wide enough: a table again
    wide = _render(80)
    assert "│" not in wide and wide.count("• scenario") == len(ROWS)
    stacked = [line for line in wide.splitlines() if "method" in line]
    assert [line.split()[-1] for line in stacked] == ["single-level", "single-level"]
