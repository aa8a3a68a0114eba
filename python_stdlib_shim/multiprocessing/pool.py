"""Pools of worker processes (Pool) or threads (ThreadPool) and their results.

How a task travels through a process Pool::

  caller threads          parent helper threads                 worker processes
  --------------          ---------------------                 ----------------
  apply_async --(window has room)-------------------+
       |                                            v
       +--(window full)--+                      inqueue ---------> worker()
  map / imap --stream----+--> _taskqueue --> task    (ctx.            | takes a task with
                              (local)       handler   SimpleQueue)     | a receipt in its
                                       batches, keeps                  | board slot, runs
                                       the window                      | it, replies
                                                                       v
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
- Every message the parent writes on the inqueue has an identity, which
  the channel returns from send(); the parent records identity -> (job,
  first index, count). A worker takes a message with a receipt: the channel
  stores the identity in the worker's slot of the task board the moment the
  message leaves the queue, before the worker even unpickles it; every
  reply carries the identity it answers. No message is spent on this. When
  a worker dies, the worker handler reads its slot and posts EXITED on the
  outqueue, behind everything the worker wrote. If the receipt names a
  message that was not answered, whoever reads EXITED fails its tasks with
  WorkerLostError (a multiprocessing.ProcessError naming the pid and the
  signal or exit code): a map fails as a whole, an imap yields the error at
  the positions of the lost batch. The worker handler has meanwhile started
  a replacement. A message that the worker cannot unpickle fails its tasks
  with the error (the worker carries on). A pool whose inqueue writer is not
  its own (a subclass's _setup_queues with its own pickler) keeps that
  writer; its workers mark the task they run on the board once unpickled.
- One thread at a time reads the outqueue (the reader role). A caller
  blocked in get(), wait() or next() takes the role and reads its own
  results, which saves a hand-off between threads per result; the result
  handler thread steps aside while callers wait and takes the role back once
  nobody has waited for ``_GRACE`` seconds (for callbacks and the window).
  A thread wakes the reader through an eventfd, never through the outqueue,
  whose writers may be waiting for that very reader.
- Callbacks run in the result handler thread, one at a time, as with the
  stdlib. A caller that reads a result with a callback hands it over to
  that thread, followed by whatever completes while hand-overs are pending,
  so results become ready in the order they completed; results without
  callbacks complete in the reading thread when nothing is pending.

The code is split by noun: the worker loop and the exceptions it sends are
in _pool_worker; the parent's helper threads and bookkeeping in
_pool_engine; how the parent receives (outqueue readers, wake-ups, the
cache of pending results) in _pool_inbox. This module keeps the API, the
result objects and every name the stdlib's module has.

A ThreadPool runs the same machinery with worker threads and in-process
queues; nothing is pickled and worker deaths are not tracked.
"""

import collections
import itertools
import os
import queue
import sys
import traceback
import types
import warnings

from . import util
from ._pool_engine import INIT, RUN, CLOSE, TERMINATE, _Engine
from ._pool_inbox import _NOTHING, _LocalResults, _PipeResults, _PoolCache
# The stdlib's names of the worker side live here too (noqa: re-exports).
from ._pool_worker import (  # noqa: F401
    mapstar, starmapstar, RemoteTraceback, ExceptionWithTraceback, rebuild_exc,
    MaybeEncodingError, WorkerLostError, worker, _helper_reraises_exception)
from .context import ProcessError, TimeoutError  # noqa: F401

__all__ = ['Pool', 'ThreadPool']

# Numbers the calls (jobs) of every pool of this process.
job_counter = itertools.count()


def _one_argument(iterable):
    # A generator, so that a bad iterable fails in the task handler, at the
    # first position of the results, as it does with the stdlib.
    for x in iterable:
        yield (x,)


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
