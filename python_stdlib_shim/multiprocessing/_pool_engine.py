"""The parent side of a pool (multiprocessing.pool): the helper threads,
the window of tasks in flight, the reader role on the outqueue and the
bookkeeping of worker deaths. See multiprocessing.pool for the overview."""

# A private module: `from multiprocessing._pool_* import *` exports nothing.
__all__ = []

import collections
import errno
import queue
import sys
import threading
import time
import traceback

from . import util
from .connection import wait
from ._pool_board import _TaskBoard
from ._pool_inbox import _NOTHING, _Doorbell, _PoolCache, _Unreadable
from ._pool_tasks import INIT, RUN, CLOSE, TERMINATE, _TaskSender, _WINDOW_PER_WORKER  # noqa: F401 (INIT for pool)
from ._pool_worker import _DONE, _BATCH, _EXITED, _UNREADABLE, WorkerLostError, worker

# How long the result handler stays aside after the last waiting caller left.
_GRACE = 0.005


# What a pool was made with (checked by Pool); maxtasks: per worker, or None.
_Settings = collections.namedtuple('_Settings', 'processes initializer initargs maxtasks')


def _drain_queue(q):
    """Drop whatever waits on q: a ctx.SimpleQueue (raw messages, not
    unpickled) or an in-process queue."""
    reader = getattr(q, '_reader', None)
    try:
        if reader is not None:
            while reader.poll(0):
                reader.recv_bytes()
        else:
            while True:
                q.get_nowait()
    except (queue.Empty, OSError, EOFError):
        pass


def _terminate_living(workers):
    """Terminate the worker processes that have not exited."""
    for living in [w for w in workers if w.exitcode is None]:
        living.terminate()


def _stop_processes(workers):
    """Terminate the worker processes still running and wait for all."""
    _terminate_living(workers)
    for w in workers:
        w.join()


def _has_callback(result):
    return (getattr(result, '_callback', None) is not None
            or getattr(result, '_error_callback', None) is not None)


class _Engine(_TaskSender):
    """The machinery of one pool: queues, helper threads, worker upkeep and
    the routing of results. It holds no reference to the Pool object, so a
    pool that nobody references is collected (and its finalizer terminates
    the workers) even while the helper threads run."""

    def __init__(self, pool, settings):
        cls = type(pool)
        self.ctx = pool._ctx
        self.Process = cls.Process
        self.processes, self.initializer, self.initargs, self.maxtasks = settings
        self.wrap_exception = pool._wrap_exception
        self.tracks_tasks = cls._tracks_tasks
        self.workers = pool._pool
        self.cache = _PoolCache(notifier=self._cache_emptied)
        self.inqueue = pool._inqueue
        self.outqueue = pool._outqueue
        self.taskqueue = queue.SimpleQueue()
        self.worker_sentinels = cls._get_worker_sentinels
        self.stop_workers = cls._help_stuff_finish
        self._put_task = pool._quick_put
        self._Results = cls._Results
        self._quick_get = pool._quick_get
        self.results = None           # made by start()
        self.state = RUN
        # A supervised pool's policy (mphost.Pool's timeouts, limits and
        # insights; see mphost._pool_watch), or None: the stdlib's Pool.
        self.hooks = getattr(pool, '_engine_hooks', None)

        self.doorbell = _Doorbell()
        # The task board: one slot per worker, where the inqueue's channel
        # stores the identity of the message the worker took (its receipt).
        self.board = None
        if self.tracks_tasks:
            try:
                self.board = _TaskBoard(self.ctx, 2 * self.processes)
            except Exception as e:   # the pool runs without tracking, like stock
                util.debug(f'pool runs without a task board: {e!r}')
                self.tracks_tasks = False
        # Receipts need the pool's own inqueue, written as its writer's
        # send() would; a queue of another kind (a subclass's _setup_queues,
        # e.g. with its own pickler) keeps its put and workers mark tasks.
        writer = getattr(self.inqueue, '_writer', None)
        self._receipts = (self.tracks_tasks and type(self.inqueue).__name__ == 'SimpleQueue'
                          and hasattr(writer, '_outbound')
                          and self._put_task == getattr(writer, 'send', None))
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
        self._kept = {}              # (job, first) -> tasks of a batch kept until
                                     # answered (see _TaskSender._send_batch)
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
        if self.hooks is not None:
            self.hooks.bind(self)

    def start(self):
        """Start the workers, then the helper threads; if a worker cannot
        be started, stop those that were and raise."""
        try:
            self.repopulate()
        except Exception:
            _stop_processes(self.workers)
            self.doorbell.close()
            raise
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
                tracking = slot = None
                if self.board is not None:
                    slot = self.board.claim()
                if slot is not None:
                    tracking = (self.board.array, slot, 'receipt' if self._receipts else 'mark')
                args = (self.inqueue, self.outqueue, self.initializer, self.initargs,
                        self.maxtasks, self.wrap_exception, tracking)
                if self.hooks is not None:
                    args += (self.hooks.worker_kit,)
                w = self.Process(self.ctx, target=worker, args=args)
                w.name = w.name.replace('Process', 'PoolWorker')
                w.daemon = True
                try:
                    w.start()
                except BaseException:
                    if slot is not None:
                        self.board.unclaim(slot)
                    raise
                if slot is not None:
                    self.board.assign(w, slot)
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
                    if self.board is not None:
                        ident, held = self.board.vacate(w, not self._receipts)
                    exited.append((w.pid, w.exitcode, ident, held))
        return exited

    def maintain(self):
        exited = self.join_exited()
        # A supervised pool may give up (and fail the pending calls) first.
        replacing = self.hooks is None or self.hooks.replacing(exited)
        if exited and self.tracks_tasks and self.state != TERMINATE:
            for pid, exitcode, ident, held in exited:
                # Queued behind everything the worker wrote before it died.
                self.outqueue.put((_EXITED, pid, exitcode, ident, held))
        if replacing and self.state != TERMINATE:
            self.repopulate()

    def lost_error(self, pid, exitcode, n, job, first):
        """The error that fails the n tasks of job from first on, held by
        worker pid when it exited with exitcode."""
        if self.hooks is not None:
            return self.hooks.lost_error(pid, exitcode, n, job, first)
        return WorkerLostError(pid, exitcode, n)

    def _handle_workers(self):
        retry = None                 # seconds until a failed start is tried again
        while self.state == RUN or (self.cache and self.state != TERMINATE):
            try:
                self.maintain()
                retry = None
            except Exception as e:
                # A worker that cannot be started now is tried again,
                # backing off: the handler must not die, or every pending
                # call of the pool would wait forever.
                retry = min(2 * retry, 1.0) if retry else 0.05
                if isinstance(e, OSError) and e.errno == errno.EMFILE:
                    self._withdraw_hand_overs()
                util.sub_warning(f'pool could not start a worker ({e!r}); '
                                 f'trying again in {retry} s')
            wait([*self.worker_sentinels(self.workers), self.doorbell], retry)
            self.doorbell.drain()
        self.taskqueue.put(None)
        util.debug('worker handler exiting')

    def _withdraw_hand_overs(self):
        """Give back the endpoint places of the pool's queues that this
        process handed to children which never took them. A spawned worker
        killed while it starts leaves its places pending until they expire
        (minutes); workers killed faster than they start can use up a
        channel's places, and then no worker starts. A worker still
        starting loses its place too: it fails before it takes a task and
        is replaced."""
        for q in (self.inqueue, self.outqueue):
            for conn in (getattr(q, '_reader', None), getattr(q, '_writer', None)):
                for channel in (getattr(conn, '_inbound', None), getattr(conn, '_outbound', None)):
                    if channel is not None:
                        channel.withdraw_hand_overs()

    def _cache_emptied(self):
        if self.state != RUN:
            self.doorbell.ring()

    # -- failing tasks from outside the reader ----------------------------

    def _lose(self, job, first, n, exc):
        """Fail n tasks of job from first on, from a thread that is not
        reading results."""
        self._settle_aside(job, lambda result: result._lose(first, n, exc))

    def fail_task(self, job, i, exc):
        """Fail task i of job from a thread that is not reading results."""
        self._settle_aside(job, lambda result: result._deliver(i, (False, exc)))

    def _settle_aside(self, job, change):
        """Apply change(result) to the pending result of job, from a thread
        that does not hold the reader role: wake the threads waiting for
        results, complete the result if that made it final, and make the
        reader look (it only looks when a message arrives)."""
        with self._lock:
            result = self.cache.get(job)
            done = result is not None and change(result)
            if self._sleepers and not done:
                self._cond.notify_all()
            wake = self._reader_must_look()
        if done:
            self._finish([result])
        if wake:
            self._kick()

    # -- receiving results -------------------------------------------------

    def _receive(self, timeout):
        """The next outqueue message, or _NOTHING after `timeout` seconds
        (None: wait). EOFError/OSError mean the queue is gone and propagate,
        as does what a signal handler raises meanwhile; a message that
        cannot be unpickled is reported and skipped."""
        msg = self.results.receive(timeout)
        if isinstance(msg, _Unreadable):
            sys.stderr.write('multiprocessing.pool: a message from a worker could not be '
                             'received; the call it answers will not complete:\n')
            traceback.print_exception(msg.error)
            return _NOTHING
        return msg

    def _kick(self):
        """Wake whoever is blocked reading the outqueue."""
        self.results.wake()

    def _finished(self):
        return self.state == TERMINATE or (self._tasks_done and not self.cache)

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
            if self._kept:
                self._kept.pop((job, first), None)
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
            kept = self._kept.pop((job, first), None) if self._kept else None
            if kept is not None and len(kept) == n:
                done = self.hooks.recover(pid, exitcode, kept, result)
            else:
                done = result is not None and result._lose(
                    first, n, self.lost_error(pid, exitcode, n, job, first))
        elif tag == _UNREADABLE:
            _, pid, ident, exc = msg
            what = self._settle(pid, ident, exc)
            self._inflight -= 1
            if what is None:
                return None
            job, first, n = what
            self._kept.pop((job, first), None)
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
                    # A caller that _complete woke while this hand-over was
                    # still counted went back to sleep: the end of the last
                    # one lets it read again.
                    if not (self._handoff_busy or self._handoff) and self._sleepers:
                        self._cond.notify_all()

    def _complete(self, results):
        """Run the results' callbacks in this thread, make them ready and
        forget them."""
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

    complete_now = _complete

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
        _drain_queue(self.inqueue)

    def join(self):
        """Wait for the helper threads, then the workers (the pool was
        closed or terminated)."""
        for thread in (self.worker_handler, self.task_handler, self.result_handler):
            thread.join()
        for w in list(self.workers):
            w.join()
