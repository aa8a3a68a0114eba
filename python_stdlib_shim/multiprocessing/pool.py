"""Pools of worker processes (Pool) or threads (ThreadPool) and their results.

How a task travels through a process Pool::

  caller threads          parent helper threads                 worker processes
  --------------          ---------------------                 ----------------
  apply_async --(window has room)-------------------+
       |                                            v
       +--(window full)--+                      inqueue ---------> worker()
  map / imap --stream----+--> _taskqueue --> task    (ctx.            | notes the task on
                              (local)       handler   SimpleQueue)     | its board slot,
                                       batches, keeps                  | runs it, replies
                                       the window                      v
  get() / next() <---- reader role <------------------------------ outqueue
    a caller that waits reads the outqueue itself;              (ctx.SimpleQueue)
    when nobody waits the result handler thread does                   ^
                                                                       |
         task board (ctx.RawArray) --read after a death--> worker handler: EXITED
         one slot per worker             connection.wait on the sentinels;
                                         starts replacements

- Tasks are the stdlib's ``(job, i, func, args, kwds)`` tuples, one per
  chunk. A map, starmap or imap call is a stream of them, which the task
  handler sends in batches: lists of consecutive tasks of that call, sized
  from the measured cost of its earlier tasks so that a batch is about
  ``_BATCH_SECONDS`` of work. Chunks stay the unit of the stdlib's semantics
  (chunksize, order of results, where errors appear); batches only spread
  the cost of a message over many tasks. apply_async tasks are never batched.
- At most ``_window`` messages are in flight (sent, not yet answered): the
  task handler consumes lazy iterables at the workers' pace, and batch sizes
  follow the measurements. While the window has room, apply_async puts its
  task on the inqueue from the caller's own thread.
- Before running a task or batch, a worker writes (job, first index, count,
  seq) in its slot of the task board, and every reply carries the seq it
  answers; no message is spent on this. When a worker dies, the worker
  handler reads its slot and posts EXITED on the outqueue, behind everything
  the worker wrote. If the slot names a task that was not answered, whoever
  reads EXITED fails that task with WorkerLostError (a
  multiprocessing.ProcessError naming the pid and the signal or exit code):
  a map fails as a whole, an imap yields the error at the positions of the
  lost batch. The worker handler has meanwhile started a replacement.
  Without a board (no shared memory), workers announce tasks with STARTED
  messages instead.
- One thread at a time reads the outqueue (the reader role). A caller
  blocked in get(), wait() or next() takes the role and reads its own
  results, which saves a hand-off between threads per result; the result
  handler thread steps aside while callers wait and takes the role back once
  nobody has waited for ``_GRACE`` seconds (for callbacks and the window).
  A thread wakes the reader through an eventfd, never through the outqueue,
  whose writers may be waiting for that very reader. Callbacks run in
  whichever thread reads, one at a time.

A ThreadPool runs the same machinery with worker threads and in-process
queues; nothing is pickled and worker deaths are not tracked.
"""

import collections
import itertools
import math
import os
import queue
import select
import signal
import sys
import threading
import time
import traceback
import types
import warnings

from . import util
from .connection import wait
from .context import ProcessError, TimeoutError

__all__ = ['Pool', 'ThreadPool']

#
# Pool states
#

INIT = 'INIT'
RUN = 'RUN'
CLOSE = 'CLOSE'
TERMINATE = 'TERMINATE'

# Numbers the calls (jobs) of every pool of this process.
job_counter = itertools.count()

# Tags of the messages workers (and the worker handler) put on the outqueue.
# `seq` numbers the tasks and batches one worker took (1, 2, ...).
_STARTED = 0   # (_STARTED, pid, seq, job, first index, number of tasks)
_DONE = 1      # (_DONE, pid, seq, job, index, (success, value))
_BATCH = 2     # (_BATCH, pid, seq, seconds spent, job, first index, [(success, value), ...])
_EXITED = 3    # (_EXITED, pid, exitcode, held), put by the parent; held is
               # (job, first index, number of tasks, seq) or None
# A worker's slot on the task board: job, first index, number of tasks, seq.
_SLOT_CELLS = 4

# A batch holds about this much work (seconds, measured in the workers) ...
_BATCH_SECONDS = 0.002
# ... and at most this many tasks; a batch grows at most this fast.
_MAX_BATCH = 4096
_BATCH_GROWTH = 8
# Messages in flight per worker (plus one).
_WINDOW_PER_WORKER = 2
# How long the result handler stays aside after the last waiting caller left.
_GRACE = 0.005
# How long an idle worker process polls for its next task before it sleeps
# in get(): a task that arrives meanwhile costs no wake-up of a sleeping
# process (tens of microseconds on other cores), which is most of a short
# task's round trip. Each miss halves the budget; after a few misses the
# worker stops polling and tries again every _SPIN_RETRY tasks.
_IDLE_SPIN_SECONDS = 0.0001
_SPIN_RETRY = 64
# How long a parent thread waiting for results waits with the outqueue's own
# poll() before it sleeps where other threads can wake it (_PipeResults).
_DIRECT_WAIT = 0.002

_NOTHING = object()


def mapstar(args):
    return list(map(*args))


def starmapstar(args):
    return list(itertools.starmap(args[0], args[1]))


#
# Exceptions that cross from workers to the caller
#

class RemoteTraceback(Exception):
    """The formatted traceback of an exception raised in a worker; it is
    the ``__cause__`` of the exception re-raised in the caller."""

    def __init__(self, tb):
        self.tb = tb

    def __str__(self):
        return self.tb


class ExceptionWithTraceback:
    """Carries an exception and its formatted traceback to the parent,
    where unpickling rebuilds the exception with a RemoteTraceback cause."""

    def __init__(self, exc, tb):
        text = ''.join(traceback.format_exception(type(exc), exc, tb))
        self.exc = exc
        self.tb = '\n"""\n%s"""' % text

    def __reduce__(self):
        return rebuild_exc, (self.exc, self.tb)


def rebuild_exc(exc, tb):
    exc.__cause__ = RemoteTraceback(tb)
    return exc


class MaybeEncodingError(Exception):
    """A task's result (or exception) could not be pickled back to the
    caller; keeps the reprs of the value and of the pickling error."""

    def __init__(self, exc, value):
        self.exc = repr(exc)
        self.value = repr(value)
        super().__init__(self.exc, self.value)

    def __str__(self):
        return f"Error sending result: '{self.value}'. Reason: '{self.exc}'"

    def __repr__(self):
        return f'<{type(self).__name__}: {self}>'


class WorkerLostError(ProcessError):
    """A pool worker died (killed by a signal, os._exit, a crash...) while it
    held tasks of a call; that call fails with this error. The pool starts a
    replacement worker and stays usable."""

    def __init__(self, pid, exitcode, ntasks=1):
        self.pid = pid
        self.exitcode = exitcode
        self.ntasks = ntasks
        if exitcode is not None and exitcode < 0:
            try:
                how = 'died with ' + signal.Signals(-exitcode).name
            except ValueError:
                how = f'died with signal {-exitcode}'
        else:
            how = f'exited with code {exitcode}'
        what = 'a task' if ntasks == 1 else f'a batch of {ntasks} tasks'
        super().__init__(f'worker {pid} {how} while running {what}')

    def __reduce__(self):
        return type(self), (self.pid, self.exitcode, self.ntasks)


def _one_argument(iterable):
    # A generator, so that a bad iterable fails in the task handler, at the
    # first position of the results, as it does with the stdlib.
    for x in iterable:
        yield (x,)


def _helper_reraises_exception(ex):
    """Kept for code that names it; the pool itself never sends it."""
    raise ex


#
# The worker loop
#

def _call(func, args, kwds, wrap_exception):
    try:
        return (True, func(*args, **kwds))
    except Exception as e:
        if not wrap_exception:
            return (False, e)
        if func is not _helper_reraises_exception:
            e = ExceptionWithTraceback(e, e.__traceback__)
        return _sendable_failure(e)


def _sendable_failure(exc):
    """(False, exc), or (False, MaybeEncodingError) if exc would not survive
    the trip to the parent. Exceptions whose __init__ wants other arguments
    than their args pickle fine but fail to unpickle, which would leave the
    parent without any answer for the task."""
    from .reduction import ForkingPickler
    try:
        ForkingPickler.loads(ForkingPickler.dumps(exc))
    except Exception as e:
        return (False, MaybeEncodingError(e, getattr(exc, 'exc', exc)))
    return (False, exc)


def _encodable(result):
    """result, or a failure carrying a MaybeEncodingError if it cannot be
    pickled."""
    from .reduction import ForkingPickler
    try:
        ForkingPickler.dumps(result[1])
        return result
    except Exception as e:
        return (False, MaybeEncodingError(e, result[1]))


def _task_marker(tracking, put, pid):
    """The function a worker calls before running a task or batch, telling
    the parent what it holds: in its slot of the pool's task board when it
    has one, else with a STARTED message. None when nothing is tracked."""
    if tracking is None:
        return None
    board, slot = tracking
    if board is None:
        def mark(seq, job, first, n):
            put((_STARTED, pid, seq, job, first, n))
        return mark
    cells = memoryview(board).cast('B').cast('q')
    base = slot * _SLOT_CELLS

    def mark(seq, job, first, n):
        cells[base] = job
        cells[base + 1] = first
        cells[base + 2] = n
        cells[base + 3] = seq      # written last: it validates the others
    return mark


def _spin_until_readable(poll, budget):
    """Poll (yielding the CPU in between) until there is something to read
    (True) or `budget` seconds passed (False)."""
    if poll(0):
        return True
    deadline = time.perf_counter() + budget
    pause = os.sched_yield
    while time.perf_counter() < deadline:
        pause()
        if poll(0):
            return True
    return False


def _run_batch(tasks, put, pid, seq, wrap_exception, mark):
    job, first = tasks[0][0], tasks[0][1]
    if mark is not None:
        mark(seq, job, first, len(tasks))
    started = time.perf_counter()
    results = [_call(func, args, kwds, wrap_exception) for _, _, func, args, kwds in tasks]
    spent = time.perf_counter() - started
    try:
        put((_BATCH, pid, seq, spent, job, first, results))
    except Exception:
        put((_BATCH, pid, seq, spent, job, first, [_encodable(r) for r in results]))
    return len(tasks)


def worker(inqueue, outqueue, initializer=None, initargs=(), maxtasks=None,
           wrap_exception=False, _tracking=None):
    """Body of a pool worker: take tasks from inqueue until told to stop
    (None) or maxtasks tasks are done; put their results on outqueue.

    With `_tracking` (given by Pool), the worker tells the parent which
    task it runs, so that its death fails that task instead of losing it.
    """
    if maxtasks is not None and not (isinstance(maxtasks, int) and maxtasks >= 1):
        raise AssertionError(f'Maxtasks {maxtasks!r} is not valid')
    put = outqueue.put
    get = inqueue.get
    if hasattr(inqueue, '_writer'):
        # This process only reads tasks and only writes results.
        inqueue._writer.close()
        outqueue._reader.close()
    if initializer is not None:
        initializer(*initargs)
    pid = os.getpid()
    mark = _task_marker(_tracking, put, pid)
    # Worker processes poll a little before sleeping; threads never do.
    reader = getattr(inqueue, '_reader', None)
    poll = reader.poll if reader is not None and _IDLE_SPIN_SECONDS else None
    budget = _IDLE_SPIN_SECONDS
    skipped = 0
    seq = 0            # numbers the tasks and batches this worker takes
    completed = 0
    while maxtasks is None or completed < maxtasks:
        try:
            if poll is not None:
                if budget:
                    if _spin_until_readable(poll, budget):
                        budget = _IDLE_SPIN_SECONDS
                    elif budget > _IDLE_SPIN_SECONDS / 8:
                        budget /= 2
                    else:
                        budget = 0
                else:
                    skipped += 1
                    if skipped >= _SPIN_RETRY:
                        budget, skipped = _IDLE_SPIN_SECONDS, 0
            msg = get()
        except (EOFError, OSError):
            util.debug('worker got EOFError or OSError -- exiting')
            break
        if msg is None:
            util.debug('worker got sentinel -- exiting')
            break
        seq += 1
        if type(msg) is list:
            completed += _run_batch(msg, put, pid, seq, wrap_exception, mark)
        else:
            job, i, func, args, kwds = msg
            if mark is not None:
                mark(seq, job, i, 1)
            result = _call(func, args, kwds, wrap_exception)
            try:
                put((_DONE, pid, seq, job, i, result))
            except Exception as e:
                wrapped = MaybeEncodingError(e, result[1])
                util.debug(f'Possible encoding error while sending result: {wrapped}')
                put((_DONE, pid, seq, job, i, (False, wrapped)))
            completed += 1
        # Drop references to the task before waiting for the next one.
        msg = job = func = args = kwds = result = None
    util.debug(f'worker exiting after {completed} tasks')


#
# Parent-side plumbing
#

class _Doorbell:
    """An eventfd that wakes the worker handler out of connection.wait."""

    def __init__(self):
        self._fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._lock = threading.Lock()

    def fileno(self):
        return self._fd

    def ring(self):
        with self._lock:
            if self._fd >= 0:
                try:
                    os.eventfd_write(self._fd, 1)
                except BlockingIOError:
                    pass

    def drain(self):
        with self._lock:
            if self._fd >= 0:
                try:
                    os.eventfd_read(self._fd)
                except BlockingIOError:
                    pass

    def close(self):
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


class _PipeResults:
    """How the parent receives from a process pool's outqueue. A blocked
    receive also wakes up when another thread calls wake(), which writes to
    an eventfd: waking a reader never has to put anything on the outqueue,
    whose writers may themselves be waiting for that reader.

    A receive first waits with the queue's own poll() for up to
    _DIRECT_WAIT seconds (mphost's channels spin, then sleep on a futex: a
    prompt reply arrives without a wake-up through the kernel), and only
    then sleeps in select.poll on the queue's descriptor and the eventfd.
    A wake() is therefore seen within _DIRECT_WAIT."""

    def __init__(self, outqueue, quick_get):
        self._poll = outqueue._reader.poll
        self._get = quick_get
        self._wakeup = _Doorbell()
        self._poller = select.poll()
        self._poller.register(outqueue._reader.fileno(), select.POLLIN)
        self._poller.register(self._wakeup.fileno(), select.POLLIN)

    def receive(self, timeout):
        """The next message, or _NOTHING after `timeout` seconds (None:
        no limit) or a wake()."""
        direct = _DIRECT_WAIT if timeout is None else min(_DIRECT_WAIT, max(timeout, 0))
        if self._poll(direct):
            return self._get()
        if timeout is not None:
            timeout -= direct
            if timeout <= 0:
                return _NOTHING
        ms = -1 if timeout is None else math.ceil(timeout * 1000)
        if any(fd == self._wakeup.fileno() for fd, _ in self._poller.poll(ms)):
            self._wakeup.drain()
        if self._poll(0):
            return self._get()
        return _NOTHING

    def drain(self):
        """Read and drop whatever is waiting (the pool is terminating)."""
        while self._poll(0):
            self._get()

    def wake(self):
        self._wakeup.ring()

    def close(self):
        self._wakeup.close()


class _LocalResults:
    """How a ThreadPool receives results: an in-process queue, woken up by
    a None message (an unbounded queue.SimpleQueue never blocks a put)."""

    def __init__(self, outqueue, quick_get):
        self._queue = outqueue
        self._get = quick_get

    def receive(self, timeout):
        try:
            return self._get(True, timeout)
        except queue.Empty:
            return _NOTHING

    def drain(self):
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass

    def wake(self):
        self._queue.put(None)

    def close(self):
        pass


class _PoolCache(dict):
    """Results not yet complete, by job. ``notifier`` is called whenever the
    cache becomes empty."""

    def __init__(self, /, *args, notifier=None, **kwds):
        self.notifier = notifier
        super().__init__(*args, **kwds)

    def __delitem__(self, item):
        super().__delitem__(item)
        if not self and self.notifier is not None:
            self.notifier()


class _Stream:
    """One map/imap call as the task handler sees it: the tasks still to
    send and the measured cost of those already run."""

    __slots__ = ('job', 'result', 'func', 'args', 'set_length', 'batchable',
                 'left', 'cost', 'size')

    def __init__(self, result, func, args, set_length, batchable, left):
        self.job = result._job
        self.result = result
        self.func = func
        self.args = args              # iterator of argument tuples, one per task
        self.set_length = set_length  # the result needs its length at the end
        self.batchable = batchable
        self.left = left              # tasks not yet sent, when known
        self.cost = None              # seconds per task, once measured
        self.size = 1                 # size of the last batch sent

    def observe(self, seconds, ntasks):
        cost = seconds / ntasks
        if self.cost is None or cost > self.cost:
            self.cost = cost          # slow-downs count at once
        else:
            self.cost = (self.cost + cost) / 2


class _Engine:
    """The machinery of one pool: queues, helper threads, worker upkeep and
    the routing of results. It holds no reference to the Pool object, so a
    pool that nobody references is collected (and its finalizer terminates
    the workers) even while the helper threads run."""

    def __init__(self, pool):
        cls = type(pool)
        self.ctx = pool._ctx
        self.Process = cls.Process
        self.processes = pool._processes
        self.initializer = pool._initializer
        self.initargs = pool._initargs
        self.maxtasks = pool._maxtasksperchild
        self.wrap_exception = pool._wrap_exception
        self.tracks_tasks = cls._tracks_tasks
        self.workers = pool._pool
        self.cache = pool._cache
        self.inqueue = pool._inqueue
        self.outqueue = pool._outqueue
        self.taskqueue = pool._taskqueue
        self.worker_sentinels = cls._get_worker_sentinels
        self.stop_workers = cls._help_stuff_finish
        self._put_task = pool._quick_put
        self._Results = cls._Results
        self._quick_get = pool._quick_get
        self.results = None           # made by start_threads
        self.state = RUN

        self.doorbell = _Doorbell()
        # The task board: one slot per worker where it notes the task it runs.
        self.board = None
        self._cells = None
        self._free_slots = []
        self._slot_of = {}           # worker -> its slot on the board
        if self.tracks_tasks:
            nslots = 2 * self.processes
            try:
                board = self.ctx.RawArray('q', nslots * _SLOT_CELLS)
                self._cells = memoryview(board).cast('B').cast('q')
            except Exception as e:   # no shared memory: workers send STARTED
                util.debug(f'pool runs without a task board: {e!r}')
            else:
                self.board = board
                self._free_slots = list(range(nslots - 1, -1, -1))
        self.cache.notifier = self._cache_emptied
        self._pool_lock = threading.RLock()   # guards the worker list
        self._put_lock = threading.Lock()     # parent threads writing the inqueue

        # Everything below is guarded by _lock.
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)       # callers waiting for results
        self._slot_cond = threading.Condition(self._lock)  # task handler waiting for room
        self._bg_cond = threading.Condition(self._lock)    # result handler stepping aside
        self._window = _WINDOW_PER_WORKER * self.processes + 1
        self._inflight = 0           # messages on the inqueue or held by workers
        self._slot_waiting = False
        self._held = {}              # pid -> (job, first, n, seq) from STARTED messages
        self._answered = {}          # pid -> seq of the last task it answered
        self._streams = {}           # job -> _Stream being sent
        self._reader = None          # ident of the thread holding the reader role
        self._bg_ident = None
        self._kicked = False
        self._nwaiters = 0           # callers inside wait_ready
        self._sleepers = 0           # threads waiting on _cond
        self._bg_resume_at = 0.0
        self._tasks_done = False
        self._readable = True

        self.worker_handler = threading.Thread(target=self._handle_workers, daemon=True)
        self.task_handler = threading.Thread(target=self._handle_tasks, daemon=True)
        self.result_handler = threading.Thread(target=self._handle_results, daemon=True)

    def start_threads(self):
        self.results = self._Results(self.outqueue, self._quick_get)
        self.worker_handler.start()
        self.task_handler.start()
        self.result_handler.start()

    # -- workers --------------------------------------------------------

    def repopulate(self):
        """Start workers until there are `processes` of them."""
        with self._pool_lock:
            for _ in range(self.processes - len(self.workers)):
                tracking, slot = None, None
                if self.tracks_tasks:
                    if self._free_slots:
                        slot = self._free_slots.pop()
                        base = slot * _SLOT_CELLS
                        for k in range(_SLOT_CELLS):
                            self._cells[base + k] = 0
                        tracking = (self.board, slot)
                    else:
                        tracking = (None, -1)
                w = self.Process(self.ctx, target=worker,
                                 args=(self.inqueue, self.outqueue, self.initializer,
                                       self.initargs, self.maxtasks,
                                       self.wrap_exception, tracking))
                w.name = w.name.replace('Process', 'PoolWorker')
                w.daemon = True
                try:
                    w.start()
                except BaseException:
                    if slot is not None:
                        self._free_slots.append(slot)
                    raise
                if slot is not None:
                    self._slot_of[w] = slot
                self.workers.append(w)
                util.debug('added worker')

    def join_exited(self):
        """Reap workers that exited; return [(pid, exitcode, held)] of them,
        held being what the board says the worker last took (or None)."""
        exited = []
        with self._pool_lock:
            for w in list(self.workers):
                if w.exitcode is not None:
                    util.debug(f'cleaning up worker {w.pid}')
                    w.join()
                    self.workers.remove(w)
                    held = None
                    slot = self._slot_of.pop(w, None)
                    if slot is not None:
                        base = slot * _SLOT_CELLS
                        job, first, n, seq = self._cells[base:base + _SLOT_CELLS]
                        if seq:
                            held = (job, first, n, seq)
                        self._free_slots.append(slot)
                    exited.append((w.pid, w.exitcode, held))
        return exited

    def maintain(self):
        exited = self.join_exited()
        if exited and self.tracks_tasks and self.state != TERMINATE:
            for pid, exitcode, held in exited:
                # Queued behind everything the worker wrote before it died.
                self.outqueue.put((_EXITED, pid, exitcode, held))
        if self.state != TERMINATE:
            self.repopulate()

    def _handle_workers(self):
        while self.state == RUN or (self.cache and self.state != TERMINATE):
            self.maintain()
            wait([*self.worker_sentinels(self.workers), self.doorbell])
            self.doorbell.drain()
        self.taskqueue.put(None)
        util.debug('worker handler exiting')

    def _cache_emptied(self):
        if self.state != RUN:
            self.doorbell.ring()

    # -- sending tasks ---------------------------------------------------

    def submit(self, task):
        """Send one apply_async task: directly while the window has room,
        else through the task handler."""
        with self._lock:
            direct = self._inflight < self._window
            if direct:
                self._inflight += 1
        if direct:
            self._send_one(task)
        else:
            self.taskqueue.put(task)

    def submit_stream(self, result, func, args, set_length=False, left=None):
        stream = _Stream(result, func, args, set_length, self.maxtasks is None, left)
        self.taskqueue.put(stream)

    def _send_one(self, task):
        """Put one task on the inqueue (a window slot is already taken)."""
        try:
            with self._put_lock:
                self._put_task(task)
        except Exception as e:
            util.debug(f'could not send task: {e!r}')
            self._release_slots(1)
            self.fail_task(task[0], task[1], e)

    def _send_batch(self, batch):
        try:
            with self._put_lock:
                self._put_task(batch)
            return
        except Exception:
            pass
        # Some task would not pickle: send the others one by one and fail it.
        self._release_slots(1)
        for task in batch:
            with self._lock:
                self._inflight += 1
            self._send_one(task)

    def _take_slot(self):
        with self._lock:
            while self._inflight >= self._window and self.state != TERMINATE:
                self._slot_waiting = True
                self._slot_cond.wait()
            self._slot_waiting = False
            if self.state == TERMINATE:
                return False
            self._inflight += 1
            return True

    def _release_slots(self, n):
        with self._lock:
            self._inflight -= n
            if self._slot_waiting:
                self._slot_cond.notify()

    def _batch_size(self, stream):
        if not stream.batchable or stream.cost is None:
            return 1
        n = int(_BATCH_SECONDS / max(stream.cost, 1e-9))
        n = min(n, _MAX_BATCH, stream.size * _BATCH_GROWTH)
        if stream.left is not None:
            # Leave work for every worker at the end of the call.
            n = min(n, -(-stream.left // (2 * self.processes)))
        return max(n, 1)

    def _send_stream(self, stream):
        job, func, args = stream.job, stream.func, stream.args
        index = 0
        failure = None
        exhausted = False
        with self._lock:
            self._streams[job] = stream
        try:
            while not exhausted:
                n = self._batch_size(stream)
                if not self._take_slot():
                    return
                if job not in self.cache:
                    # The call already failed (a worker was lost) or needs nothing.
                    self._release_slots(1)
                    break
                batch = []
                try:
                    for a in itertools.islice(args, n):
                        batch.append((job, index, func, a, {}))
                        index += 1
                except Exception as e:
                    failure = e
                exhausted = failure is not None or len(batch) < n
                if batch:
                    stream.size = len(batch)
                    if stream.left is not None:
                        stream.left -= len(batch)
                    self._send_batch(batch)
                else:
                    self._release_slots(1)
                batch = None
        finally:
            with self._lock:
                self._streams.pop(job, None)
        if failure is not None:
            # The iterable raised: the error takes the next position.
            self.fail_task(job, index, failure)
            index += 1
        if stream.set_length:
            with self._lock:
                finished = stream.result._set_length(index)
                if self._sleepers:
                    self._cond.notify_all()
                wake = self._reader_must_look()
            if finished:
                self._finish([stream.result])
            if wake:
                self._kick()

    def _handle_tasks(self):
        get = self.taskqueue.get
        while True:
            item = get()
            if item is None:
                util.debug('task handler got sentinel')
                break
            if self.state == TERMINATE:
                util.debug('task handler found pool terminated')
                break
            if type(item) is tuple:
                if self._take_slot():
                    self._send_one(item)
            else:
                self._send_stream(item)
            item = None
        with self._lock:
            self._tasks_done = True
            self._bg_cond.notify_all()
        if self.state != TERMINATE:
            util.debug('task handler sending sentinel to workers')
            with self._put_lock:
                for _ in range(len(self.workers)):
                    self._put_task(None)
        self._kick()
        util.debug('task handler exiting')

    # -- receiving results -------------------------------------------------

    def _receive(self, timeout):
        """The next outqueue message, or _NOTHING after `timeout` seconds
        (None: wait). EOFError/OSError mean the queue is gone and propagate;
        a message that cannot be unpickled is reported and skipped."""
        try:
            return self.results.receive(timeout)
        except (EOFError, OSError):
            raise
        except Exception:
            sys.stderr.write('multiprocessing.pool: a message from a worker could not be '
                             'received; the call it answers will not complete:\n')
            traceback.print_exc()
            return _NOTHING

    def _kick(self):
        """Wake whoever is blocked reading the outqueue."""
        self.results.wake()

    def _finished(self):
        return self.state == TERMINATE or (self._tasks_done and not self.cache)

    def fail_task(self, job, i, exc):
        """Fail task i of job from a thread that is not reading results."""
        with self._lock:
            result = self.cache.get(job)
            done = result is not None and result._deliver(i, (False, exc))
            if self._sleepers and not done:
                self._cond.notify_all()
            wake = self._reader_must_look()
        if done:
            self._finish([result])
        if wake:
            self._kick()

    def _reader_must_look(self):
        # A thread blocked reading the outqueue only looks at its result
        # when a message arrives: changes made elsewhere must send one.
        return self._reader is not None and self._reader != threading.get_ident()

    def _dispatch(self, msg):
        """Apply one outqueue message (lock held); return results it completed."""
        tag = msg[0]
        if tag == _BATCH:
            _, pid, seq, spent, job, first, results = msg
            self._answered[pid] = seq
            self._inflight -= 1
            stream = self._streams.get(job)
            if stream is not None:
                stream.observe(spent, len(results))
            result = self.cache.get(job)
            done = result is not None and result._deliver_batch(first, results)
        elif tag == _DONE:
            _, pid, seq, job, i, value = msg
            self._answered[pid] = seq
            self._inflight -= 1
            result = self.cache.get(job)
            done = result is not None and result._deliver(i, value)
        elif tag == _STARTED:
            _, pid, seq, job, first, n = msg
            self._held[pid] = (job, first, n, seq)
            return None
        elif tag == _EXITED:
            _, pid, exitcode, held = msg
            announced = self._held.pop(pid, None)
            held = held or announced
            answered = self._answered.pop(pid, 0)
            if held is None or held[3] <= answered:
                return None          # it held nothing when it died
            self._inflight -= 1
            job, first, n, _ = held
            util.info(f'worker {pid} exited with {exitcode} holding {n} task(s) of job {job}')
            result = self.cache.get(job)
            done = result is not None and result._lose(first, n, WorkerLostError(pid, exitcode, n))
        else:
            raise RuntimeError(f'unexpected message on the result queue: {msg!r}')
        if self._slot_waiting and self._inflight < self._window:
            self._slot_cond.notify()
        return [result] if done else None

    def _handle(self, msg):
        if msg is None:
            return
        with self._lock:
            done = self._dispatch(msg)
            if self._sleepers and not done:
                self._cond.notify_all()
        if done:
            self._finish(done)

    def _finish(self, results):
        """Run callbacks of completed results (no lock held), then forget them."""
        for result in results:
            result._complete()
        with self._lock:
            for result in results:
                if self.cache.get(result._job) is result:
                    del self.cache[result._job]
                result._pool = None
            if self._sleepers:
                self._cond.notify_all()
            if self._tasks_done and not self.cache:
                self._bg_cond.notify_all()

    def wait_ready(self, ready, timeout=None):
        """Block until ready() is true (checked with the lock held) or
        `timeout` seconds pass; return ready(). The calling thread reads the
        outqueue itself when no other thread is reading it."""
        lock = self._lock
        deadline = None if timeout is None else time.monotonic() + timeout
        me = threading.get_ident()
        with lock:
            if ready():
                return True
            self._nwaiters += 1
            kick = (self._reader is not None and self._reader == self._bg_ident
                    and not self._kicked)
            if kick:
                self._kicked = True
        try:
            if kick:
                self._kick()
            while True:
                with lock:
                    while True:
                        if ready():
                            return True
                        if self._reader == me:
                            outer = True     # a callback run by this reader waits
                            break
                        if self._reader is None and self._readable and self.state != TERMINATE:
                            self._reader = me
                            outer = False
                            break
                        remaining = None if deadline is None else deadline - time.monotonic()
                        if remaining is not None and remaining <= 0:
                            return False
                        self._sleepers += 1
                        try:
                            self._cond.wait(remaining)
                        finally:
                            self._sleepers -= 1
                try:
                    while True:
                        if deadline is None:
                            msg = self._receive(None)
                        else:
                            msg = self._receive(max(deadline - time.monotonic(), 0))
                        if msg is not _NOTHING:
                            self._handle(msg)
                            msg = None    # do not keep results alive while waiting
                        if ready():
                            return True
                        if deadline is not None and time.monotonic() >= deadline:
                            return False
                        if self.state == TERMINATE:
                            break
                except (EOFError, OSError):
                    self._readable = False
                finally:
                    if not outer:
                        with lock:
                            self._reader = None
                            if self._sleepers:
                                self._cond.notify_all()
        finally:
            with lock:
                self._nwaiters -= 1
                if not self._nwaiters:
                    # The result handler notices by itself (it polls while
                    # stepping aside): waking it here would cost every call.
                    self._bg_resume_at = time.monotonic() + _GRACE

    def _handle_results(self):
        lock = self._lock
        self._bg_ident = threading.get_ident()
        try:
            while True:
                with lock:
                    while True:
                        if self._finished() or not self._readable:
                            return
                        if self._reader is None and not self._nwaiters:
                            delay = self._bg_resume_at - time.monotonic()
                            if delay <= 0:
                                self._reader = self._bg_ident
                                self._kicked = False
                                break
                        else:
                            delay = _GRACE
                        self._bg_cond.wait(delay)
                try:
                    while True:
                        msg = self._receive(None)
                        if msg is not _NOTHING:
                            self._handle(msg)
                            msg = None    # do not keep results alive while waiting
                        if self._nwaiters or self._finished():
                            break
                except (EOFError, OSError):
                    util.debug('result handler got EOFError/OSError -- exiting')
                    self._readable = False
                    return
                finally:
                    with lock:
                        self._reader = None
                        if self._sleepers:
                            self._cond.notify_all()
        finally:
            util.debug('result handler exiting')

    # -- shutting down ---------------------------------------------------

    def close(self):
        with self._lock:
            if self.state == RUN:
                self.state = CLOSE
        self.doorbell.ring()

    def terminate(self):
        util.debug('terminating pool')
        with self._lock:
            self.state = TERMINATE
            self._cond.notify_all()
            self._slot_cond.notify_all()
            self._bg_cond.notify_all()
        self.doorbell.ring()
        self.taskqueue.put(None)
        self._kick()
        current = threading.current_thread()
        if self.worker_handler.is_alive() and current is not self.worker_handler:
            self.worker_handler.join(0.1)
            while self.worker_handler.is_alive():
                # It may be posting on a full outqueue that nobody reads now.
                self._drain_outqueue()
                self.worker_handler.join(0.1)
        util.debug('stopping workers')
        self.stop_workers(self.inqueue, self.workers)
        if self.task_handler.is_alive() and current is not self.task_handler:
            self.task_handler.join(1.0)
            while self.task_handler.is_alive():
                # Blocked on a full inqueue whose readers are gone: make room.
                self.drain_inqueue()
                self.task_handler.join(0.1)
        if self.result_handler.is_alive() and current is not self.result_handler:
            self.result_handler.join()
        for w in list(self.workers):
            if w.is_alive():
                w.join()
        self.doorbell.close()
        if self.results is not None:
            self.results.close()
        util.debug('pool terminated')

    def _drain_outqueue(self):
        me = threading.get_ident()
        with self._lock:
            owner = self._reader
            if owner is not None and owner != me:
                return               # its reader stops soon: it saw TERMINATE
            self._reader = me        # (me already: terminate() from a callback)
        try:
            self.results.drain()
        except Exception:
            pass
        finally:
            with self._lock:
                self._reader = owner

    def drain_inqueue(self):
        try:
            reader = getattr(self.inqueue, '_reader', None)
            if reader is not None:
                while reader.poll(0):
                    reader.recv_bytes()
            else:
                while True:
                    self.inqueue.get_nowait()
        except (queue.Empty, OSError, EOFError):
            pass


#
# Pool
#

class Pool(object):
    """A pool of worker processes to which jobs can be submitted."""

    _wrap_exception = True
    _tracks_tasks = True

    @staticmethod
    def Process(ctx, *args, **kwds):
        return ctx.Process(*args, **kwds)

    def __init__(self, processes=None, initializer=None, initargs=(),
                 maxtasksperchild=None, context=None):
        # Set first: __del__ looks at it even when __init__ fails.
        self._pool = []
        self._state = INIT

        if processes is None:
            processes = os.cpu_count() or 1
        if processes < 1:
            raise ValueError("Number of processes must be at least 1")
        if maxtasksperchild is not None:
            if not isinstance(maxtasksperchild, int) or maxtasksperchild <= 0:
                raise ValueError("maxtasksperchild must be a positive int or None")
        if initializer is not None and not callable(initializer):
            raise TypeError('initializer must be a callable')

        if context is None:
            from . import get_context
            context = get_context()
        self._ctx = context
        self._processes = processes
        self._initializer = initializer
        self._initargs = initargs
        self._maxtasksperchild = maxtasksperchild
        self._setup_queues()
        self._taskqueue = queue.SimpleQueue()
        self._cache = _PoolCache()

        engine = self._engine = _Engine(self)
        try:
            engine.repopulate()
        except Exception:
            for p in self._pool:
                if p.exitcode is None:
                    p.terminate()
            for p in self._pool:
                p.join()
            engine.doorbell.close()
            raise
        engine.start_threads()
        self._worker_handler = engine.worker_handler
        self._task_handler = engine.task_handler
        self._result_handler = engine.result_handler
        self._terminate = util.Finalize(self, self._terminate_pool, args=(engine,),
                                        exitpriority=15)
        self._state = RUN

    def __del__(self, _warn=warnings.warn, RUN=RUN):
        if getattr(self, '_state', None) == RUN:
            _warn(f"unclosed running multiprocessing pool {self!r}",
                  ResourceWarning, source=self)
            engine = getattr(self, '_engine', None)
            if engine is not None:
                engine.doorbell.ring()

    def __repr__(self):
        cls = self.__class__
        return (f'<{cls.__module__}.{cls.__qualname__} '
                f'state={self._state} pool_size={len(self._pool)}>')

    def __reduce__(self):
        raise NotImplementedError(
            'pool objects cannot be passed between processes or pickled')

    # -- how this kind of pool talks to its workers ------------------------

    def _setup_queues(self):
        self._inqueue = self._ctx.SimpleQueue()
        self._outqueue = self._ctx.SimpleQueue()
        # Only parent threads write tasks and only the reader reads results,
        # so the parent skips the queues' cross-process locks.
        self._quick_put = self._inqueue._writer.send
        self._quick_get = self._outqueue._reader.recv

    # How the parent receives results (see _PipeResults).
    _Results = _PipeResults

    @staticmethod
    def _get_worker_sentinels(workers):
        return [w.sentinel for w in workers if hasattr(w, 'sentinel')]

    @staticmethod
    def _help_stuff_finish(inqueue, workers):
        """Stop the workers of a pool being terminated."""
        for w in workers:
            if w.exitcode is None:
                w.terminate()

    @staticmethod
    def _terminate_pool(engine):
        engine.terminate()

    def _repopulate_pool(self):
        return self._engine.repopulate()

    def _join_exited_workers(self):
        return bool(self._engine.join_exited())

    def _maintain_pool(self):
        self._engine.maintain()

    def _check_running(self):
        if self._state != RUN:
            raise ValueError("Pool not running")

    # -- the public API ----------------------------------------------------

    def apply(self, func, args=(), kwds={}):
        """Call func(*args, **kwds) in a worker and return its result."""
        return self.apply_async(func, args, kwds).get()

    def map(self, func, iterable, chunksize=None):
        """Like the builtin map() (a list comes back), run in the workers;
        the iterable is cut into chunks of `chunksize` items."""
        return self._map_async(func, iterable, mapstar, chunksize).get()

    def starmap(self, func, iterable, chunksize=None):
        """Like map(), with each item of the iterable unpacked as arguments."""
        return self._map_async(func, iterable, starmapstar, chunksize).get()

    def starmap_async(self, func, iterable, chunksize=None, callback=None,
                      error_callback=None):
        """Asynchronous starmap(): returns a MapResult."""
        return self._map_async(func, iterable, starmapstar, chunksize,
                               callback, error_callback)

    def imap(self, func, iterable, chunksize=1):
        """Lazy map(): an iterator of the results, in order."""
        return self._imap(IMapIterator, func, iterable, chunksize)

    def imap_unordered(self, func, iterable, chunksize=1):
        """Like imap(), results in the order they complete."""
        return self._imap(IMapUnorderedIterator, func, iterable, chunksize)

    def _imap(self, iterator_class, func, iterable, chunksize):
        self._check_running()
        if chunksize == 1:
            result = iterator_class(self)
            self._engine.submit_stream(result, func, _one_argument(iterable), set_length=True)
            return result
        if chunksize < 1:
            raise ValueError(f"Chunksize must be 1+, not {chunksize:n}")
        chunks = Pool._get_tasks(func, iterable, chunksize)
        result = iterator_class(self)
        self._engine.submit_stream(result, mapstar, zip(chunks), set_length=True)
        return (item for chunk in result for item in chunk)

    def apply_async(self, func, args=(), kwds={}, callback=None, error_callback=None):
        """Asynchronous apply(): returns an ApplyResult."""
        self._check_running()
        result = ApplyResult(self, callback, error_callback)
        self._engine.submit((result._job, 0, func, args, kwds))
        return result

    def map_async(self, func, iterable, chunksize=None, callback=None, error_callback=None):
        """Asynchronous map(): returns a MapResult."""
        return self._map_async(func, iterable, mapstar, chunksize, callback, error_callback)

    def _map_async(self, func, iterable, mapper, chunksize=None, callback=None,
                   error_callback=None):
        self._check_running()
        if not hasattr(iterable, '__len__'):
            iterable = list(iterable)
        if chunksize is None:
            chunksize, extra = divmod(len(iterable), (len(self._pool) or self._processes) * 4)
            if extra:
                chunksize += 1
        if len(iterable) == 0:
            chunksize = 0
        result = MapResult(self, chunksize, len(iterable), callback,
                           error_callback=error_callback)
        if result._number_left:
            chunks = Pool._get_tasks(func, iterable, chunksize)
            self._engine.submit_stream(result, mapper, zip(chunks),
                                       left=result._number_left)
        return result

    @staticmethod
    def _get_tasks(func, it, size):
        it = iter(it)
        while True:
            x = tuple(itertools.islice(it, size))
            if not x:
                return
            yield (func, x)

    def close(self):
        """No more tasks; the workers exit once the pending ones are done."""
        util.debug('closing pool')
        if self._state == RUN:
            self._engine.close()
        self._state = CLOSE

    def terminate(self):
        """Stop the workers at once, pending work or not."""
        util.debug('terminating pool')
        self._state = TERMINATE
        self._terminate()

    def join(self):
        """Wait for the workers to exit; close() or terminate() first."""
        util.debug('joining pool')
        if self._state == RUN:
            raise ValueError("Pool is still running")
        elif self._state not in (CLOSE, TERMINATE):
            raise ValueError("In unknown state")
        self._worker_handler.join()
        self._task_handler.join()
        self._result_handler.join()
        for p in list(self._pool):
            p.join()

    def __enter__(self):
        self._check_running()
        return self

    def __exit__(self, exc_type, exc_val, exc_tb):
        self.terminate()


#
# Results
#

class ApplyResult(object):
    """The pending result of apply_async()."""

    def __init__(self, pool, callback, error_callback):
        self._pool = pool
        self._engine = pool._engine
        self._job = next(job_counter)
        self._cache = pool._cache
        self._callback = callback
        self._error_callback = error_callback
        self._ready = False
        self._closed = False          # the final value was delivered
        self._success = None
        self._value = None
        self._cache[self._job] = self

    def ready(self):
        return self._ready

    def successful(self):
        if not self._ready:
            raise ValueError(f"{self!r} not ready")
        return self._success

    def wait(self, timeout=None):
        if not self._ready:
            self._engine.wait_ready(self.ready, timeout)

    def get(self, timeout=None):
        self.wait(timeout)
        if not self._ready:
            raise TimeoutError
        if self._success:
            return self._value
        raise self._value

    def _deliver(self, i, result):
        if self._closed:
            return False
        self._success, self._value = result
        self._closed = True
        return True

    def _deliver_batch(self, first, results):
        return self._deliver(first, results[0])

    def _lose(self, first, n, exc):
        return self._deliver(first, (False, exc))

    def _complete(self):
        """Run the callback (no lock held), then mark the result ready."""
        try:
            if self._success:
                if self._callback:
                    self._callback(self._value)
            elif self._error_callback:
                self._error_callback(self._value)
        except Exception:
            _report_callback_error(self)
        self._ready = True

    def _set(self, i, obj):
        """Deliver and complete in one step (single-threaded use)."""
        if self._deliver(i, obj):
            self._complete()
            self._cache.pop(self._job, None)
            self._pool = None

    __class_getitem__ = classmethod(types.GenericAlias)


AsyncResult = ApplyResult


def _report_callback_error(result):
    sys.stderr.write(f'Exception in a callback of {result!r}:\n')
    traceback.print_exc()


class MapResult(ApplyResult):
    """The pending result of map_async() and starmap_async()."""

    def __init__(self, pool, chunksize, length, callback, error_callback):
        ApplyResult.__init__(self, pool, callback, error_callback=error_callback)
        self._success = True
        self._value = [None] * length
        self._chunksize = chunksize
        if chunksize <= 0:
            self._number_left = 0
            self._ready = self._closed = True
            del self._cache[self._job]
            self._pool = None
        else:
            self._number_left = length // chunksize + bool(length % chunksize)

    def _deliver(self, i, success_result):
        return self._deliver_batch(i, (success_result,))

    def _deliver_batch(self, first, results):
        if self._closed:
            return False
        cs = self._chunksize
        values = self._value
        i = first
        for success, value in results:
            if success:
                if self._success:
                    if cs == 1:
                        values[i] = value[0]
                    else:
                        values[i * cs:(i + 1) * cs] = value
            elif self._success:
                self._success = False
                self._value = value
            i += 1
        self._number_left -= len(results)
        if self._number_left == 0:
            self._closed = True
            return True
        return False

    def _lose(self, first, n, exc):
        # Fail the whole call now: the lost chunks will never come back.
        if self._closed:
            return False
        self._success = False
        self._value = exc
        self._closed = True
        return True


class IMapIterator(object):
    """The iterator returned by imap(): results in the order of the input."""

    def __init__(self, pool):
        self._pool = pool
        self._engine = pool._engine
        self._cond = self._engine._cond
        self._job = next(job_counter)
        self._cache = pool._cache
        self._items = collections.deque()
        self._index = 0
        self._length = None
        self._unsorted = {}
        self._cache[self._job] = self

    def __iter__(self):
        return self

    def _take(self):
        """Next item or _NOTHING (lock held); StopIteration at the end."""
        if self._items:
            return self._items.popleft()
        if self._index == self._length:
            self._pool = None
            raise StopIteration
        return _NOTHING

    def _has_item(self):
        return bool(self._items) or self._index == self._length

    def next(self, timeout=None):
        with self._cond:
            item = self._take()
        if item is _NOTHING:
            self._engine.wait_ready(self._has_item, timeout)
            with self._cond:
                item = self._take()
            if item is _NOTHING:
                raise TimeoutError from None
        success, value = item
        if success:
            return value
        raise value

    __next__ = next

    def _put(self, i, item):
        if i == self._index:
            self._items.append(item)
            self._index += 1
            while self._index in self._unsorted:
                self._items.append(self._unsorted.pop(self._index))
                self._index += 1
        else:
            self._unsorted[i] = item

    def _deliver(self, i, item):
        self._put(i, item)
        return self._index == self._length

    def _deliver_batch(self, first, items):
        for item in items:
            self._put(first, item)
            first += 1
        return self._index == self._length

    def _lose(self, first, n, exc):
        for i in range(first, first + n):
            self._put(i, (False, exc))
        return self._index == self._length

    def _set_length(self, length):
        self._length = length
        return self._index == length

    def _complete(self):
        pass


class IMapUnorderedIterator(IMapIterator):
    """The iterator returned by imap_unordered(): results as they complete."""

    def _put(self, i, item):
        self._items.append(item)
        self._index += 1


#
# ThreadPool
#

class ThreadPool(Pool):
    """A Pool whose workers are threads of this process."""

    _wrap_exception = False
    _tracks_tasks = False

    @staticmethod
    def Process(ctx, *args, **kwds):
        from .dummy import Process
        return Process(*args, **kwds)

    def __init__(self, processes=None, initializer=None, initargs=()):
        Pool.__init__(self, processes, initializer, initargs)

    def _setup_queues(self):
        self._inqueue = queue.SimpleQueue()
        self._outqueue = queue.SimpleQueue()
        self._quick_put = self._inqueue.put
        self._quick_get = self._outqueue.get

    _Results = _LocalResults

    @staticmethod
    def _get_worker_sentinels(workers):
        return []

    @staticmethod
    def _help_stuff_finish(inqueue, workers):
        # Threads cannot be killed: drop the queued tasks and let each
        # worker finish the task it runs, then read a stop sentinel.
        try:
            while True:
                inqueue.get(block=False)
        except queue.Empty:
            pass
        for _ in range(len(workers)):
            inqueue.put(None)
