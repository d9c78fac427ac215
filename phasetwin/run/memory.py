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

log = logging.getLogger(__name__)
M_MMAP_THRESHOLD = -3
"""mallopt parameter number (glibc malloc.h)."""
M_TRIM_THRESHOLD = -1
"""mallopt parameter number (glibc malloc.h)."""
MMAP_THRESHOLD_BYTES = 1 << 20
TRIM_THRESHOLD_BYTES = 4 << 20


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
