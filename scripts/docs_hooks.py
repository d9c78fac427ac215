"""MkDocs hooks (``mkdocs.yml``: ``hooks``): the MQTT contract page's table, read from the committed AsyncAPI file
when the site is built, so that the page cannot drift from the contract."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ASYNCAPI = Path(__file__).resolve().parents[1] / "docs" / "contract" / "asyncapi.json"
PLACEHOLDER = "{{ asyncapi_channels }}"
CLI_PLACEHOLDER = "{{ cli_reference }}"


def channels_table(document: dict[str, Any]) -> str:
    """One row per channel: its topic, the message it carries, who sends it (the operations), what it is for."""
    senders: dict[str, list[str]] = {}
    for name, op in document.get("operations", {}).items():
        channel = op["channel"]["$ref"].rsplit("/", 1)[-1]
        senders.setdefault(channel, []).append(f"{op['action']} ({name})")
    rows = ["| channel | topic | message | operations | what it is |", "|---|---|---|---|---|"]
    for name, channel in sorted(document["channels"].items()):
        messages = ", ".join(f"`{m}`" for m in channel.get("messages", {}))
        rows.append(f"| `{name}` | `{channel['address']}` | {messages} | {', '.join(senders.get(name, [])) or '—'} "
                    f"| {channel.get('title', '')}. {channel.get('description', '')} |")
    return f"AsyncAPI {document['asyncapi']}, contract `{document['info']['version']}`.\n\n" + "\n".join(rows)


def cli_reference() -> str:
    """``--help`` of the command and of every subcommand, depth first, as the command line prints it."""
    import click
    import typer
    from typer.testing import CliRunner

    from phasetwin.cli.main import app

    runner = CliRunner()
    sections: list[str] = []

    def visit(path: list[str], command: click.Command) -> None:
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "110", "TERM": "dumb"}, color=False,
                               prog_name="phasetwin")
        if result.exit_code != 0:
            raise RuntimeError(f"phasetwin {' '.join(path)} --help failed: {result.output}")
        level = "#" * min(len(path) + 1, 4)
        sections.append(f"{level} phasetwin {' '.join(path)}\n\n```text\n{result.output.rstrip()}\n```\n")
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            visit([*path, name], sub)

    root = typer.main.get_command(app)
    for name, sub in sorted(root.commands.items()):  # type: ignore[attr-defined]
        visit([name], sub)
    return "\n".join(sections)


def on_page_markdown(markdown: str, **_: Any) -> str:
    if PLACEHOLDER in markdown:
        markdown = markdown.replace(PLACEHOLDER, channels_table(json.loads(ASYNCAPI.read_text(encoding="utf-8"))))
    if CLI_PLACEHOLDER in markdown:
        markdown = markdown.replace(CLI_PLACEHOLDER, cli_reference())
    return markdown
