"""HiGHS's native lines go to the log, never to stdout.

HiGHS writes some lines straight to the process's file descriptor 1 whatever MathOpt's ``enable_output`` says
(on a Liège day: "HighsMipSolverData::transformNewIntegerFeasibleSolution tmpSolver.run();" once per solve that
hits it), which breaks the command's output and any pipe reading it. ``solve_quietly`` runs ``mathopt.solve`` with
descriptor 1 pointed at a temporary file and logs what was written there (logger ``controllers.solver``, INFO:
shown with ``--verbose``, on stderr). Python's own ``sys.stdout`` is flushed first and is not redirected, so only
native writes during the solve are caught.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ortools.math_opt.python import mathopt

log = logging.getLogger("controllers.solver")


@contextmanager
def native_stdout_to_log() -> Iterator[None]:
    """Within the block, writes to file descriptor 1 go to a temporary file; each line is logged at the end."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no descriptor 1 (a daemon without stdout): nothing to protect
        yield
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1)
        try:
            yield
        finally:
            os.dup2(saved, 1)
            os.close(saved)
            sink.seek(0)
            for line in sink.read().decode(errors="replace").splitlines():
                if line.strip():
                    log.info("HiGHS: %s", line)


def solve_quietly(model: mathopt.Model, solver_type: mathopt.SolverType, **kwargs: Any) -> mathopt.SolveResult:
    """``mathopt.solve(model, solver_type, **kwargs)`` with the solver's native stdout sent to the log."""
    with native_stdout_to_log():
        return mathopt.solve(model, solver_type, **kwargs)
