"""The parent side of mphost.Pool's supervision: the policy the pool's
engine (multiprocessing._pool_engine) consults through its hooks.

- Calls with a time limit have their function wrapped (mphost._pool_slot
  .timed) so that the worker stamps each task's start and deadlines in
  its board slot; such calls are not batched (a message is one task, or
  one chunk of a map).
- One watchdog thread per pool, started when a timed call is submitted and
  gone when none is pending, sleeps until the earliest deadline it knows:
  the deadlines of the tasks running now, and now + the shortest limit of
  the pending calls (a task not started yet cannot expire before that).
  At a soft deadline it signals the worker; at a hard one it kills it
  (SIGKILL) and notes the pid, so that the engine fails the lost task with
  TaskTimeoutError instead of WorkerLostError.
- Unexpected deaths (a non-zero exit: crash, signal, a timeout kill) are
  counted; past max_restarts the pool stops replacing workers and fails
  its outstanding calls with PoolBrokenError.
- A slot's counters are added to the slot's totals when its worker exits,
  before the slot is cleared for the next one; insights() adds the live
  workers' counters to them.
"""

import math
import os
import shutil
import signal
import tempfile
import threading
import time
import weakref

from multiprocessing._pool_tasks import TERMINATE
from multiprocessing._pool_worker import _SLOT_CELLS, WorkerLostError
from multiprocessing.pool import IMapIterator

from . import _pool_slot as cell
from ._pool_errors import PoolBrokenError, TaskTimeoutError
from ._pool_insights import Insights, WorkerInsight

__all__ = []

# Totals of the workers a slot has had, kept when each exits.
_OCCUPANTS, _DEATHS, _TASKS, _BUSY, _WAITING, _SENDING, _PEAK, _LIFETIME = range(8)


def _ignore_length(length):
    return True


def _fail_call(exc, result):
    """Fail a pending call as a whole (engine lock held); True if final."""
    if isinstance(result, IMapIterator):
        # The error takes the next position and the iterator ends there;
        # the sender's later report of the length must not reopen it.
        result._lose(result._index, 1, exc)
        result._set_length(result._index)
        result._set_length = _ignore_length
        return True
    return result._lose(0, 1, exc)


def _signal(pid, signum):
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass                          # it exited meanwhile: reaped as any exit


def _remove_spool(path, owner):
    if os.getpid() == owner:          # never from a forked copy of the parent
        shutil.rmtree(path, ignore_errors=True)


def _peak_of(pid):
    """VmHWM of a live process, in bytes (0 if it cannot be read)."""
    try:
        with open(f'/proc/{pid}/status', 'rb') as f:
            for line in f:
                if line.startswith(b'VmHWM:'):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


class _CallLimits:
    """The time limits of the call being submitted by this thread: set by
    the outermost mphost.Pool method (apply() calls apply_async(), map()
    may call other methods: the outer call's limits hold)."""

    __slots__ = ('local', 'limits', 'owner')

    def __init__(self, local, limits):
        self.local = local
        self.limits = limits
        self.owner = False

    def __enter__(self):
        if getattr(self.local, 'limits', None) is None:
            self.local.limits = self.limits
            self.owner = True

    def __exit__(self, *exc):
        if self.owner:
            self.local.limits = None


class Supervisor:
    """The engine hooks of one mphost.Pool (see the module's docstring)."""

    def __init__(self, task_timeout, soft_timeout, max_memory, max_restarts):
        self.task_timeout = task_timeout
        self.soft_timeout = soft_timeout
        self.max_restarts = max_restarts
        self.worker_kit = cell.WorkerKit(max_memory)
        self.engine = None
        self.cells = None
        self.broken = None            # the PoolBrokenError, once given up
        self.deaths = 0
        self._local = threading.local()
        self._lock = threading.Lock()
        self._alarm = threading.Condition(self._lock)
        self._watchdog = None         # the thread, while timed calls are pending
        self._stopped = False
        self._due = None              # ns the watchdog sleeps until (None: not sleeping)
        self._pending = {}            # job -> shortest limit of that call, ns
        self._shortest = 0            # shortest limit since the watchdog started, ns
        self._names = {}              # job -> name of the function of that call
        self._timed_out = {}          # pid -> (limit in s, start stamp) of the task it was killed for
        self._last_start = {}         # pid -> start stamp its slot showed when it was reaped
        self._totals = {}             # slot -> totals of its exited workers
        self._salvage = {}            # pid -> (outcomes spooled, running) of a dead worker
        self._finalizer = None

    # -- engine hooks ---------------------------------------------------------

    def bind(self, engine):
        self.engine = engine
        if engine.board is not None:
            self.cells = engine.board._cells
            engine.board.retire = self._retire
            shm = '/dev/shm' if os.path.isdir('/dev/shm') else None
            try:
                spool = tempfile.mkdtemp(prefix=f'mphost-spool-{os.getpid()}-', dir=shm)
            except OSError:
                return                # timed batches then lose what a killed worker held
            self.worker_kit.spool_dir = spool
            self._finalizer = weakref.finalize(self, _remove_spool, spool, os.getpid())

    def limits_for(self, func, hard, soft):
        """A context in which one call of func is submitted with these
        limits (seconds or None)."""
        name = getattr(func, '__qualname__', None) or type(func).__name__
        return _CallLimits(self._local, (hard, soft, name))

    def _limits(self):
        limits = getattr(self._local, 'limits', None)
        if limits is None:
            return self.task_timeout, self.soft_timeout, None
        return limits

    def submitted(self, task):
        hard, soft, name = self._limits()
        if not (hard or soft) or self.cells is None:
            return task
        job, i, func, args, kwds = task
        self._watch(job, hard, soft, name)
        return job, i, cell.timed(func, hard, soft), args, kwds

    def streamed(self, result, func, batchable):
        hard, soft, name = self._limits()
        if not (hard or soft) or self.cells is None:
            return func, batchable
        self._watch(result._job, hard, soft, name)
        return cell.timed(func, hard, soft), batchable

    def replacing(self, exited):
        """Count the unexpected deaths among the workers that exited
        [(pid, exitcode, ident, held)]; False once the pool gives up."""
        if self.broken is None and self.engine.state != TERMINATE:
            last = None
            for pid, exitcode, _, _ in exited:
                if exitcode:
                    self.deaths += 1
                    last = (pid, exitcode)
            if (last is not None and self.max_restarts is not None
                    and self.deaths > self.max_restarts):
                self._give_up(*last)
        return self.broken is None

    def lost_error(self, pid, exitcode, n, job, first):
        limit, start = self._timed_out.pop(pid, (None, None))
        if limit is None or self._last_start.pop(pid, None) != start:
            # Not killed, or killed as its task had just ended (a race of
            # microseconds): the task it held was lost, not timed out.
            return WorkerLostError(pid, exitcode, n)
        return self._timeout_error(pid, job, first, limit)

    def recover(self, pid, exitcode, batch, result):
        """A worker died holding this batch of a timed stream (engine lock
        held): deliver the outcomes its spool kept, fail the task it was
        running, send the tasks after that again. True if result is final."""
        n = len(batch)
        job, first = batch[0][0], batch[0][1]
        outcomes, running = self._salvage.get(pid, ((), None))
        if pid not in self._salvage:
            # Nothing known of its progress (no spool): the batch is lost.
            return result is not None and result._lose(
                first, n, self.lost_error(pid, exitcode, n, job, first))
        del self._salvage[pid]
        if result is None:
            return False
        done = False
        for i, outcome in enumerate(outcomes[:n], first):
            done = result._deliver(i, outcome) or done
        k = len(outcomes)
        if k < n and running is not None:
            if running:
                limit = self._timed_out.get(pid, (None, None))[0]
                exc = self._timeout_error(pid, job, first + k, limit)
            else:
                exc = WorkerLostError(pid, exitcode, 1)
            done = result._lose(first + k, 1, exc) or done
            k += 1
        self._timed_out.pop(pid, None)
        self._last_start.pop(pid, None)
        if k < n and not done:
            self.engine.taskqueue.put(batch[k:])
        return done

    def _timeout_error(self, pid, job, index, limit):
        result = self.engine.cache.get(job)
        size = getattr(result, '_chunksize', 1)
        what = f'task {index}' if size <= 1 else f'chunk {index} ({size} items)'
        name = self._names.get(job)
        of = f'job {job}' if name is None else f'job {job} ({name})'
        return TaskTimeoutError(f'{what} of {of} ran past task_timeout={limit:g} s; '
                                f'its worker {pid} was killed', limit, pid)

    # -- giving up --------------------------------------------------------

    def _give_up(self, pid, exitcode):
        engine = self.engine
        exc = PoolBrokenError(
            f'{self.deaths} pool workers died unexpectedly (max_restarts='
            f'{self.max_restarts}); the pool no longer replaces them')
        limit, _ = self._timed_out.get(pid, (None, None))
        exc.__cause__ = WorkerLostError(pid, exitcode) if limit is None else TaskTimeoutError(
            f'worker {pid} was killed past task_timeout={limit:g} s', limit, pid)
        self.broken = exc
        with engine._lock:
            # Nothing may wait for room that no worker will make.
            engine._window = 1 << 62
            engine._slot_cond.notify_all()
        for job in list(engine.cache):
            engine._settle_aside(job, lambda result: _fail_call(exc, result))

    def check(self):
        if self.broken is not None:
            raise PoolBrokenError(*self.broken.args) from self.broken.__cause__

    # -- the watchdog -----------------------------------------------------

    def _watch(self, job, hard, soft, name):
        shortest = int(min(x for x in (hard, soft) if x) * 1e9)
        with self._lock:
            self._names[job] = name
            self._pending[job] = min(self._pending.get(job, shortest), shortest)
            self._shortest = min(self._shortest or shortest, shortest)
            if self._watchdog is None:
                self._watchdog = threading.Thread(target=self._watch_loop, daemon=True,
                                                  name='mphost-pool-watchdog')
                self._watchdog.start()
            elif self._due is not None and time.monotonic_ns() + shortest < self._due:
                self._alarm.notify()

    def _watch_loop(self):
        engine, cache = self.engine, self.engine.cache
        try:
            while True:
                due = self._scan()
                with self._lock:
                    for job in [j for j in self._pending if j not in cache]:
                        del self._pending[job]
                        self._names.pop(job, None)
                    busy = self._pending or engine._inflight
                    if self._stopped or engine.state == TERMINATE or (due is None and not busy):
                        return
                    now = time.monotonic_ns()
                    if busy:
                        due = min(due or math.inf, now + self._shortest)
                    self._due = due
                    self._alarm.wait(max(due - now, 0) / 1e9)
                    self._due = None
        finally:
            with self._lock:
                self._watchdog = None
                self._shortest = 0

    def stop(self):
        """The pool is terminating: the watchdog leaves now."""
        if self._finalizer is not None:
            self._finalizer()
        with self._lock:
            self._stopped = True
            self._alarm.notify_all()

    def _scan(self):
        """Signal or kill the workers past their deadlines; return the
        earliest deadline still ahead (ns), or None."""
        engine, cells = self.engine, self.cells
        soonest = None
        with engine._pool_lock:
            now = time.monotonic_ns()
            for w, slot in list(engine.board._slot_of.items()):
                base = slot * _SLOT_CELLS
                start = cells[base + cell.RUN_START]
                if not start:
                    continue
                seq = cells[base + cell.RUN_SEQ]
                hard = cells[base + cell.RUN_HARD]
                soft = cells[base + cell.RUN_SOFT]
                if cells[base + cell.RUN_START] != start:
                    continue          # that task ended meanwhile
                if hard and now >= hard:
                    if w.exitcode is None:
                        self._timed_out[w.pid] = ((hard - start) / 1e9, start)
                        _signal(w.pid, signal.SIGKILL)
                    continue
                if soft and cells[base + cell.SOFT_SENT] != seq:
                    if now >= soft:
                        cells[base + cell.SOFT_SENT] = seq
                        if w.exitcode is None:
                            _signal(w.pid, cell.SOFT_SIGNAL)
                    elif soonest is None or soft < soonest:
                        soonest = soft
                if hard and (soonest is None or hard < soonest):
                    soonest = hard
        return soonest

    # -- insights ---------------------------------------------------------

    def _retire(self, slot, worker):
        """Keep the counters of a worker whose slot is being given back
        (engine's worker lock held)."""
        cells, base = self.cells, slot * _SLOT_CELLS
        totals = self._totals.setdefault(slot, [0] * 8)
        totals[_OCCUPANTS] += 1
        if worker.exitcode and self.engine.state != TERMINATE:
            totals[_DEATHS] += 1
        start = cells[base + cell.RUN_START]
        if worker.pid in self._timed_out:
            self._last_start[worker.pid] = start
        spooled = cells[base + cell.SPOOLED]
        if self.worker_kit.spool_dir is not None:
            # What a timed batch it held got done (see recover()); the task
            # running counts as timed out if it is the one it was killed for.
            limit, killed_at = self._timed_out.get(worker.pid, (None, None))
            running = None if not start else (limit is not None and killed_at == start)
            try:
                outcomes = cell.read_spool(
                    cell.spool_path(self.worker_kit.spool_dir, slot), spooled)
            except OSError:
                outcomes = ()
            if len(outcomes) == spooled:  # else unknown: recover() fails the batch
                if len(self._salvage) >= 64:  # of deaths whose batch was answered
                    del self._salvage[next(iter(self._salvage))]
                self._salvage[worker.pid] = (outcomes, running)
            cells[base + cell.SPOOLED] = 0
        totals[_TASKS] += cells[base + cell.TASKS]
        totals[_BUSY] += cells[base + cell.BUSY]
        totals[_WAITING] += cells[base + cell.WAITING]
        totals[_SENDING] += cells[base + cell.SENDING]
        totals[_PEAK] = max(totals[_PEAK], cells[base + cell.PEAK_RSS])
        if cells[base + cell.BORN]:
            totals[_LIFETIME] += cells[base + cell.SEEN] - cells[base + cell.BORN]

    def insights(self):
        engine, cells = self.engine, self.cells
        rows = []
        if cells is None:
            return Insights(rows)
        with engine._pool_lock:
            now = time.monotonic_ns()
            living = {slot: w for w, slot in engine.board._slot_of.items()}
            for slot in sorted(set(living) | set(self._totals)):
                totals = list(self._totals.get(slot, [0] * 8))
                w = living.get(slot)
                pid = None
                if w is not None:
                    base = slot * _SLOT_CELLS
                    pid = w.pid
                    totals[_OCCUPANTS] += 1
                    totals[_TASKS] += cells[base + cell.TASKS]
                    totals[_BUSY] += cells[base + cell.BUSY]
                    totals[_WAITING] += cells[base + cell.WAITING]
                    since = cells[base + cell.WAIT_SINCE]
                    if since:                 # waiting now
                        totals[_WAITING] += max(now - since, 0)
                    totals[_SENDING] += cells[base + cell.SENDING]
                    totals[_PEAK] = max(totals[_PEAK], cells[base + cell.PEAK_RSS],
                                        _peak_of(pid))
                    if cells[base + cell.BORN]:
                        totals[_LIFETIME] += now - cells[base + cell.BORN]
                rows.append(WorkerInsight(
                    slot=slot, pid=pid, tasks=totals[_TASKS],
                    busy=totals[_BUSY] / 1e9,
                    idle=max(totals[_LIFETIME] - totals[_BUSY], 0) / 1e9,
                    waiting=totals[_WAITING] / 1e9, sending=totals[_SENDING] / 1e9,
                    peak_rss=totals[_PEAK], restarts=max(totals[_OCCUPANTS] - 1, 0),
                    deaths=totals[_DEATHS]))
        return Insights(rows)
