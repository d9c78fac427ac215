"""One OpenBLAS thread for the small products of a tick: numpy hands a product to multi-threaded OpenBLAS once
its matrix has more than about 4,096 entries (the Liège feeder's 69 × 69 Z-bus times one state, 129 × 69 in the
sweep), and the worker threads then spin after every call, waiting for the next. A replay makes such products
every tick with Python work between them, so the workers spin through that work too: their CPU counted against
the run, and on a loaded machine they wait for a time slice while the main thread waits for them.

Measured on the Liège two-day window at 900 s with the default fleet and no controller (2 cores, load average
10): 8.8 ms of process CPU per tick with two BLAS threads, 2.4 ms with one (``benchmarks/liege_year.py --floor``).
``controllers.ltupf.model`` and the re-phasing branch and bound limit their products the same way.

``one_blas_thread()`` nests: only the outermost context sets the limit and restores it, so a run limits once for
its whole tick loop (``phasetwin.run.execute``) and an engine called inside pays a counter, not a
``threadpoolctl`` round trip (about 10 µs, measured).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from threadpoolctl import ThreadpoolController

__all__ = ["one_blas_thread"]

_CONTROLLER = ThreadpoolController()


class _Depth:
    """How many ``one_blas_thread`` contexts are open in the process (the BLAS limit is process-wide)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.open = 0
        self.limiter: Any = None
        """threadpoolctl's limiter of the outermost context (threadpoolctl has no type hints)."""


_DEPTH = _Depth()


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """numpy's BLAS on one thread inside the context; the previous limit restored when the outermost one exits."""
    with _DEPTH.lock:
        if _DEPTH.open == 0:
            _DEPTH.limiter = _CONTROLLER.limit(limits=1, user_api="blas")
        _DEPTH.open += 1
    try:
        yield
    finally:
        with _DEPTH.lock:
            _DEPTH.open -= 1
            if _DEPTH.open == 0 and _DEPTH.limiter is not None:
                _DEPTH.limiter.restore_original_limits()
                _DEPTH.limiter = None
