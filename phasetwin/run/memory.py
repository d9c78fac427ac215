"""How the process hands memory back to the system, so that a long run's footprint stays that of one batch.

glibc raises its mmap threshold each time a large block is freed (up to 32 MiB), after which the power flow's
batch arrays come from the heap, which fragments and is rarely returned: RSS then creeps up batch after
batch although nothing is kept. Fixing the threshold keeps every large array in its own mapping, returned to
the system when freed: between batches of a 7-day IEEE replay RSS stayed at 413 MB instead of wandering
between 490 and 773 MB (benchmarks/replay_length.py measures the peaks).

Fixing the mmap threshold also fixes the trim threshold at glibc's 128 KiB: every freed block of a few hundred
KiB at the top of the heap (numpy temporaries of the chunked per-bus work, e.g. [16, 907, 3] complex, 0.7 MB)
handed the pages back, and the next chunk faulted them in again. The trim threshold is therefore set to 4 MiB:
the IEEE day's zbus solve with every array went from 60,000 to 6,600 page faults and from 0.2-0.4 s to
0.03-0.14 s of system time (benchmarks/powerflow_engines.py).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)
M_MMAP_THRESHOLD = -3
M_TRIM_THRESHOLD = -1
"""mallopt parameter numbers (glibc malloc.h)."""
MMAP_THRESHOLD_BYTES = 1 << 20
TRIM_THRESHOLD_BYTES = 4 << 20
"""Freed memory the heap keeps at its top for the next small temporaries (a zbus chunk's ~0.7 MB arrays would
otherwise be returned and faulted in again: 60,000 → 6,600 page faults on the IEEE day)."""
RUN_MMAP_THRESHOLD_BYTES = 128 << 20
RUN_TRIM_THRESHOLD_BYTES = 1 << 30
_fixed = False
"""Whether this process fixed the mmap threshold (``return_large_blocks_to_the_system``)."""


def return_large_blocks_to_the_system() -> bool:
    """Fix glibc's mmap threshold at 1 MiB and let pyarrow allocate from it; False (and nothing done) on a C
    library without ``mallopt``.

    pyarrow's own pool (mimalloc) keeps what reading the meter data and writing the parts freed: over 100 MB
    after reading 28 days of 1-minute data for 55 customers, against 30 MB with the system allocator.
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        log.info("memory: no mallopt in %s; allocator left as it is", name)
        return False
    if not mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES):
        return False
    mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)  # keep the heap's top for the next small temporaries
    global _fixed
    _fixed = True
    import pyarrow as pa

    pa.set_memory_pool(pa.system_memory_pool())
    return True


def trim_heap() -> None:
    """Give the heap's free pages back to the system (glibc ``malloc_trim``; nothing elsewhere).

    Reading meter data leaves tens of MB of freed small blocks on the heap (about 30 MB for 28 days of 1-minute
    data for 55 customers); a replay calls this once its inputs are loaded, before its first power-flow batch.
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        malloc_trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return
    malloc_trim(0)


def _mallopt(param: int, value: int) -> None:
    name = ctypes.util.find_library("c")
    if name is not None:
        ctypes.CDLL(name).mallopt(param, value)


@contextmanager
def batches_on_the_heap() -> Iterator[None]:
    """While a network-only run's blocks go (in a process that fixed the mmap threshold): the power flow's batch
    arrays from the heap, kept there between blocks, then the 1 MiB threshold again and the heap trimmed. Only
    there: blocks are of one size (``batch_ticks``), whereas the batches of a controlled run vary in size and
    would fragment the heap.

    Each array above the 1 MiB threshold is a fresh mapping, and every page of it faults in when first written:
    the IEEE feeder's 1440-state batch writes about 350 MB of results, so a 28-day replay spent 6–12 s of system
    CPU in page faults (more than its user time at load 9). Batches of equal size reuse the same heap pages
    instead; RSS does not creep within a run (measured: 28 days 606 MB after the ticks against 600 with
    mappings), and the data read before the run were trimmed away already (``trim_heap``).
    """
    if not _fixed:
        yield
        return
    _mallopt(M_MMAP_THRESHOLD, RUN_MMAP_THRESHOLD_BYTES)
    _mallopt(M_TRIM_THRESHOLD, RUN_TRIM_THRESHOLD_BYTES)
    try:
        yield
    finally:
        _mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
        _mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
        trim_heap()
