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
in _pool_worker; the parent's helper threads, the reader role and the
bookkeeping of deaths in _pool_engine; its sending side (task handler,
window, batches, the record of what each message carries) in _pool_tasks;
the task board in _pool_board; how the parent receives (outqueue readers,
wake-ups, the cache of pending results) in _pool_inbox. This module keeps
the API, the result objects and the names of the stdlib's module that
programs reach.

A ThreadPool runs the same machinery with worker threads and in-process
queues; nothing is pickled and worker deaths are not tracked.
"""

import itertools
import os
import queue
import sys
import traceback
import types
import warnings
from collections import deque
from functools import wraps

from . import util
from ._pool_engine import (INIT, RUN, CLOSE, TERMINATE, _Engine, _Settings, _drain_queue,
                           _terminate_living)
from ._pool_inbox import _NOTHING, _LocalResults, _PipeResults
# The stdlib's names of the worker side live here too (noqa: re-exports).
from ._pool_worker import (  # noqa: F401
    mapstar, starmapstar, RemoteTraceback, ExceptionWithTraceback, rebuild_exc,
    MaybeEncodingError, WorkerLostError, worker, _helper_reraises_exception)
from .context import ProcessError, TimeoutError  # noqa: F401

__all__ = ['Pool', 'ThreadPool']

# Numbers the calls (jobs) of every pool of this process.
job_counter = itertools.count()


def _checked_settings(processes, initializer, initargs, maxtasksperchild):
    """A new pool's settings, refused in the stdlib's words when wrong."""
    count = (os.cpu_count() or 1) if processes is None else processes
    if count < 1:
        raise ValueError('Number of processes must be at least 1')
    limit = maxtasksperchild
    if limit is not None and not (isinstance(limit, int) and limit > 0):
        raise ValueError('maxtasksperchild must be a positive int or None')
    if not (initializer is None or callable(initializer)):
        raise TypeError('initializer must be a callable')
    return _Settings(count, initializer, initargs, limit)


def _when_running(method):
    """A Pool method that a closed or terminated pool refuses ('Pool not
    running', ValueError), before it looks at its arguments."""
    @wraps(method)
    def checked(pool, *args, **kwargs):
        pool._check_running()
        return method(pool, *args, **kwargs)
    return checked


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
    _Results = _PipeResults      # how the parent receives (see _pool_inbox)
    # Where a subclass (mphost.Pool) hands each new call its watcher: an
    # object with take() -> a watcher or None (see _Call._watch).
    _watchers = None

    @staticmethod
    def Process(ctx, *args, **kwds):
        return ctx.Process(*args, **kwds)

    def __init__(self, processes=None, initializer=None, initargs=(),
                 maxtasksperchild=None, context=None):
        # First of all: __del__ looks at them even when __init__ fails.
        self._pool, self._state = [], INIT
        settings = _checked_settings(processes, initializer, initargs, maxtasksperchild)
        if context is None:
            from . import get_context
            context = get_context()
        self._ctx = context
        (self._processes, self._initializer, self._initargs,
         self._maxtasksperchild) = settings
        self._setup_queues()
        engine = self._engine = _Engine(self, settings)
        self._taskqueue, self._cache = engine.taskqueue, engine.cache
        engine.start()
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
        kind = type(self)
        return (f'<{kind.__module__}.{kind.__qualname__} state={self._state} '
                f'pool_size={len(self._pool)}>')

    def __reduce__(self):
        raise NotImplementedError(
            'pool objects cannot be passed between processes or pickled')

    # -- how this kind of pool talks to its workers ------------------------

    def _setup_queues(self):
        # Each queue with the parent's fast path on it: only parent threads
        # write tasks and only the reader role reads results, so the parent
        # skips the queues' cross-process locks.
        tasks, results = self._ctx.SimpleQueue(), self._ctx.SimpleQueue()
        self._inqueue, self._quick_put = tasks, tasks._writer.send
        self._outqueue, self._quick_get = results, results._reader.recv

    @staticmethod
    def _get_worker_sentinels(workers):
        return [w.sentinel for w in workers if hasattr(w, 'sentinel')]

    @staticmethod
    def _help_stuff_finish(inqueue, workers):
        """Stop the workers of a pool being terminated: kill them."""
        _terminate_living(workers)

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
            raise ValueError('Pool not running')

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

    def map_async(self, func, iterable, chunksize=None, callback=None, error_callback=None):
        """Asynchronous map(): returns a MapResult."""
        return self._map_async(func, iterable, mapstar, chunksize, callback, error_callback)

    def imap(self, func, iterable, chunksize=1):
        """Lazy map(): an iterator of the results, in order."""
        return self._imap(IMapIterator, func, iterable, chunksize)

    def imap_unordered(self, func, iterable, chunksize=1):
        """Like imap(), results in the order they complete."""
        return self._imap(IMapUnorderedIterator, func, iterable, chunksize)

    @_when_running
    def apply_async(self, func, args=(), kwds={}, callback=None, error_callback=None):
        """Asynchronous apply(): returns an ApplyResult."""
        pending = ApplyResult(self, callback, error_callback)
        self._engine.submit((pending._job, 0, func, args, kwds))
        return pending

    @_when_running
    def _imap(self, iterator_class, func, iterable, chunksize):
        # One task per item, or mapstar over chunks of them whose results
        # the caller sees flattened.
        if chunksize == 1:
            stream, flat = _one_argument(iterable), None
        elif chunksize >= 1:
            stream, flat = zip(Pool._get_tasks(func, iterable, chunksize)), mapstar
        else:
            raise ValueError(f"Chunksize must be 1+, not {chunksize:n}")
        pending = iterator_class(self)
        self._engine.submit_stream(pending, flat or func, stream, set_length=True)
        return pending if flat is None else itertools.chain.from_iterable(pending)

    @_when_running
    def _map_async(self, func, iterable, mapper, chunksize=None, callback=None,
                   error_callback=None):
        items = iterable if hasattr(iterable, '__len__') else list(iterable)
        count = len(items)
        if not count:
            chunksize = 0
        elif chunksize is None:
            # About four chunks per worker.
            chunksize = -(-count // (4 * (len(self._pool) or self._processes)))
        pending = MapResult(self, chunksize, count, callback, error_callback)
        if pending._number_left:
            self._engine.submit_stream(pending, mapper,
                                       zip(Pool._get_tasks(func, items, chunksize)),
                                       left=pending._number_left)
        return pending

    @staticmethod
    def _get_tasks(func, it, size):
        """(func, chunk) for each chunk of `size` items of it."""
        source = iter(it)
        while chunk := tuple(itertools.islice(source, size)):
            yield func, chunk

    def close(self):
        """No more tasks; the workers exit once the pending ones are done."""
        if self._state == RUN:
            self._state = CLOSE
            self._engine.close()

    def terminate(self):
        """Stop the workers at once, pending work or not."""
        self._state = TERMINATE
        self._terminate()

    def join(self):
        """Wait for the workers to exit; close() or terminate() first."""
        if self._state not in (CLOSE, TERMINATE):
            raise ValueError('Pool is still running' if self._state == RUN
                             else 'In unknown state')
        self._engine.join()

    @_when_running
    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_val, exc_tb):
        self.terminate()


#
# Results. The engine fills them under its lock: _deliver(i, (ok, value))
# for one task, _deliver_batch(first, items) for consecutive ones, _lose(
# first, n, exc) for tasks that will never be answered; each returns True
# when that made the result final. _complete() then runs the callbacks with
# no lock held and makes it ready.
#

class _Call(object):
    """What every pending call has: its job number, under which it waits
    in its pool's cache, and the pool's engine.

    A call may have a watcher (mphost's progress bars): its settled(
    outcomes) hears of the map/imap outcomes delivered (engine lock held:
    it must only count), its finish(call) runs once the call is final, in
    the thread that completes it, before any callback."""

    _watch = None

    def _register(self, pool):
        self._pool = pool
        self._engine = pool._engine
        self._job = job = next(job_counter)
        self._cache = pool._cache
        pool._cache[job] = self
        if pool._watchers is not None:
            self._watch = pool._watchers.take()

    def _drop(self):
        # Settled without any task (an empty map): out of the cache now.
        self._cache.pop(self._job, None)
        self._pool = None


class ApplyResult(_Call):
    """The pending result of apply_async()."""

    def __init__(self, pool, callback, error_callback):
        self._callback, self._error_callback = callback, error_callback
        self._ready = False
        self._closed = False          # final: later deliveries are ignored
        self._success = self._value = None
        self._register(pool)

    def ready(self):
        return self._ready

    def successful(self):
        if self._ready:
            return self._success
        raise ValueError(f"{self!r} not ready")

    def wait(self, timeout=None):
        if not self._ready:
            self._engine.wait_ready(self.ready, timeout)

    def get(self, timeout=None):
        if not (self._ready or self._engine.wait_ready(self.ready, timeout)):
            raise TimeoutError
        if not self._success:
            raise self._value
        return self._value

    def _deliver(self, i, outcome):
        if self._closed:
            return False
        self._success, self._value = outcome
        self._closed = True
        return True

    def _deliver_batch(self, first, outcomes):
        return self._deliver(first, outcomes[0])

    def _lose(self, first, n, exc):
        return self._deliver(first, (False, exc))

    def _complete(self):
        """Run the callback (no lock held), then mark the result ready."""
        if self._watch is not None:
            self._watch.finish(self)
        hook = self._callback if self._success else self._error_callback
        if hook is not None:
            try:
                hook(self._value)
            except Exception:
                sys.stderr.write(f'Exception in a callback of {self!r}:\n')
                traceback.print_exc()
        self._ready = True

    def _set(self, i, outcome):
        """The stdlib's entry point: deliver one outcome, complete if final."""
        if self._deliver(i, outcome):
            self._engine.complete_now([self])

    __class_getitem__ = classmethod(types.GenericAlias)


AsyncResult = ApplyResult


class MapResult(ApplyResult):
    """The pending result of map_async() and starmap_async(): one list,
    filled chunk by chunk; the first failure is the result."""

    def __init__(self, pool, chunksize, length, callback, error_callback):
        self._chunksize = chunksize
        self._number_left = -(-length // chunksize) if chunksize > 0 else 0
        ApplyResult.__init__(self, pool, callback, error_callback)
        self._success, self._value = True, [None] * length
        if not self._number_left:
            self._ready = self._closed = True
            self._drop()

    def _deliver(self, i, outcome):
        return self._deliver_batch(i, (outcome,))

    def _deliver_batch(self, first, outcomes):
        if self._closed:
            return False
        size, values = self._chunksize, self._value
        for chunk, (ok, value) in enumerate(outcomes, first):
            if not self._success:
                break                 # the first failure is the result
            if not ok:
                self._success, self._value = False, value
            elif size == 1:
                values[chunk] = value[0]
            else:
                values[chunk * size:(chunk + 1) * size] = value
        if self._watch is not None:
            self._watch.settled(outcomes)
        self._number_left -= len(outcomes)
        self._closed = not self._number_left
        return self._closed

    def _lose(self, first, n, exc):
        # The whole call fails now: the lost chunks will never come back.
        if self._closed:
            return False
        self._success, self._value, self._closed = False, exc, True
        return True


class IMapIterator(_Call):
    """The iterator returned by imap(): results in the order of the input."""

    def __init__(self, pool):
        self._items = deque()          # (ok, value) the caller may take
        self._index = 0                # items that went to _items so far
        self._length = None            # known once the input is exhausted
        self._unsorted = {}            # position -> (ok, value) that came early
        self._register(pool)
        self._cond = self._engine._cond

    def __iter__(self):
        return self

    def _take(self):
        """Next item or _NOTHING (lock held); StopIteration at the end."""
        if self._items:
            return self._items.popleft()
        if self._index != self._length:
            return _NOTHING
        self._pool = None
        raise StopIteration

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
                raise TimeoutError
        if item[0]:
            return item[1]
        raise item[1]

    __next__ = next

    def _put(self, i, item):
        if i != self._index:
            self._unsorted[i] = item
            return
        self._items.append(item)
        self._index = i = i + 1
        early = self._unsorted
        while i in early:
            self._items.append(early.pop(i))
            self._index = i = i + 1

    def _deliver(self, i, item):
        self._put(i, item)
        if self._watch is not None:
            self._watch.settled((item,))
        return self._index == self._length

    def _deliver_batch(self, first, items):
        for i, item in enumerate(items, first):
            self._put(i, item)
        if self._watch is not None:
            self._watch.settled(items)
        return self._index == self._length

    def _lose(self, first, n, exc):
        return self._deliver_batch(first, [(False, exc)] * n)

    def _set_length(self, length):
        self._length = length
        return self._index == length

    def _complete(self):
        if self._watch is not None:
            self._watch.finish(self)


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
    _Results = _LocalResults

    @staticmethod
    def Process(ctx, *args, **kwds):
        from .dummy import Process
        return Process(*args, **kwds)

    def __init__(self, processes=None, initializer=None, initargs=()):
        Pool.__init__(self, processes, initializer, initargs)

    def _setup_queues(self):
        # In-process queues: nothing is pickled, and no lock is needed.
        tasks, results = queue.SimpleQueue(), queue.SimpleQueue()
        self._inqueue, self._quick_put = tasks, tasks.put
        self._outqueue, self._quick_get = results, results.get

    @staticmethod
    def _get_worker_sentinels(workers):
        return []

    @staticmethod
    def _help_stuff_finish(inqueue, workers):
        # Threads cannot be killed: drop the queued tasks and let each
        # worker finish the task it runs, then read a stop sentinel.
        _drain_queue(inqueue)
        for _ in workers:
            inqueue.put(None)
