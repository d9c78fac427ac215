"""HiGHS's native lines go to the log, never to stdout.

HiGHS writes some lines straight to the process's file descriptor 1 whatever MathOpt's ``enable_output`` says
(on a Liège day: "HighsMipSolverData::transformNewIntegerFeasibleSolution tmpSolver.run();" once per solve that
hits it), which breaks the command's output and any pipe reading it. ``solve_quietly`` runs ``mathopt.solve`` with
descriptor 1 pointed at a temporary file and logs what was written there (logger ``controllers.solver``, INFO:
shown with ``--verbose``, on stderr). Python's own ``sys.stdout`` is flushed first and is not redirected, so only
native writes during the solve are caught. Solves on several threads share one redirection: the first to start
makes it, the last to finish undoes it and logs what all of them wrote.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

from ortools.math_opt.python import mathopt

log = logging.getLogger("controllers.solver")


class _Redirection:
    """Descriptor 1 pointed at one temporary file while any thread is inside ``native_stdout_to_log``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.depth = 0
        self.saved: int | None = None
        self.sink: IO[bytes] | None = None

    def enter(self) -> None:
        with self.lock:
            if self.depth == 0:
                sys.stdout.flush()
                try:
                    self.saved = os.dup(1)
                except OSError:  # no descriptor 1 (a daemon without stdout): nothing to protect
                    self.saved = None
                if self.saved is not None:
                    self.sink = tempfile.TemporaryFile()  # noqa: SIM115 (closed by the last to leave)
                    os.dup2(self.sink.fileno(), 1)
            self.depth += 1

    def leave(self) -> None:
        with self.lock:
            self.depth -= 1
            if self.depth or self.saved is None or self.sink is None:
                return
            os.dup2(self.saved, 1)
            os.close(self.saved)
            sink, self.saved, self.sink = self.sink, None, None
        with sink:
            sink.seek(0)
            for line in sink.read().decode(errors="replace").splitlines():
                if line.strip():
                    log.info("HiGHS: %s", line)


_redirection = _Redirection()


@contextmanager
def native_stdout_to_log() -> Iterator[None]:
    """Within the block, writes to file descriptor 1 go to a temporary file; each line is logged at the end."""
    _redirection.enter()
    try:
        yield
    finally:
        _redirection.leave()


def solve_quietly(model: mathopt.Model, solver_type: mathopt.SolverType, **kwargs: Any) -> mathopt.SolveResult:
    """``mathopt.solve(model, solver_type, **kwargs)`` with the solver's native stdout sent to the log."""
    with native_stdout_to_log():
        return mathopt.solve(model, solver_type, **kwargs)
