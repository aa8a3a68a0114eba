"""mphost.ProcessPoolExecutor: concurrent.futures' executor over an mphost.Pool.

A subclass of ``concurrent.futures.ProcessPoolExecutor`` (isinstance checks
and ``except BrokenProcessPool`` keep working) that keeps none of its
machinery: no manager thread, no call queue of its own. The Pool does the
work; this module turns its calls into futures::

  submit(fn, *args) --> Future (pending) --> waiting line (a deque)
                                                  |  at most max_workers + 1
                                                  |  calls are out at a time
                                                  v
        Future.set_running_or_notify_cancel() -- a cancelled one is dropped
                                                  |
                                                  v
        pool.apply_async(fn, args, kwargs, callback, error_callback)
                                                  |  the pool's result
                                                  |  handler thread
                                                  v
        Future.set_result / set_exception; the next waiting call goes out

Keeping the line in the parent is what lets cancel() succeed on a future
that has not started, as with the stdlib (which sends max_workers + 1 calls
ahead too). map() cuts its input into chunks, as the stdlib's does, and
submits one call per chunk (a chunk is the unit of a task_timeout).

What differs from the stdlib, on purpose:
- A worker that dies fails only the future it was running, with
  BrokenProcessPool (its ``__cause__`` is the pool's WorkerLostError, naming
  the pid and the signal); the pool replaces the worker and the executor
  stays usable. A failing initializer still breaks the executor, as with
  the stdlib: every later call would fail the same way.
- max_tasks_per_child is accepted with a 'fork' context too (the mphost
  Pool replaces workers safely under fork); without mp_context it defaults
  to spawn, as the stdlib's does.
- The workers start at the first submit() or map(), as the stdlib's do;
  the Pool options are checked when the executor is made (TypeError or
  ValueError, as mphost.Pool would raise).
"""

import collections
import itertools
import os
import threading
import time
import traceback
import weakref
from concurrent.futures import _base
from concurrent.futures import process as _stock
from concurrent.futures.process import BrokenProcessPool

__all__ = ['ProcessPoolExecutor', 'BrokenProcessPool']

# Calls sent ahead beyond one per worker (the stdlib sends one too).
_AHEAD = 1

_LOST = ('A process in the process pool was terminated abruptly while the '
         'future was running or pending.')
_INIT_FAILED = ('A process in the process pool failed in its initializer, '
                'the process pool is not usable anymore')


# -- the worker side ---------------------------------------------------------

# In a worker: the formatted failure of the executor's initializer, if it
# raised (its tasks then fail with _InitializerFailed).
_init_failure = None


class _InitializerFailed(Exception):
    """A task ran in a worker whose initializer raised (the message is the
    initializer's traceback)."""


def _initialize(initializer, initargs):
    global _init_failure
    try:
        initializer(*initargs)
    except BaseException:
        # As the stdlib's worker does; it then exits, ours stays to say so.
        _base.LOGGER.critical('Exception in initializer:', exc_info=True)
        _init_failure = traceback.format_exc()


class _Guarded:
    """fn, refused in a worker whose initializer failed."""

    __slots__ = ('fn',)

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, *args, **kwargs):
        if _init_failure is not None:
            raise _InitializerFailed(_init_failure)
        return self.fn(*args, **kwargs)

    def __reduce__(self):
        return _Guarded, (self.fn,)


class _Chunk:
    """Runs fn over a chunk of argument tuples, in a worker; the results come
    back as one list. Arguments before the chunk (a pool's worker state) go
    first to every call."""

    __slots__ = ('fn',)

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, *lead_and_chunk):
        fn, lead, chunk = self.fn, lead_and_chunk[:-1], lead_and_chunk[-1]
        return [fn(*lead, *args) for args in chunk]

    def __reduce__(self):
        return _Chunk, (self.fn,)


# -- the parent side ---------------------------------------------------------

def _as_executor_error(exc):
    """What a future raises for the pool's error `exc`: the remote
    traceback as the stdlib's executor gives it, a lost worker as
    BrokenProcessPool."""
    from multiprocessing.pool import RemoteTraceback, WorkerLostError
    cause = exc.__cause__
    if type(cause) is RemoteTraceback:
        exc.__cause__ = _stock._RemoteTraceback(cause.tb)
    if isinstance(exc, WorkerLostError):
        broken = BrokenProcessPool(_LOST)
        broken.__cause__ = exc
        return broken
    if isinstance(exc, _InitializerFailed):
        broken = BrokenProcessPool(_INIT_FAILED)
        broken.__cause__ = exc
        return broken
    return exc


def _chunks(calls, size):
    """Consecutive tuples of `size` items of `calls` (the last may be short)."""
    while chunk := tuple(itertools.islice(calls, size)):
        yield chunk


class _Progress:
    """Counts the items of one map() call as their chunks complete, on a
    tqdm bar (progress=True: one on stderr; or the caller's tqdm instance,
    its total set when None), closed once every chunk is back, or through
    a callable progress(done, total)."""

    def __init__(self, spec, total, calls):
        self._lock = threading.Lock()
        self._done = self._finished = 0
        self._total, self._calls = total, calls
        self._bar = None
        if spec is True:
            import tqdm
            self._bar = tqdm.tqdm(total=total)
        elif callable(getattr(spec, 'update', None)):
            self._bar = spec
            if getattr(spec, 'total', None) is None:
                spec.total = total
        elif callable(spec):
            self._report = spec
        else:
            raise TypeError('progress must be True, a tqdm instance or a '
                            f'callable (done, total), not {type(spec).__name__}')

    def _report(self, done, total):
        pass

    def watch(self, future, items):
        future.add_done_callback(lambda f: self._settle(f, items))

    def _settle(self, future, items):
        counted = 0 if future.cancelled() else items
        with self._lock:
            self._done += counted
            self._finished += 1
            done, last = self._done, self._finished == self._calls
            if self._bar is not None:
                if counted:
                    self._bar.update(counted)
                if last:
                    self._bar.close()
        if self._bar is None and counted:
            self._report(done, self._total)


class ProcessPoolExecutor(_stock.ProcessPoolExecutor):
    """concurrent.futures.ProcessPoolExecutor over an mphost.Pool; the
    keyword options beyond the stdlib's go to the Pool (task_timeout=,
    max_memory_per_child=, worker_state=, serializer=...)."""

    def __init__(self, max_workers=None, mp_context=None, initializer=None,
                 initargs=(), *, max_tasks_per_child=None, **options):
        if max_workers is None:
            max_workers = os.cpu_count() or 1
        elif max_workers <= 0:
            raise ValueError('max_workers must be greater than 0')
        if initializer is not None and not callable(initializer):
            raise TypeError('initializer must be a callable')
        if max_tasks_per_child is not None:
            if not isinstance(max_tasks_per_child, int):
                raise TypeError('max_tasks_per_child must be an integer')
            if max_tasks_per_child <= 0:
                raise ValueError('max_tasks_per_child must be >= 1')
        if mp_context is None:
            import multiprocessing
            mp_context = multiprocessing.get_context(
                'spawn' if max_tasks_per_child is not None else None)
        self._max_workers, self._mp_context = max_workers, mp_context
        self._initializer, self._initargs = initializer, initargs
        self._max_tasks_per_child = max_tasks_per_child
        from ._pool import Pool
        unknown = dict(options)
        Pool._check_options(unknown)
        for name in unknown:
            raise TypeError(f'{type(self).__name__}() got an unexpected keyword argument {name!r}')
        self._options = options
        self._pool = None
        # _lock guards the line, the count of calls out and the flags;
        # shutdown(wait=True) waits on it for both to empty.
        self._lock = threading.Condition(threading.Lock())
        self._starting = threading.Lock()
        self._waiting = collections.deque()
        self._out = 0
        self._shutdown_thread = False
        self._broken = False
        _live.add(self)

    def __repr__(self):
        kind = type(self)
        return (f'<{kind.__module__}.{kind.__qualname__} max_workers={self._max_workers} '
                f'pool={self._pool!r}>')

    @property
    def _processes(self):
        """pid -> worker Process, as the stdlib's attribute (None once shut down)."""
        pool = self._pool
        if self._shutdown_thread:
            return None
        return {} if pool is None else {p.pid: p for p in list(pool._pool)}

    def _pool_type(self):
        """The class of pool the executor runs on (a cluster executor's differs)."""
        from ._pool import Pool
        return Pool

    def _start_pool(self):
        Pool = self._pool_type()
        guarded = self._initializer is not None
        self._pool = Pool(self._max_workers,
                          _initialize if guarded else None,
                          (self._initializer, self._initargs) if guarded else (),
                          self._max_tasks_per_child, self._mp_context, **self._options)
        # An executor dropped without shutdown() closes its pool (the
        # workers finish what they have, then exit).
        weakref.finalize(self, self._pool.close)
        return self._pool

    # -- the line of calls -------------------------------------------------

    def _busy(self):
        return bool(self._waiting) or self._out > 0

    def _enqueue(self, fn, args, kwargs, options):
        if self._pool is None:
            # Not under _lock: the first workers may fork now.
            with self._starting:
                self._refuse_if_closed()
                if self._pool is None:
                    self._start_pool()
        future = _base.Future()
        with self._lock:
            self._refuse_if_closed()
            if self._initializer is not None:
                fn = _Guarded(fn)
            self._waiting.append((future, fn, args, kwargs, options))
            ready = self._next_calls()
        self._send(ready)
        return future

    def _refuse_if_closed(self):
        if self._broken:
            raise BrokenProcessPool(self._broken)
        if self._shutdown_thread:
            raise RuntimeError('cannot schedule new futures after shutdown')
        if _stock._global_shutdown:
            raise RuntimeError('cannot schedule new futures after interpreter shutdown')

    def _next_calls(self):
        """Take the calls that may go out now off the line (lock held)."""
        ready, room = [], self._max_workers + _AHEAD - self._out
        while room > 0 and self._waiting:
            call = self._waiting.popleft()
            if call[0].set_running_or_notify_cancel():
                ready.append(call)
                room -= 1
        self._out += len(ready)
        if not self._busy():
            self._lock.notify_all()
        return ready

    def _send(self, calls):
        pool, calls = self._pool, collections.deque(calls)
        while calls:
            future, fn, args, kwargs, options = calls.popleft()
            try:
                pool.apply_async(fn, args, kwargs, callback=future.set_result,
                                 error_callback=self._failed_with(future), **options)
            except BaseException as exc:
                # Refused at once (an option the pool does not take, a
                # closed pool): the call is back, the next ones go out.
                future.set_exception(exc)
                calls.extend(self._back())
                if not isinstance(exc, Exception):
                    raise
                continue
            future.add_done_callback(self._returned)

    def _failed_with(self, future):
        def failed(exc):
            error = _as_executor_error(exc)
            if isinstance(exc, _InitializerFailed):
                self._break(error)
            future.set_exception(error)
        return failed

    def _returned(self, future):
        self._send(self._back())

    def _back(self):
        """A call came back: the waiting calls that may go out now (once
        shut down and idle, the pool closes)."""
        with self._lock:
            self._out -= 1
            ready = [] if self._broken else self._next_calls()
            close = self._shutdown_thread and not self._busy()
        if close:
            self._pool.close()
        return ready

    def _break(self, error):
        """The pool cannot run calls any more: fail the waiting ones."""
        with self._lock:
            if self._broken:
                return
            self._broken = str(error)
            dropped = list(self._waiting)
            self._waiting.clear()
            self._lock.notify_all()
        for future, *_ in dropped:
            if future.set_running_or_notify_cancel():
                future.set_exception(error)
        self._pool.close()

    # -- the API -----------------------------------------------------------

    def submit(self, fn, /, *args, **kwargs):
        """Schedule fn(*args, **kwargs) in a worker; returns a Future. The
        pool's options (task_timeout=...) apply: keyword arguments are all
        fn's."""
        return self._enqueue(fn, args, kwargs, {})

    def map(self, fn, *iterables, timeout=None, chunksize=1, progress=None,
            **call_options):
        """An iterator over fn(*args) for the zipped iterables, in order.

        As the stdlib's: the input is consumed and submitted at once,
        `chunksize` items per call; next() raises TimeoutError once
        `timeout` seconds have passed since map() was called, and fn's
        exception where its item comes; leaving the iterator early cancels
        the calls not started. mphost's options per call: `progress`
        (True, a tqdm instance or a callable (done, total)) counts items
        as they complete; the others (task_timeout=, soft_timeout=) go
        to the pool's apply_async for each chunk."""
        if chunksize < 1:
            raise ValueError('chunksize must be >= 1.')
        deadline = None if timeout is None else time.monotonic() + timeout
        calls = zip(*iterables)
        if chunksize == 1:
            tasks = ((fn, args, 1) for args in calls)
        else:
            task = _Chunk(fn)
            tasks = ((task, (chunk,), len(chunk)) for chunk in _chunks(calls, chunksize))
        tasks = list(tasks)
        tracker = None
        if progress is not None and progress is not False:
            tracker = _Progress(progress, sum(items for *_, items in tasks), len(tasks))
        futures = []
        for target, args, items in tasks:
            future = self._enqueue(target, args, {}, call_options)
            futures.append(future)
            if tracker is not None:
                tracker.watch(future, items)
        return _in_order(futures, deadline, chunksize > 1)

    def shutdown(self, wait=True, *, cancel_futures=False):
        """No more calls; with cancel_futures, the waiting ones are
        cancelled; with wait, return once every call has come back and the
        workers have exited."""
        with self._lock:
            self._shutdown_thread = True
            dropped = list(self._waiting) if cancel_futures else []
            if cancel_futures:
                self._waiting.clear()
                self._lock.notify_all()
        for future, *_ in dropped:
            future.cancel()
        with self._lock:
            if wait:
                self._lock.wait_for(lambda: not self._busy())
            idle = not self._busy()
        pool = self._pool
        if pool is not None and idle:
            pool.close()
            if wait:
                pool.join()


def _in_order(futures, deadline, chunked):
    """The results of `futures`, in order (each a list when chunked)."""
    futures.reverse()
    try:
        while futures:
            left = None if deadline is None else deadline - time.monotonic()
            value = futures[-1].result(left)
            futures.pop()
            if chunked:
                yield from value
            else:
                yield value
    finally:
        for future in futures:
            future.cancel()


# Executors alive; at interpreter exit (before the pools' finalizers), each
# finishes the calls it accepted, as the stdlib's executors do.
_live = weakref.WeakSet()


def _finish_all():
    for executor in list(_live):
        executor.shutdown(wait=True)


threading._register_atexit(_finish_all)
# A forked child (a worker, say) inherits the parent's executors, not their
# calls: it leaves them alone at its exit.
os.register_at_fork(after_in_child=_live.clear)
