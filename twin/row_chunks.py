"""Row-chunked evaluation of numpy work over a batch of states, on a small thread pool.

Two reasons, both measured on the IEEE feeder's 1440-state day (benchmarks/replay_day.py): chunks of a few
dozen states keep temporaries in cache (4× faster than whole-batch arrays), and numpy releases the GIL inside
its loops, so two threads use the second core that the power-flow engine leaves idle after its batch.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

CHUNK_STATES = 32
_WORKERS = min(4, os.cpu_count() or 1)
_pool = ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="phasetwin-rows") if _WORKERS > 1 else None


def for_row_chunks(n_rows: int, work: Callable[[int, int], None], *, chunk: int = CHUNK_STATES) -> None:
    """Call ``work(start, stop)`` for consecutive row ranges covering ``0..n_rows``; each call writes only its rows.

    Exceptions from any chunk are raised here.
    """
    ranges = [(a, min(a + chunk, n_rows)) for a in range(0, n_rows, chunk)]
    if _pool is None or len(ranges) < 4:
        for a, b in ranges:
            work(a, b)
        return
    for future in [_pool.submit(work, a, b) for a, b in ranges]:
        future.result()
