"""The multiprocessing API over threads of this process.

``Process`` is a thread, the synchronization types and ``Queue`` are those
of ``threading`` and ``queue``, ``Pool`` is a ThreadPool, and ``Pipe`` is a
pair of in-process queues (see dummy.connection). Nothing is pickled.
"""

__all__ = [
    'Process', 'current_process', 'active_children', 'freeze_support',
    'Lock', 'RLock', 'Semaphore', 'BoundedSemaphore', 'Condition',
    'Event', 'Barrier', 'Queue', 'Manager', 'Pipe', 'Pool', 'JoinableQueue',
]

import array
import sys
import threading
import weakref

from .connection import Pipe
from threading import Lock, RLock, Semaphore, BoundedSemaphore
from threading import Event, Condition, Barrier
from queue import Queue


# Started threads, by the thread that started them, in start order.
_started_by = weakref.WeakKeyDictionary()


class DummyProcess(threading.Thread):
    """A thread with the parts of the Process API that make sense for one:
    it is started by the thread that made it, and it has an exit code."""

    def __init__(self, group=None, target=None, name=None, args=(), kwargs={}):
        super().__init__(group, target, name, args, kwargs)
        self._parent = threading.current_thread()

    def start(self):
        caller = threading.current_thread()
        if caller is not self._parent:
            raise RuntimeError(f'Parent is {self._parent!r} but current_process is {caller!r}')
        _started_by.setdefault(caller, weakref.WeakKeyDictionary())[self] = None
        super().start()

    @property
    def exitcode(self):
        """0 once the thread has run to its end, None before."""
        finished = self.ident is not None and not self.is_alive()
        return 0 if finished else None


Process = DummyProcess
current_process = threading.current_thread


def active_children():
    """The threads the calling thread started that are still running."""
    started = _started_by.get(threading.current_thread())
    if not started:
        return []
    for finished in [t for t in started if not t.is_alive()]:
        del started[finished]
    return list(started)


def freeze_support():
    pass


class Namespace(object):
    """A bag of attributes."""

    def __init__(self, /, **kwds):
        self.__dict__.update(kwds)

    def __repr__(self):
        shown = sorted('%s=%r' % (name, value) for name, value in list(self.__dict__.items())
                       if not name.startswith('_'))
        return '%s(%s)' % (type(self).__name__, ', '.join(shown))


dict = dict
list = list


def Array(typecode, sequence, lock=True):
    return array.array(typecode, sequence)


class Value(object):
    """A value with a `value` attribute (threads share it as it is)."""

    __slots__ = ('_typecode', 'value')

    def __init__(self, typecode, value, lock=True):
        self._typecode, self.value = typecode, value

    def __repr__(self):
        return f'<{type(self).__name__}({self._typecode!r}, {self.value!r})>'


def Manager():
    """This module: it already makes objects that threads share."""
    return sys.modules[__name__]


def shutdown():
    pass


def Pool(processes=None, initializer=None, initargs=()):
    """A pool of worker threads."""
    from ..pool import ThreadPool
    return ThreadPool(processes, initializer, initargs)


JoinableQueue = Queue
