"""Queue, JoinableQueue and SimpleQueue: FIFO queues between processes.

Every queue is one mphost channel, an unbounded shared-memory ring that
takes whole messages from any number of writers and hands each message to
exactly one reader. Its two ends are the connections `_reader` and
`_writer` of a one-way Pipe; clients reach for those (concurrent.futures
waits on a SimpleQueue's `_reader`, Pool sends on `_writer`).

The work of put() and get() is one native call each on a port
(`_mphost.QueuePort`, embed/include/mphost/embed/queue_port.hpp): the slot
semaphore of a bounded queue, JoinableQueue's task count, pickling to the
very bytes ForkingPickler writes, the channel, waiting with the GIL
released. This module is the policy around it: which port a queue gets,
what travels to a child, what close() does.

Since put() writes straight into shared memory, a Queue needs no feeder
thread: an unbounded put never blocks, and a producer may exit as soon as
put() returns (no "joining processes that use queues" deadlock). An item
that cannot be pickled is reported through _on_queue_feeder_error, as the
stdlib's feeder reports it, only synchronously. The stdlib's feeder
protocol (`_start_thread`, `_feed`, `_buffer`, `_notempty`, `_send_bytes`,
`_finalize_close`, `_finalize_join`, `_sentinel`) is kept for subclasses
that take it over, as loky's Queue does: overriding `_start_thread` routes
put() through a buffer and a feeder thread again.

The channel needs no lock on either side, so `_rlock` and `_wlock` are one
shared stand-in that locks nothing, there for subclasses that take them.
"""

__all__ = ['Queue', 'SimpleQueue', 'JoinableQueue']

import collections
import errno
import os
import threading
import types
import weakref

from queue import Empty, Full  # noqa: F401 - part of the module's surface

from _mphost import QueuePort as _QueuePort

from . import connection
from . import context
from .util import Finalize, debug, info, is_exiting, register_after_fork

_dumps = connection._dumps_for_channel
_loads = connection._unpickle_message

# Put in a feeder's buffer, it makes the feeder close both ends and stop
# (loky imports it).
_sentinel = object()


class _NoLock:
    """Where the stdlib keeps a Lock around its pipe. Picklable; every
    process shares the one instance."""

    __slots__ = ()

    def acquire(self, block=True, timeout=None):
        return True

    def release(self):
        pass

    def __enter__(self):
        return True

    def __exit__(self, *exc_info):
        return None

    def __reduce__(self):
        return '_NO_LOCK'


_NO_LOCK = _NoLock()


def _one_way():
    """(reading end, writing end) of a fresh channel: a Pipe(duplex=False)
    whose reading end rings itself through the writing end's socket (both
    travel together), so that a queue costs two descriptors, as the stdlib's."""
    return connection._channel._channel_pipe(False, keep_ring=False)


def _for_child(queue, state):
    # What a queue's __getstate__ returns: only while a child is spawned.
    context.assert_spawning(queue)
    return state


def _wake_feeder(buffer, notempty, item):
    # Appends to a feeder's buffer and wakes it; the same step posts an
    # item and the sentinel that stops it.
    with notempty:
        buffer.append(item)
        notempty.notify()


class Queue(object):
    """A FIFO queue shared by processes; maxsize <= 0 means unbounded."""

    # The attributes a child receives (see _initial_state); the others
    # belong to one process and are rebuilt by _reset().
    _travelling = ('_maxsize', '_reader', '_writer', '_sem', '_ignore_epipe', '_opid')
    _rlock = _wlock = _NO_LOCK
    _ignore_epipe = False
    # Per-process state, as class defaults: a process's own values are
    # instance attributes, which _reset() drops.
    _closed = _joincancelled = False
    _close = _thread = _jointhread = None

    def __init__(self, maxsize=0, *, ctx):
        self._adopt(self._initial_state(maxsize, ctx))
        # A forked child starts over on its side (no feeder came along).
        register_after_fork(self, Queue._reset)

    def _initial_state(self, maxsize, ctx):
        from .synchronize import SEM_VALUE_MAX
        slots = maxsize if maxsize > 0 else SEM_VALUE_MAX
        reader, writer = _one_way()
        connection._label_channels((reader,), type(self).__name__)
        return {'_maxsize': slots, '_sem': ctx.BoundedSemaphore(slots),
                '_reader': reader, '_writer': writer, '_opid': os.getpid()}

    def _adopt(self, state):
        vars(self).update(state)
        self._reset()

    def __getstate__(self):
        return _for_child(self, {name: getattr(self, name) for name in self._travelling})

    def __setstate__(self, state):
        self._adopt(state)

    def _reset(self):
        """This process's side of the queue: a fresh port; for a subclass
        that takes over the feeder, an empty buffer and no feeder yet."""
        own = vars(self)
        for name in ('_closed', '_joincancelled', '_close', '_thread', '_jointhread', 'put', 'get'):
            own.pop(name, None)
        cls = type(self)
        self._feeding = cls._start_thread is not Queue._start_thread
        if self._feeding:
            self._buffer = collections.deque()
            self._notempty = threading.Condition(threading.Lock())
        self._port = _QueuePort(self, self._writer._outbound, self._reader._inbound, self._sem._semlock,
                                _dumps, _loads, feeder=self._feeding, keep=(self._reader, self._writer),
                                **self._port_options())
        # The port's calls stand in for the methods a subclass left alone.
        if cls.get is Queue.get:
            self.get = self._port.get
        if cls.put is Queue.put:
            self.put = self._port.put

    def _port_options(self):
        return {}

    @property
    def _send_bytes(self):
        # What a feeder writes with: the writing end's, whatever `_writer`
        # is now (a subclass may wrap it).
        return self._writer.send_bytes

    def put(self, obj, block=True, timeout=None):
        """Put obj on the queue; raise queue.Full if a bounded queue stays full."""
        return self._port.put(obj, block, timeout)

    def _to_feeder(self, obj):
        # The port's put, for a queue with a feeder, once the item has its
        # slot (and is counted as a task).
        if self._thread is None:
            with self._notempty:
                # Of two first puts at once, one starts the feeder.
                if self._thread is None:
                    self._start_thread()
        _wake_feeder(self._buffer, self._notempty, obj)

    def get(self, block=True, timeout=None):
        """Remove and return an item; raise queue.Empty if none comes in time."""
        return self._port.get(block, timeout)

    def qsize(self):
        """Approximate number of items (put and not yet got)."""
        return self._maxsize - self._sem._semlock._get_value()

    def empty(self):
        return not self._reader.poll()

    def full(self):
        return self._sem._semlock._is_zero()

    def get_nowait(self):
        return self.get(False)

    def put_nowait(self, obj):
        return self.put(obj, False)

    def close(self):
        """No more puts or gets from this process; what was put is delivered.

        A feeder flushes its buffer and closes both ends; without one the
        items are in shared memory already, and the reading end closes now
        (a thread blocked in get() wakes with OSError)."""
        self._closed = True
        self._port.close()
        stop_feeder, self._close = self._close, None
        if stop_feeder is not None:
            stop_feeder()
        elif not self._feeding:
            self._reader.close()

    def join_thread(self):
        """After close(): wait until the feeder has sent its buffer."""
        assert self._closed, f'Queue {self!r} not closed'
        joiner = self._jointhread
        if joiner is not None:
            joiner()

    def cancel_join_thread(self):
        """Do not wait for the feeder at exit (its buffer may be lost)."""
        self._joincancelled = True
        joiner = self._jointhread
        if joiner is not None:
            joiner.cancel()

    def _start_thread(self):
        """Start the feeder thread of a subclass that routes put() through
        it; its finalizers stop it when the queue is closed or collected
        and wait for it at exit."""
        feeder = threading.Thread(target=Queue._feed, args=(self,),
                                  name='QueueFeederThread', daemon=True)
        feeder.start()
        self._thread = feeder
        debug('queue feeder started')
        if not self._joincancelled:
            self._jointhread = Finalize(feeder, Queue._finalize_join, [weakref.ref(feeder)],
                                        exitpriority=-5)
        self._close = Finalize(self, Queue._finalize_close, [self._buffer, self._notempty],
                               exitpriority=10)

    @staticmethod
    def _finalize_join(thread_ref):
        feeder = thread_ref()
        if feeder is not None:
            feeder.join()

    @staticmethod
    def _finalize_close(buffer, notempty):
        _wake_feeder(buffer, notempty, _sentinel)

    @staticmethod
    def _feed(queue):
        """The feeder thread: takes everything buffered at once, pickles and
        sends each item; at the sentinel closes both ends and ends."""
        pending, notempty = queue._buffer, queue._notempty
        while True:
            with notempty:
                notempty.wait_for(lambda: pending)
                batch = list(pending)
                pending.clear()
            for obj in batch:
                if obj is _sentinel:
                    queue._reader.close()
                    queue._writer.close()
                    return
                try:
                    data = connection._dumps(obj)
                    with queue._wlock:
                        queue._send_bytes(data)
                except Exception as exc:
                    if queue._ignore_epipe and getattr(exc, 'errno', None) == errno.EPIPE:
                        return
                    if is_exiting():
                        # The process is going away under the thread.
                        info('error in queue thread: %s', exc)
                        return
                    queue._sem.release()
                    queue._on_queue_feeder_error(exc, obj)
                del obj

    def _on_queue_feeder_error(self, e, obj):
        """An item could not be sent (it cannot be pickled, say). Prints the
        traceback; subclasses override it (concurrent.futures does)."""
        import traceback  # only on this rare path: start-up stays light
        traceback.print_exception(e)


class JoinableQueue(Queue):
    """A Queue whose consumers report task_done(), so producers can join()."""

    _travelling = Queue._travelling + ('_unfinished_tasks', '_cond')

    def _initial_state(self, maxsize, ctx):
        state = super()._initial_state(maxsize, ctx)
        state.update(_unfinished_tasks=ctx.Semaphore(0), _cond=ctx.Condition())
        return state

    def _port_options(self):
        # The port counts an item once it is pickled (or buffered for a
        # feeder), before it can be got.
        return {'tasks': self._unfinished_tasks._semlock}

    def _has_pending(self):
        return not self._unfinished_tasks._semlock._is_zero()

    def task_done(self):
        """Mark one item got from the queue as processed."""
        with self._cond:
            if not self._unfinished_tasks.acquire(False):
                raise ValueError('task_done() called too many times')
            if not self._has_pending():
                self._cond.notify_all()

    def join(self):
        """Wait until every item put has been marked task_done()."""
        with self._cond:
            if self._has_pending():
                self._cond.wait()


class SimpleQueue(object):
    """An unbounded queue: put() pickles and writes in the caller's thread,
    get() waits without limit; neither takes a lock."""

    _rlock = _wlock = _NO_LOCK

    def __init__(self, *, ctx):
        self._reader, self._writer = _one_way()
        connection._label_channels((self._reader,), type(self).__name__)
        self._attach()

    def _attach(self):
        # The port keeps the ends open while a bound put or get of it
        # lives, even if this queue is gone (SimpleQueue().put(obj)).
        port = _QueuePort(self, self._writer._outbound, self._reader._inbound, None,
                          _dumps, _loads, simple=True, keep=(self._reader, self._writer))
        self._port = port
        cls = type(self)
        if cls.put is SimpleQueue.put:
            self.put = port.put
        if cls.get is SimpleQueue.get:
            self.get = port.get

    def _current_port(self):
        # A subclass's __setstate__ may set the ends without attaching.
        if '_port' not in vars(self):
            self._attach()
        return self._port

    def put(self, obj):
        self._current_port().put(obj)

    def get(self):
        return self._current_port().get()

    def empty(self):
        return not self._reader.poll()

    def close(self):
        for end in (self._reader, self._writer):
            end.close()

    def __getstate__(self):
        return _for_child(self, (self._reader, self._writer))

    def __setstate__(self, state):
        self._reader, self._writer = state
        self._attach()

    __class_getitem__ = classmethod(types.GenericAlias)
