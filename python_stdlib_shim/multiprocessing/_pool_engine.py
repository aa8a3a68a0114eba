"""The parent side of a pool (multiprocessing.pool): the helper threads,
the window of tasks in flight, the reader role on the outqueue and the
bookkeeping of worker deaths. See multiprocessing.pool for the overview."""

# A private module: `from multiprocessing._pool_* import *` exports nothing.
__all__ = []

import collections
import itertools
import queue
import sys
import threading
import time
import traceback

from . import util
from .connection import wait
from ._pool_inbox import _NOTHING, _Doorbell
from ._pool_worker import (_DONE, _BATCH, _EXITED, _UNREADABLE, _SLOT_CELLS,
                           WorkerLostError, worker)

#
# Pool states
#

INIT = 'INIT'
RUN = 'RUN'
CLOSE = 'CLOSE'
TERMINATE = 'TERMINATE'

# A batch holds about this much work (seconds, measured in the workers) ...
_BATCH_SECONDS = 0.002
# ... and at most this many tasks; a batch grows at most this fast.
_MAX_BATCH = 4096
_BATCH_GROWTH = 8
# Messages in flight per worker (plus one).
_WINDOW_PER_WORKER = 2
# How long the result handler stays aside after the last waiting caller left.
_GRACE = 0.005


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


def _has_callback(result):
    return (getattr(result, '_callback', None) is not None
            or getattr(result, '_error_callback', None) is not None)


def _dumps(obj):
    """The inqueue message for obj: ForkingPickler.dumps(obj), as
    SimpleQueue.put writes it (in chunks the channel gathers, when the
    connection module offers that)."""
    global _dumps_impl
    if _dumps_impl is None:
        from . import connection
        from .reduction import ForkingPickler
        _dumps_impl = getattr(connection, '_dumps_for_channel', ForkingPickler.dumps)
    return _dumps_impl(obj)


_dumps_impl = None


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
        # The task board: one slot per worker, where the inqueue's channel
        # stores the identity of the message the worker took (its receipt).
        self.board = None
        self._cells = None
        self._free_slots = []
        self._slot_of = {}           # worker -> its slot on the board
        if self.tracks_tasks:
            nslots = 2 * self.processes
            try:
                board = self.ctx.RawArray('Q', nslots * _SLOT_CELLS)
                self._cells = memoryview(board).cast('B').cast('Q')
            except Exception as e:   # the pool runs without tracking, like stock
                util.debug(f'pool runs without a task board: {e!r}')
                self.tracks_tasks = False
            else:
                self.board = board
                self._free_slots = list(range(nslots - 1, -1, -1))
        # Receipts need the pool's own inqueue, written as its writer's
        # send() would; a queue of another kind (a subclass's _setup_queues,
        # e.g. with its own pickler) keeps its put and workers mark tasks.
        writer = getattr(self.inqueue, '_writer', None)
        self._receipts = (self.tracks_tasks and type(self.inqueue).__name__ == 'SimpleQueue'
                          and hasattr(writer, '_outbound')
                          and self._put_task == getattr(writer, 'send', None))
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
        # Tracking (see _record and _dispatch); identities are the inqueue's.
        self._sent = {}              # ident -> (job, first, n); None for a stop sentinel
        self._early = {}             # ident -> None (answered) or the exception to
                                     # fail it with, settled before _record saw it
        self._answered = {}          # pid -> ident of the last message it answered
        self._streams = {}           # job -> _Stream being sent
        self._reader = None          # ident of the thread holding the reader role
        self._bg_ident = None
        # Completed results whose callbacks the result handler thread runs,
        # in order, and whether it is running one (see _finish).
        self._handoff = collections.deque()
        self._handoff_busy = 0
        self._bg_gone = False        # the result handler thread has ended
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
        self._bg_ident = self.result_handler.ident

    # -- workers --------------------------------------------------------

    def repopulate(self):
        """Start workers until there are `processes` of them."""
        with self._pool_lock:
            for _ in range(self.processes - len(self.workers)):
                tracking, slot = None, None
                if self.tracks_tasks and self._free_slots:
                    slot = self._free_slots.pop()
                    base = slot * _SLOT_CELLS
                    for k in range(_SLOT_CELLS):
                        self._cells[base + k] = 0
                    tracking = (self.board, slot, 'receipt' if self._receipts else 'mark')
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
        """Reap workers that exited; return [(pid, exitcode, ident, held)]
        of them: what their board slots say (see _EXITED)."""
        exited = []
        with self._pool_lock:
            for w in list(self.workers):
                if w.exitcode is not None:
                    util.debug(f'cleaning up worker {w.pid}')
                    w.join()
                    self.workers.remove(w)
                    ident, held = 0, None
                    slot = self._slot_of.pop(w, None)
                    if slot is not None:
                        base = slot * _SLOT_CELLS
                        ident = self._cells[base]
                        if not self._receipts:
                            held = tuple(self._cells[base + 1:base + _SLOT_CELLS])
                        self._free_slots.append(slot)
                    exited.append((w.pid, w.exitcode, ident, held))
        return exited

    def maintain(self):
        exited = self.join_exited()
        if exited and self.tracks_tasks and self.state != TERMINATE:
            for pid, exitcode, ident, held in exited:
                # Queued behind everything the worker wrote before it died.
                self.outqueue.put((_EXITED, pid, exitcode, ident, held))
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

    def _write(self, obj, what=None):
        """Put one message on the inqueue. When tasks are tracked, the
        message is ForkingPickler.dumps(obj) written on the inqueue's channel
        (what SimpleQueue.put writes), and its identity is recorded with
        `what` it carries: (job, first index, number of tasks), or None."""
        if not self._receipts:
            with self._put_lock:
                self._put_task(obj)
            return
        data = _dumps(obj)
        with self._put_lock:
            ident = self.inqueue._writer._outbound.send(data)
        data = None
        self._record(ident, what)

    def _record(self, ident, what):
        """Note what message `ident` carries, unless its answer (or the
        death of the worker that took it) was already read: a reader can be
        faster than the sender's return from send()."""
        with self._lock:
            early = self._early.pop(ident, _NOTHING)
            if early is _NOTHING:
                self._sent[ident] = what
                return
            if early is None or what is None:
                return               # answered, or a sentinel
            job, first, n = what
            if isinstance(early, WorkerLostError):
                # Its worker died holding it: EXITED left the slot to us.
                early = WorkerLostError(early.pid, early.exitcode, n)
                self._inflight -= 1
                if self._slot_waiting:
                    self._slot_cond.notify()
        self._lose(job, first, n, early)

    def _lose(self, job, first, n, exc):
        """Fail n tasks of job from first on, from a thread that is not
        reading results."""
        with self._lock:
            result = self.cache.get(job)
            done = result is not None and result._lose(first, n, exc)
            if self._sleepers and not done:
                self._cond.notify_all()
            wake = self._reader_must_look()
        if done:
            self._finish([result])
        if wake:
            self._kick()

    def _send_one(self, task):
        """Put one task on the inqueue (a window slot is already taken)."""
        try:
            self._write(task, (task[0], task[1], 1))
        except Exception as e:
            util.debug(f'could not send task: {e!r}')
            self._release_slots(1)
            self.fail_task(task[0], task[1], e)

    def _send_batch(self, batch):
        try:
            self._write(batch, (batch[0][0], batch[0][1], len(batch)))
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
            try:
                for _ in range(len(self.workers)):
                    self._write(None)
            except Exception as e:
                util.debug(f'could not send the stop sentinels: {e!r}')
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
            _, pid, ident, spent, job, first, results = msg
            if ident:
                self._settle(pid, ident)
            self._inflight -= 1
            stream = self._streams.get(job)
            if stream is not None:
                stream.observe(spent, len(results))
            result = self.cache.get(job)
            done = result is not None and result._deliver_batch(first, results)
        elif tag == _DONE:
            _, pid, ident, job, i, value = msg
            if ident:
                self._settle(pid, ident)
            self._inflight -= 1
            result = self.cache.get(job)
            done = result is not None and result._deliver(i, value)
        elif tag == _EXITED:
            _, pid, exitcode, ident, held = msg
            answered = self._answered.pop(pid, 0)
            if not ident or ident == answered:
                return None          # it held nothing when it died
            what = held if not self._receipts else self._sent.pop(ident, _NOTHING)
            if what is None:
                return None          # it took a stop sentinel
            if what is _NOTHING:     # sent, not yet recorded: _record fails it
                self._early[ident] = WorkerLostError(pid, exitcode)
                return None
            self._inflight -= 1
            job, first, n = what
            util.info(f'worker {pid} exited with {exitcode} holding {n} task(s) of job {job}')
            result = self.cache.get(job)
            done = result is not None and result._lose(first, n, WorkerLostError(pid, exitcode, n))
        elif tag == _UNREADABLE:
            _, pid, ident, exc = msg
            what = self._settle(pid, ident, exc)
            self._inflight -= 1
            if what is None:
                return None
            job, first, n = what
            result = self.cache.get(job)
            done = result is not None and result._lose(first, n, exc)
        else:
            raise RuntimeError(f'unexpected message on the result queue: {msg!r}')
        if self._slot_waiting and self._inflight < self._window:
            self._slot_cond.notify()
        return [result] if done else None

    def _settle(self, pid, ident, early=None):
        """Message `ident` was answered by worker pid (lock held): forget it
        and return what it carried; if its sender has not recorded it yet,
        leave `early` (None, or the exception that fails it) for _record."""
        self._answered[pid] = ident
        if not self._receipts:
            return None
        what = self._sent.pop(ident, _NOTHING)
        if what is _NOTHING:
            self._early[ident] = early
            return None
        return what

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
        """Complete results (no lock held): run their callbacks, mark them
        ready, forget them. As with the stdlib, callbacks run in the result
        handler thread: another thread hands a result with a callback over
        to it, and with it every result completed while earlier hand-overs
        are pending, so that results become ready in the order they were
        completed (the stdlib's order). Results without callbacks and with
        nothing pending are completed by the thread that has them."""
        if threading.get_ident() == self._bg_ident:
            self._run_handoff()
            self._complete(results)
            return
        with self._lock:
            handoff = not self._bg_gone and (
                self._handoff or self._handoff_busy
                or any(_has_callback(r) for r in results))
            if handoff:
                self._handoff.extend(results)
                self._bg_cond.notify_all()
                if self._sleepers:   # the handler may wait inside a callback
                    self._cond.notify_all()
                kick = self._reader is not None and self._reader == self._bg_ident
        if not handoff:
            self._complete(results)
        elif kick:
            self._kick()

    def _run_handoff(self):
        """Complete the results handed over to the result handler thread
        (called in that thread)."""
        while True:
            with self._lock:
                if not self._handoff:
                    return
                result = self._handoff.popleft()
                self._handoff_busy += 1
            try:
                self._complete((result,))
            finally:
                with self._lock:
                    self._handoff_busy -= 1

    def _complete(self, results):
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
            wake = self._reader_must_look()
        if wake:
            self._kick()

    def wait_ready(self, ready, timeout=None):
        """Block until ready() is true (checked with the lock held) or
        `timeout` seconds pass; return ready(). The calling thread reads the
        outqueue itself when no other thread is reading it and no hand-over
        to the result handler thread is pending (the results it would read
        could only complete behind the hand-over: it sleeps until the
        handler has run it)."""
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
                handoff = False
                with lock:
                    while True:
                        if ready():
                            return True
                        if me == self._bg_ident and self._handoff:
                            handoff = True   # a callback waits: run the next ones
                            break
                        if self._reader == me:
                            outer = True     # a callback run by this reader waits
                            break
                        if (self._reader is None and self._readable and self.state != TERMINATE
                                and (me == self._bg_ident
                                     or not (self._handoff or self._handoff_busy))):
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
                if handoff:
                    self._run_handoff()
                    continue
                try:
                    while True:
                        # While a hand-over is pending, read only what is
                        # already there, then sleep until the handler ran it.
                        pending = me != self._bg_ident and (self._handoff or self._handoff_busy)
                        if pending:
                            msg = self._receive(0)
                        elif deadline is None:
                            msg = self._receive(None)
                        else:
                            msg = self._receive(max(deadline - time.monotonic(), 0))
                        got = msg is not _NOTHING
                        if got:
                            self._handle(msg)
                            msg = None    # do not keep results alive while waiting
                        if ready():
                            return True
                        if deadline is not None and time.monotonic() >= deadline:
                            return False
                        if self.state == TERMINATE or (pending and not got):
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
                        if self.state == TERMINATE:
                            return           # hand-overs are dropped, as stock drops results
                        if self._handoff:
                            break
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
                if self._reader != self._bg_ident:
                    self._run_handoff()
                    continue
                try:
                    while True:
                        msg = self._receive(None)
                        if msg is not _NOTHING:
                            self._handle(msg)
                            msg = None    # do not keep results alive while waiting
                        if self._handoff:
                            self._run_handoff()
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
            with lock:
                self._bg_gone = True
            if self.state != TERMINATE:
                self._run_handoff()  # left by threads that did not see it end
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
            # Worker threads cannot be stopped: as with the stdlib, those still
            # running a task are left to finish it (they are daemon threads).
            if w.is_alive() and hasattr(w, 'terminate'):
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
