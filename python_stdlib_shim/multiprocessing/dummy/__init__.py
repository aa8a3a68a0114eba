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


class DummyProcess(threading.Thread):
    """A thread with the parts of the Process API that make sense for one."""

    def __init__(self, group=None, target=None, name=None, args=(), kwargs={}):
        threading.Thread.__init__(self, group, target, name, args, kwargs)
        self._pid = None
        self._children = weakref.WeakKeyDictionary()
        self._start_called = False
        self._parent = current_process()

    def start(self):
        if self._parent is not current_process():
            raise RuntimeError('Parent is {0!r} but current_process is {1!r}'.format(
                self._parent, current_process()))
        self._start_called = True
        children = getattr(self._parent, '_children', None)
        if children is not None:
            children[self] = None
        threading.Thread.start(self)

    @property
    def exitcode(self):
        """0 once the thread has run to its end, None before."""
        if self._start_called and not self.is_alive():
            return 0
        return None


Process = DummyProcess
current_process = threading.current_thread
current_process()._children = weakref.WeakKeyDictionary()


def active_children():
    """The threads started by the calling thread that still run."""
    children = current_process()._children
    for p in list(children):
        if not p.is_alive():
            children.pop(p, None)
    return list(children)


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

    def __init__(self, typecode, value, lock=True):
        self._typecode = typecode
        self._value = value

    @property
    def value(self):
        return self._value

    @value.setter
    def value(self, value):
        self._value = value

    def __repr__(self):
        return '<%s(%r, %r)>' % (type(self).__name__, self._typecode, self._value)


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
