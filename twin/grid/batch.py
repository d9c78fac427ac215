"""Solving ahead without changing semantics: when a look-ahead of the meter data is available (replays), the next
``batch_ticks`` ticks are solved as one batch, assuming the customers' phases do not change. Every tick the role
still builds the injections from the readings that actually arrived and the phases actually in force, and uses
the pre-solved row only if those inputs are bit-for-bit the ones that were solved; otherwise it solves again
from that tick. So results equal tick-by-tick solving, and a decision that changes a phase costs one re-solve.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from twin.grid.counters import GridCounters
from twin.grid.tick_metrics import Block, TickMetrics
from twin.powerflow import PowerFlow, PowerFlowNotConverged

Lookahead = Callable[[int, int], tuple[np.ndarray, np.ndarray]]
Injections = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
LineClosed = Callable[[int, int], np.ndarray | None]
MIN_BATCH = 16
RETRY_BATCH = 64


class BatchSolver:
    """The solved block a tick's row comes from, solved again when a tick's inputs differ from the block's.

    The role's injections and line states come with each call, not stored: a stored bound method of the role
    would make a reference cycle that only the cyclic collector frees (a finished replay must not need it)."""

    def __init__(self, *, powerflow: PowerFlow, metrics: TickMetrics, counters: GridCounters,
                 lookahead: Lookahead | None, batch_ticks: int) -> None:
        self._powerflow, self._metrics, self.counters = powerflow, metrics, counters
        self._lookahead = lookahead
        self._batch_ticks = max(1, batch_ticks)
        self._ahead = self._batch_ticks
        self._retry_tick = 0
        self._block: Block | None = None

    def solved(self, tick: int, p: np.ndarray, q: np.ndarray, *, injections: Injections,
               line_closed: LineClosed) -> tuple[Block, int]:
        b = self._block
        resolve = False
        if b is not None:
            row = tick - b.first_tick
            if 0 <= row < b.p_kw.shape[0] and np.array_equal(b.p_kw[row], p) and np.array_equal(b.q_kvar[row], q):
                self.counters.cache_hits += 1
                return b, row
            resolve = 0 <= row < b.p_kw.shape[0]
            self._adapt_lookahead(tick=tick, used=row, size=b.p_kw.shape[0])
        # The spent block goes before the next is solved: one block's results at the peak, not two.
        self._block = b = None
        if self._ahead == 1 and tick >= self._retry_tick:
            self._ahead = min(self._batch_ticks, RETRY_BATCH)
        if self._lookahead is not None and self._ahead > 1:
            ahead_p, ahead_q = self._lookahead(tick, self._ahead)
            batch_p, batch_q = injections(ahead_p, ahead_q)
            batch_p[0], batch_q[0] = p, q
        else:
            batch_p, batch_q = p[None], q[None]
        self._block = self._solve(tick, batch_p, batch_q, line_closed=line_closed, resolve=resolve)
        return self._block, 0

    def solve_block(self, tick: int, p: np.ndarray, q: np.ndarray, *, line_closed: LineClosed) -> Block:
        """Ticks ``tick ..`` whose injections ``p``/``q`` [k, customers, 3] are known to be final (no device, no
        controller): one solve, the same batch the tick-by-tick path would solve ahead."""
        self._block = None
        self.counters.cache_hits += p.shape[0] - 1  # as tick by tick: every tick after the first from the block
        return self._solve(tick, p, q, line_closed=line_closed, resolve=False, angles=False)

    def _solve(self, tick: int, batch_p: np.ndarray, batch_q: np.ndarray, *, line_closed: LineClosed,
               resolve: bool, angles: bool = True) -> Block:
        """``angles=False``: a block's rows are recorded without voltage angles (``StateRows``), so the engine may
        leave them out of its bus pass (``PowerFlowResult.leave_out``)."""
        cpu_start_s = time.process_time()
        failed: frozenset[int] = frozenset()
        try:
            result = self._powerflow.solve(p_kw=batch_p, q_kvar=batch_q,
                                           line_closed=line_closed(tick, batch_p.shape[0]))
        except PowerFlowNotConverged as err:
            result, failed = err.partial, frozenset(err.failed_indices)
        if not angles:
            result.leave_out("va_deg")
        block = self._metrics.block(tick, batch_p, batch_q, result, failed)
        c, cpu_s = self.counters, time.process_time() - cpu_start_s
        c.solves += 1
        c.states_solved += batch_p.shape[0]
        c.solve_cpu_s += cpu_s
        if resolve:
            c.resolves += 1
            c.resolve_cpu_s += cpu_s
        return block

    def _adapt_lookahead(self, *, tick: int, used: int, size: int) -> None:
        """Solve as far ahead as the inputs have lately stayed predictable. A block invalidated after ``used``
        rows sets the next one to that size, or to single solves for RETRY_BATCH ticks when fewer than
        MIN_BATCH rows were used (a batch call costs about three single ones); a fully used block doubles.
        Devices that change the injections every tick (a self-consuming battery) thus cost single solves."""
        if 0 <= used < size:
            if used >= MIN_BATCH:
                self._ahead = used
            else:
                self._ahead, self._retry_tick = 1, tick + RETRY_BATCH
        else:
            self._ahead = min(self._batch_ticks, 2 * size)
