"""Queue, JoinableQueue and SimpleQueue.

Items are pickled by the putting process and travel through a one-way
connection (`_reader`/`_writer`) over an unbounded shared-memory channel.
So Queue.put() writes directly into shared memory from the caller's thread:
it never blocks on an unbounded queue, needs no feeder thread, and a
producer may exit as soon as put() returns, its items staying deliverable
(no "joining processes that use queues" deadlock). An item that cannot be
pickled is reported as the stdlib reports it, through
_on_queue_feeder_error (which prints the traceback), only synchronously.

Subclasses that override the stdlib's feeder protocol (`_start_thread` or
`_feed`, as loky does) get that protocol: a feeder thread, `_buffer`,
`_notempty`, `_send_bytes`...

Otherwise put() and get() are each one native call (`_mphost.QueuePort`):
semaphore, pickling and channel in one go. Items made only of builtin
values (None, bool, int, float, str, bytes, and tuples, lists and dicts of
those) are pickled and unpickled there, to the very bytes ForkingPickler
writes; anything else goes through ForkingPickler and its reducers.
"""

__all__ = ['Queue', 'SimpleQueue', 'JoinableQueue']

import collections
import errno
import os
import threading
import time
import types
import weakref

from queue import Empty, Full

from . import connection
from . import context
from .util import debug, info, Finalize, register_after_fork, is_exiting

_ForkingPickler = context.reduction.ForkingPickler
_dumps = connection._dumps_for_channel


from _mphost import QueuePort as _QueuePort

# Put on a feeder thread's buffer to make it flush and stop.
_sentinel = object()


class Queue(object):
    """A FIFO queue shared by processes; maxsize <= 0 means unbounded."""

    def __init__(self, maxsize=0, *, ctx):
        if maxsize <= 0:
            from .synchronize import SEM_VALUE_MAX as maxsize
        self._maxsize = maxsize
        self._reader, self._writer = connection.Pipe(duplex=False)
        self._rlock = ctx.Lock()
        self._opid = os.getpid()
        self._wlock = ctx.Lock()
        self._sem = ctx.BoundedSemaphore(maxsize)
        self._ignore_epipe = False
        self._reset()
        register_after_fork(self, Queue._after_fork)

    def __getstate__(self):
        context.assert_spawning(self)
        return (self._ignore_epipe, self._maxsize, self._reader, self._writer,
                self._rlock, self._wlock, self._sem, self._opid)

    def __setstate__(self, state):
        (self._ignore_epipe, self._maxsize, self._reader, self._writer,
         self._rlock, self._wlock, self._sem, self._opid) = state
        self._reset()

    def _after_fork(self):
        debug('Queue._after_fork()')
        self._reset(after_fork=True)

    def _reset(self, after_fork=False):
        if after_fork:
            self._notempty._at_fork_reinit()
        else:
            self._notempty = threading.Condition(threading.Lock())
        self._buffer = collections.deque()
        self._thread = None
        self._jointhread = None
        self._joincancelled = False
        self._closed = False
        self._close = None
        self._send_bytes = self._writer.send_bytes
        self._recv_bytes = self._reader.recv_bytes
        self._poll = self._reader.poll
        self._direct = not self._uses_feeder()
        self._port = _QueuePort(self, self._writer._outbound, self._reader._inbound,
                                self._sem._semlock, _dumps, connection._unpickle_message)
        if self._direct:
            # put/get straight to the native calls, unless a subclass
            # defines its own.
            cls = type(self)
            if cls.put is Queue.put:
                self.put = self._port.put
            if cls.get is Queue.get:
                self.get = self._port.get

    def _uses_feeder(self):
        cls = type(self)
        return cls._start_thread is not Queue._start_thread or cls._feed is not Queue._feed

    def put(self, obj, block=True, timeout=None):
        """Put obj on the queue; raise queue.Full if a bounded queue stays full."""
        if self._closed:
            raise ValueError(f'Queue {self!r} is closed')
        if self._direct:
            self._port.put(obj, block, timeout)
            return
        if not self._sem.acquire(block, timeout):
            raise Full
        with self._notempty:
            if self._thread is None:
                self._start_thread()
            self._buffer.append(obj)
            self._notempty.notify()

    def _pickle_for_put(self, obj):
        # What the feeder thread would do with an item, in the caller's
        # thread: None when it cannot be pickled (the error is reported).
        try:
            return self._port.dumps(obj)
        except Exception as e:
            self._sem.release()
            self._on_queue_feeder_error(e, obj)
            return None

    def get(self, block=True, timeout=None):
        """Remove and return an item; raise queue.Empty if none comes in time."""
        if self._closed:
            raise ValueError(f'Queue {self!r} is closed')
        if self._direct:
            # The channel hands each message to exactly one reader.
            return self._port.get(block, timeout)
        if block and timeout is None:
            with self._rlock:
                data = self._recv_bytes()
            self._sem.release()
        else:
            deadline = time.monotonic() + timeout if block else None
            if not self._rlock.acquire(block, timeout):
                raise Empty
            try:
                remaining = max(0.0, deadline - time.monotonic()) if block else 0.0
                if not self._poll(remaining):
                    raise Empty
                data = self._recv_bytes()
                self._sem.release()
            finally:
                self._rlock.release()
        return _ForkingPickler.loads(data)

    def qsize(self):
        """Approximate number of items (put and not yet got)."""
        return self._maxsize - self._sem._semlock._get_value()

    def empty(self):
        return not self._poll()

    def full(self):
        return self._sem._semlock._is_zero()

    def get_nowait(self):
        return self.get(False)

    def put_nowait(self, obj):
        return self.put(obj, False)

    def close(self):
        """No more puts or gets from this process; what was put is delivered."""
        self._closed = True
        self._port.close()
        close = self._close
        if close:
            self._close = None
            close()
        elif self._direct:
            # Nothing is buffered: the items are in shared memory already.
            self._reader.close()

    def join_thread(self):
        """Wait for the feeder thread to flush everything (after close())."""
        debug('Queue.join_thread()')
        assert self._closed, 'Queue {0!r} not closed'.format(self)
        if self._jointhread:
            self._jointhread()

    def cancel_join_thread(self):
        """Do not wait for the feeder at exit (buffered items may be lost)."""
        debug('Queue.cancel_join_thread()')
        self._joincancelled = True
        try:
            self._jointhread.cancel()
        except AttributeError:
            pass

    def _start_thread(self):
        debug('Queue._start_thread()')
        self._buffer.clear()
        self._thread = threading.Thread(
            target=Queue._feed,
            args=(self._buffer, self._notempty, self._send_bytes, self._wlock,
                  self._reader.close, self._writer.close, self._ignore_epipe,
                  self._on_queue_feeder_error, self._sem),
            name='QueueFeederThread',
            daemon=True)
        try:
            debug('doing self._thread.start()')
            self._thread.start()
            debug('... done self._thread.start()')
        except BaseException:
            self._thread = None
            raise
        if not self._joincancelled:
            self._jointhread = Finalize(self._thread, Queue._finalize_join,
                                        [weakref.ref(self._thread)], exitpriority=-5)
        # Flush the buffer when the queue is closed or collected, and at exit.
        self._close = Finalize(self, Queue._finalize_close,
                               [self._buffer, self._notempty], exitpriority=10)

    @staticmethod
    def _finalize_join(twr):
        debug('joining queue thread')
        thread = twr()
        if thread is not None:
            thread.join()
            debug('... queue thread joined')
        else:
            debug('... queue thread already dead')

    @staticmethod
    def _finalize_close(buffer, notempty):
        debug('telling queue thread to quit')
        with notempty:
            buffer.append(_sentinel)
            notempty.notify()

    @staticmethod
    def _feed(buffer, notempty, send_bytes, writelock, reader_close, writer_close,
              ignore_epipe, onerror, queue_sem):
        """The feeder thread: pickle buffered items and write them out."""
        debug('starting thread to feed data to pipe')
        while True:
            with notempty:
                if not buffer:
                    notempty.wait()
            try:
                while buffer:
                    obj = buffer.popleft()
                    if obj is _sentinel:
                        debug('feeder thread got sentinel -- exiting')
                        reader_close()
                        writer_close()
                        return
                    data = _ForkingPickler.dumps(obj)
                    with writelock:
                        send_bytes(data)
                    del obj, data
            except Exception as e:
                if ignore_epipe and getattr(e, 'errno', 0) == errno.EPIPE:
                    return
                if is_exiting():
                    # Resources may be gone while the process shuts down.
                    info('error in queue thread: %s', e)
                    return
                # The item was not delivered: give its slot back.
                queue_sem.release()
                onerror(e, obj)

    def _on_queue_feeder_error(self, e, obj):
        """Called in the feeder thread when an item cannot be sent (for
        example when it cannot be pickled). Subclasses override it."""
        import traceback
        traceback.print_exc()


class JoinableQueue(Queue):
    """A Queue whose consumers report task_done(), so producers can join()."""

    def __init__(self, maxsize=0, *, ctx):
        Queue.__init__(self, maxsize, ctx=ctx)
        self._unfinished_tasks = ctx.Semaphore(0)
        self._cond = ctx.Condition()

    def __getstate__(self):
        return Queue.__getstate__(self) + (self._cond, self._unfinished_tasks)

    def __setstate__(self, state):
        Queue.__setstate__(self, state[:-2])
        self._cond, self._unfinished_tasks = state[-2:]

    def put(self, obj, block=True, timeout=None):
        if self._closed:
            raise ValueError(f'Queue {self!r} is closed')
        if not self._sem.acquire(block, timeout):
            raise Full
        if self._direct:
            data = self._pickle_for_put(obj)
            if data is not None:
                with self._cond:
                    self._unfinished_tasks.release()
                    self._writer._outbound.send(data)
            return
        with self._notempty, self._cond:
            if self._thread is None:
                self._start_thread()
            self._buffer.append(obj)
            self._unfinished_tasks.release()
            self._notempty.notify()

    def task_done(self):
        """Mark one item got from the queue as processed."""
        with self._cond:
            if not self._unfinished_tasks.acquire(False):
                raise ValueError('task_done() called too many times')
            if self._unfinished_tasks._semlock._is_zero():
                self._cond.notify_all()

    def join(self):
        """Wait until every item put has been marked task_done()."""
        with self._cond:
            if not self._unfinished_tasks._semlock._is_zero():
                self._cond.wait()


class SimpleQueue(object):
    """An unbounded queue without a feeder thread: put() writes directly."""

    def __init__(self, *, ctx):
        self._reader, self._writer = connection.Pipe(duplex=False)
        self._rlock = ctx.Lock()
        self._poll = self._reader.poll
        self._wlock = ctx.Lock()

    def close(self):
        self._reader.close()
        self._writer.close()

    def empty(self):
        return not self._poll()

    def __getstate__(self):
        context.assert_spawning(self)
        return (self._reader, self._writer, self._rlock, self._wlock)

    def __setstate__(self, state):
        (self._reader, self._writer, self._rlock, self._wlock) = state
        self._poll = self._reader.poll

    def get(self):
        with self._rlock:
            data = self._reader.recv_bytes()
        return _ForkingPickler.loads(data)

    def put(self, obj):
        data = _ForkingPickler.dumps(obj)
        if self._wlock is None:
            self._writer.send_bytes(data)
        else:
            with self._wlock:
                self._writer.send_bytes(data)

    __class_getitem__ = classmethod(types.GenericAlias)
