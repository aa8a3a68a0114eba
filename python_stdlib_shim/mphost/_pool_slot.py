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
  SPOOLED    tasks of the batch being run whose outcome is in the slot's
             spool file (see below); 0 between batches. The task running
             (RUN_START non-zero) is always the batch's task SPOOLED.

CLOCK_MONOTONIC is system-wide, so the parent compares these stamps with
its own clock. Counters are per message (a batch of tasks is one); the
per-task stamps are written only for tasks whose call has a time limit,
by the wrapper the parent puts around their function (timed()).

The spool: a timed map is sent in batches like any other, so a worker
killed at a task of a batch holds outcomes of earlier tasks that were never
sent. Each timed task of a batch therefore appends its pickled outcome to
the slot's spool file (a file in the pool's spool directory, on tmpfs:
records of an 8-byte length and the pickle) before it clears RUN_START,
then counts it in SPOOLED. After the worker's death the parent reads the
SPOOLED outcomes there, fails the one running task, and sends the tasks
after it again: none is lost, none runs twice. The batch's answer still
travels as one message; SPOOLED is cleared once it is sent.
"""

import functools
import mmap
import os
import struct
import resource
import signal
import time

from multiprocessing._pool_worker import (_BATCH, _MARK_CELLS, _SLOT_CELLS,
                                         ExceptionWithTraceback, MaybeEncodingError,
                                         _encodable, _run_batch, _sendable_failure)
from multiprocessing.reduction import ForkingPickler

from ._pool_errors import SoftTimeLimitExceeded

__all__ = []

(RUN_START, RUN_SEQ, RUN_HARD, RUN_SOFT, SOFT_SENT, TASKS, BUSY, WAITING, SENDING,
 PEAK_RSS, BORN, SEEN, WAIT_SINCE, SPOOLED) = range(_MARK_CELLS, _MARK_CELLS + 14)
assert SPOOLED < _SLOT_CELLS

_RECORD = struct.Struct('<Q')     # the length before each spooled outcome
_SPOOL_MAP = 1 << 20              # bytes of a spool written through a mapping

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
        self.spool_dir = None         # set by the parent before workers start
        self.run_batch = None         # the worker loop's, once attached

    def attach(self, tracking, take, put):
        global _here
        if tracking is None:
            return take, put          # no slot: the worker runs unsupervised
        board, slot, _ = tracking
        here = _here = _Slot(slot_cells(board), slot * _SLOT_CELLS, self)
        if self.spool_dir is not None:
            here.spool_path = spool_path(self.spool_dir, slot)
            self.run_batch = here.run_batch
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
        self.spool_path = None
        self.spool_fd = None
        self.spool_map = None         # the spool's first _SPOOL_MAP bytes, mapped
        self.spooled = 0              # outcomes of it in the spool ...
        self.spool_end = 0            # ... which end at this offset
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
                if self.spooled:
                    # Answered: the spool no longer speaks for a batch.
                    cells[base + SPOOLED] = self.spooled = self.spool_end = 0
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

    def run_batch(self, tasks, put, pid, ident, wrap_exception):
        """The worker loop's _run_batch, for batches of timed tasks: each
        task stamped as run_timed() does, its outcome spooled. A
        BaseException other than Exception ends the worker with RUN_START
        set: its task counts as started and unanswered, never sent again."""
        func = tasks[0][2]
        if type(func) is not functools.partial or func.func is not _run_timed:
            return _run_batch(tasks, put, pid, ident, wrap_exception)
        hard_ns, soft_ns, inner = func.args
        if soft_ns and not self.soft_ready:
            signal.signal(SOFT_SIGNAL, self.on_soft_signal)
            self.soft_ready = True
        cells, base = self.cells, self.base
        clock = time.monotonic_ns
        job, first = tasks[0][0], tasks[0][1]
        results = []
        run_seq, run_start, run_hard, run_soft, spooled = (
            base + RUN_SEQ, base + RUN_START, base + RUN_HARD, base + RUN_SOFT, base + SPOOLED)
        cells[run_hard] = cells[run_soft] = 0     # the limits not set stay 0
        seq = cells[run_seq]
        # The spool (see the module's docstring): each outcome is pickled
        # straight into its mapped part by a pickler kept for the batch (a
        # new one per batch sees reducers registered since).
        if self.spool_map is None:
            self.open_spool()
        mapped = self.spool_map
        seek, tell, pack_into, head = mapped.seek, mapped.tell, _RECORD.pack_into, _RECORD.size
        pickler = ForkingPickler(mapped)
        end, count = self.spool_end, self.spooled
        started = time.perf_counter()
        for _, _, _, args, kwds in tasks:
            seq += 1
            start = clock()
            if hard_ns:
                cells[run_hard] = start + hard_ns
            if soft_ns:
                cells[run_soft] = start + soft_ns
            cells[run_seq] = seq
            cells[run_start] = start
            try:
                outcome = (True, inner(*args, **kwds))
            except Exception as e:
                outcome = ((False, e) if not wrap_exception else
                           _sendable_failure(ExceptionWithTraceback(e, e.__traceback__)))
                e = None
            if soft_ns:
                self.soft_raised = seq   # the task ended: no soft signal raises now
            try:
                seek(end + head)
                pickler.clear_memo()
                pickler.dump(outcome)
                stop = tell()
                pack_into(mapped, end, stop - end - head)
            except Exception:
                # Past the mapped part (the file grows), or it would not pickle.
                stop = self.spool_beyond(outcome, end)
                pickler = ForkingPickler(mapped)
            end = stop
            count += 1
            # Counted, then ended: the task running is always task SPOOLED.
            cells[spooled] = count
            cells[run_start] = 0
            results.append(outcome)
        spent = time.perf_counter() - started
        self.spool_end, self.spooled = end, count
        try:
            put((_BATCH, pid, ident, spent, job, first, results))
        except Exception:
            put((_BATCH, pid, ident, spent, job, first, [_encodable(r) for r in results]))
        return len(tasks)

    def spool_beyond(self, outcome, end):
        """Write an outcome's record at offset `end` with pwritev (past the
        mapped part, or a failure to pickle it); return where it ends."""
        try:
            data = ForkingPickler.dumps(outcome)
        except Exception as e:
            data = ForkingPickler.dumps((False, MaybeEncodingError(e, outcome[1])))
        os.pwritev(self.spool_fd, (_RECORD.pack(len(data)), data), end)
        return end + _RECORD.size + len(data)

    def open_spool(self):
        fd = os.open(self.spool_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        os.ftruncate(fd, _SPOOL_MAP)  # sparse: tmpfs pages come as they are written
        self.spool_map = mmap.mmap(fd, _SPOOL_MAP)
        self.spool_fd = fd

    def on_soft_signal(self, signum, frame):
        # Raise only into the task the parent meant: the same one still runs.
        cells, base = self.cells, self.base
        seq = cells[base + RUN_SEQ]
        if cells[base + RUN_START] and cells[base + SOFT_SENT] == seq != self.soft_raised:
            self.soft_raised = seq
            limit = (cells[base + RUN_SOFT] - cells[base + RUN_START]) / 1e9
            raise SoftTimeLimitExceeded(f'soft time limit ({limit:g} s) exceeded')


def spool_path(directory, slot):
    return os.path.join(directory, str(slot))


def read_spool(path, count):
    """The first `count` outcomes in a dead worker's spool file, as the
    batch's answer would have carried them."""
    outcomes = []
    if not count:
        return outcomes
    with open(path, 'rb') as f:
        for _ in range(count):
            head = f.read(_RECORD.size)
            if len(head) < _RECORD.size:
                break
            data = f.read(_RECORD.unpack(head)[0])
            try:
                outcomes.append(ForkingPickler.loads(data))
            except Exception as e:
                outcomes.append((False, e))
    return outcomes


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
