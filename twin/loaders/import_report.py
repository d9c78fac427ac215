"""What importing a network file did: every value assumed, defaulted, folded or dropped, as the loaders note it.

The pandapower and OpenDSS loaders state each such change once per network, as a warning of the
``twin.loaders`` loggers ("zero-sequence data of 13 of 13 line(s) assumed: …", "4 generator(s) at customer
buses taken as behind-the-meter", "13 customer name(s) changed into topic segments", "SimBench profiles of the
network: …"). ``collected`` gathers them while a network and its own data load; the last import of each feeder
text is kept (``last_import``) so that a run folder can record it (``import_report.json``) without loading the
network again, and ``phasetwin import FILE`` prints it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ImportReport", "collected", "last_import", "remember"]

LOGGER = "twin.loaders"
_LAST: dict[str, ImportReport] = {}


class ImportReport(BaseModel):
    """One network import: the feeder's size and every note the loaders made, in order."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    source: str = Field(description="the feeder text: path and assumptions")
    feeder: str = Field(description="the feeder's name")
    buses: int = Field(ge=0)
    lines: int = Field(ge=0)
    customers: int = Field(ge=0)
    customers_by_phases: dict[str, int] = Field(description="customers per connection (A, BC, ABC, ...)")
    notes: tuple[str, ...] = Field(description="every value assumed, defaulted, folded or dropped, with counts")

    def text(self) -> str:
        phases = ", ".join(f"{n} {k}" for k, n in sorted(self.customers_by_phases.items()))
        lines = [f"{self.feeder} ({self.source}): {self.buses} buses, {self.lines} lines, {self.customers} "
                 f"customers ({phases})"]
        lines += [f"  - {note}" for note in self.notes] or ["  nothing assumed, defaulted, folded or dropped"]
        return "\n".join(lines)


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        # the loaders prefix their notes with the file: "PATH: note"
        self.messages.append(message.split(": ", 1)[1] if ": " in message else message)


@contextmanager
def collected() -> Iterator[list[str]]:
    """The notes the loaders make inside the block (also when their logger's level would hide them)."""
    logger = logging.getLogger(LOGGER)
    collector = _Collector()
    level = logger.level
    logger.addHandler(collector)
    if logger.getEffectiveLevel() > logging.WARNING:
        logger.setLevel(logging.WARNING)
    # a logging configuration made elsewhere in the process (e.g. dictConfig's disable_existing_loggers) may have
    # disabled the loaders' loggers: their notes are the report's content, so they speak inside the block
    family = [lg for name, lg in logging.root.manager.loggerDict.items()
              if isinstance(lg, logging.Logger) and (name == LOGGER or name.startswith(LOGGER + "."))]
    disabled = [lg for lg in family if lg.disabled]
    for lg in disabled:
        lg.disabled = False
    # ... and so may ``logging.disable`` (process-wide): lifted inside the block only
    process_disable = logging.root.manager.disable
    if process_disable >= logging.WARNING:
        logging.disable(logging.NOTSET)
    try:
        yield collector.messages
    finally:
        if process_disable >= logging.WARNING:
            logging.disable(process_disable)
        for lg in disabled:
            lg.disabled = True
        logger.removeHandler(collector)
        logger.setLevel(level)


def remember(report: ImportReport) -> None:
    _LAST[report.source] = report


def last_import(source: str) -> ImportReport | None:
    """The report of the last import of ``source`` in this process; None if it was not imported here."""
    return _LAST.get(source)
