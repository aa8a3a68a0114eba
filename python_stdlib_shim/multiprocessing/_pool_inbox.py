"""How the parent of a pool receives (multiprocessing.pool): the outqueue
readers of process and thread pools, the eventfd that wakes a blocked
reader, and the cache of pending results. See multiprocessing.pool."""

# A private module: `from multiprocessing._pool_* import *` exports nothing.
__all__ = []

import math
import os
import queue
import select
import threading

# How long a parent thread waiting for results waits with the outqueue's own
# poll() before it sleeps where other threads can wake it (_PipeResults).
_DIRECT_WAIT = 0.002

_NOTHING = object()


class _Unreadable:
    """What receive() gives for a message that arrived but could not be
    read (unpickled): the error, for the engine to report."""

    def __init__(self, error):
        self.error = error


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
            return self._take()
        if timeout is not None:
            timeout -= direct
            if timeout <= 0:
                return _NOTHING
        ms = -1 if timeout is None else math.ceil(timeout * 1000)
        if any(fd == self._wakeup.fileno() for fd, _ in self._poller.poll(ms)):
            self._wakeup.drain()
        if self._poll(0):
            return self._take()
        return _NOTHING

    def _take(self):
        # Only reading a message that is there can fail for the message's
        # sake; what the waits above raise (a signal handler's exception)
        # is the caller's.
        try:
            return self._get()
        except (EOFError, OSError):
            raise
        except Exception as e:
            return _Unreadable(e)

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
