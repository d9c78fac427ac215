"""The commands' consoles and their one way to refuse: ``error: <message>`` on stderr, exit status 2."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape

console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # a path in a message stays whole: the terminal wraps it


def fail(message: str) -> typer.Exit:
    """Print ``message`` (as text: brackets in it are not markup) and give the exit to raise."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    return typer.Exit(code=2)
