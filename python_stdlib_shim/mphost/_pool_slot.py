"""The worker side of mphost.Pool's supervision: what a worker writes into
its slot of the pool's task board (shared memory, one row of unsigned
64-bit cells per worker, see multiprocessing._pool_board), and the
wrappers that write it.

Cells after the board's own marks (multiprocessing._pool_worker._MARK_CELLS)::

  RUN_START  CLOCK_MONOTONIC ns at which the running timed task started;
             0 while no timed task runs (written last when a task starts,
             so a reader that sees it non-zero sees the cells below too)
  RUN_SEQ    number of timed tasks this worker started (names the running one)
  RUN_HARD   ns deadline of its task_timeout, 0 for none
  RUN_SOFT   ns deadline of its soft_timeout, 0 for none
  SOFT_SENT  RUN_SEQ of the task the parent sent the soft signal for
             (the only cell the parent writes)
  TASKS      tasks answered         BUSY     ns spent running them
  WAITING    ns spent waiting for (and unpickling) messages
  SENDING    ns spent sending results
  PEAK_RSS   peak resident memory, bytes (updated at most every
             _RSS_EVERY_NS and when the worker leaves)
  BORN       ns when the worker started taking tasks
  SEEN       ns of the last update of the counters
  WAIT_SINCE ns at which the current wait for a message began, 0 when
             not waiting

CLOCK_MONOTONIC is system-wide, so the parent compares these stamps with
its own clock. Counters are per message (a batch of tasks is one); the
per-task stamps are written only for tasks whose call has a time limit,
by the wrapper the parent puts around their function (timed()).
"""

import functools
import os
import resource
import signal
import time

from multiprocessing._pool_worker import _MARK_CELLS, _SLOT_CELLS

from ._pool_errors import SoftTimeLimitExceeded

__all__ = []

(RUN_START, RUN_SEQ, RUN_HARD, RUN_SOFT, SOFT_SENT, TASKS, BUSY, WAITING, SENDING,
 PEAK_RSS, BORN, SEEN, WAIT_SINCE) = range(_MARK_CELLS, _MARK_CELLS + 13)
assert WAIT_SINCE < _SLOT_CELLS

# The signal the parent sends at a soft time limit (billiard's choice).
SOFT_SIGNAL = signal.SIGUSR1

_RSS_EVERY_NS = 100_000_000
_PAGE = os.sysconf('SC_PAGE_SIZE')

# The slot of this worker process (a _Slot), once a supervised worker
# attached; None in the parent and in workers of other pools.
_here = None


def slot_cells(board):
    """The board's cells as a flat memoryview of unsigned 64-bit ints."""
    return memoryview(board).cast('B').cast('Q')


class WorkerKit:
    """What a supervised worker gets from its pool (pickled to it with the
    worker's other arguments): the memory bound. attach() is called by the
    worker loop with its tracking (board, slot, how) and its take and put;
    it returns them wrapped. `leaving` turns true when the worker should
    exit after the message it just answered."""

    def __init__(self, max_memory):
        self.max_memory = max_memory
        self.leaving = False

    def attach(self, tracking, take, put):
        global _here
        if tracking is None:
            return take, put          # no slot: the worker runs unsupervised
        board, slot, _ = tracking
        here = _here = _Slot(slot_cells(board), slot * _SLOT_CELLS, self)
        return here.wrap_take(take), here.wrap_put(put)


class _Slot:
    """This worker's row of cells and its bookkeeping between messages."""

    def __init__(self, cells, base, kit):
        self.cells = cells
        self.base = base
        self.kit = kit
        self.taken_at = 0
        self.rss_at = 0
        self.soft_ready = False
        self.soft_raised = 0
        self.statm = None
        now = time.monotonic_ns()
        cells[base + BORN] = cells[base + SEEN] = now
        self.note_peak(now)

    def note_peak(self, now):
        self.rss_at = now
        self.cells[self.base + PEAK_RSS] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def wrap_take(self, take):
        cells, waiting, since = self.cells, self.base + WAITING, self.base + WAIT_SINCE
        clock = time.monotonic_ns

        def take_counted():
            cells[since] = began = clock()
            try:
                return take()
            finally:
                self.taken_at = now = clock()
                cells[since] = 0
                cells[waiting] += now - began
        return take_counted

    def wrap_put(self, put):
        cells, base = self.cells, self.base
        clock = time.monotonic_ns
        limit = self.kit.max_memory

        def put_counted(msg):
            # Counted before the answer leaves: a caller that has its result
            # sees the task in the counters.
            began = clock()
            taken, self.taken_at = self.taken_at, 0
            ntasks = (len(msg[6]) if msg[0] == 2 else 1) if taken else 0
            cells[base + BUSY] += began - taken if taken else 0
            cells[base + TASKS] += ntasks
            try:
                put(msg)
            except Exception:
                # The loop sends a replacement answer, counted then.
                cells[base + TASKS] -= ntasks
                self.taken_at = began
                raise
            now = clock()
            cells[base + SENDING] += now - began
            cells[base + SEEN] = now
            if now - self.rss_at > _RSS_EVERY_NS:
                self.note_peak(now)
            if limit and self.resident() > limit:
                self.kit.leaving = True
                self.note_peak(now)
        return put_counted

    def resident(self):
        """Current resident memory in bytes (/proc/self/statm, read with
        one pread on a descriptor kept open)."""
        if self.statm is None:
            self.statm = os.open('/proc/self/statm', os.O_RDONLY | os.O_CLOEXEC)
        fields = os.pread(self.statm, 64, 0).split()
        return int(fields[1]) * _PAGE

    # -- timed tasks ------------------------------------------------------

    def run_timed(self, func, args, kwds, hard_ns, soft_ns):
        cells, base = self.cells, self.base
        if soft_ns and not self.soft_ready:
            signal.signal(SOFT_SIGNAL, self.on_soft_signal)
            self.soft_ready = True
        seq = cells[base + RUN_SEQ] + 1
        start = time.monotonic_ns()
        cells[base + RUN_HARD] = start + hard_ns if hard_ns else 0
        cells[base + RUN_SOFT] = start + soft_ns if soft_ns else 0
        cells[base + RUN_SEQ] = seq
        cells[base + RUN_START] = start
        try:
            return func(*args, **kwds)
        finally:
            cells[base + RUN_START] = 0

    def on_soft_signal(self, signum, frame):
        # Raise only into the task the parent meant: the same one still runs.
        cells, base = self.cells, self.base
        seq = cells[base + RUN_SEQ]
        if cells[base + RUN_START] and cells[base + SOFT_SENT] == seq != self.soft_raised:
            self.soft_raised = seq
            limit = (cells[base + RUN_SOFT] - cells[base + RUN_START]) / 1e9
            raise SoftTimeLimitExceeded(f'soft time limit ({limit:g} s) exceeded')


def timed(func, hard, soft):
    """func with its call's time limits (seconds, or None): run in a
    supervised worker, each call's start and deadlines go to the worker's
    slot for the parent's watchdog. A functools.partial, which pickles and
    unpickles without any Python-level code (it travels with every task)."""
    return functools.partial(_run_timed, int(hard * 1e9) if hard else 0,
                             int(soft * 1e9) if soft else 0, func)


def _run_timed(hard_ns, soft_ns, func, *args, **kwds):
    here = _here
    if here is None:
        return func(*args, **kwds)
    return here.run_timed(func, args, kwds, hard_ns, soft_ns)
