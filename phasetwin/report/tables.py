"""Tables that read at any terminal width: a table that fits, or can wrap its cells at spaces to fit, is printed as
a table; one whose words alone are wider than the console is printed stacked, one block per row ("column value"
lines), instead of rich cutting every cell to "s…"."""

from __future__ import annotations

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text


def print_table(console: Console, table: Table) -> None:
    """Print ``table`` as a table when its cells fit ``console.width`` wrapped at spaces, else stacked."""
    if Measurement.get(console, console.options.update_width(10_000), table).minimum <= console.width:
        console.print(table)
        return
    if table.title:
        console.print(Text(str(table.title), style="bold"))
    headers = [Text.from_markup(str(c.header)).plain if isinstance(c.header, str) else str(c.header)
               for c in table.columns]
    cells = [list(c.cells) for c in table.columns]
    width = max((len(h) for h in headers), default=0)
    for r in range(table.row_count):
        first = True
        for header, column in zip(headers, cells, strict=True):
            value = column[r]
            text = value.plain if isinstance(value, Text) else Text.from_markup(str(value)).plain
            lead = "• " if first else "  "
            console.print(Text(f"{lead}{(header or '').ljust(width)}  ") + Text(text), soft_wrap=False,
                          overflow="fold")
            first = False
