"""Lock, RLock, Semaphore, BoundedSemaphore, Condition, Event and Barrier.

Each is built on ``_multiprocessing.SemLock``, mphost's robust semaphore in
shared memory: when a process dies holding a lock, the next acquirer
recovers it (with a RuntimeWarning naming the dead process) instead of
blocking forever. Condition, Event and Barrier are composed from SemLocks.
"""

__all__ = ['Lock', 'RLock', 'Semaphore', 'BoundedSemaphore', 'Condition', 'Event', 'Barrier']

import sys
import tempfile
import threading
import time

import _multiprocessing

from . import context
from . import process
from . import util

from _multiprocessing import SemLock as _NativeSemLock, _SemLockFront, sem_unlink

RECURSIVE_MUTEX, SEMAPHORE = list(range(2))


class AbandonedLockWarning(RuntimeWarning):
    """A process died holding a lock and this process recovered it: the state
    the lock protected may be half-updated. The lock's ``_semlock._recovered``
    says so too."""
SEM_VALUE_MAX = _multiprocessing.SemLock.SEM_VALUE_MAX


class SemLock(_SemLockFront):
    """Python face of a native semaphore: pickling, naming, clean-up.

    The native base keeps ``_semlock`` and implements ``__enter__`` and
    ``__exit__``, so that ``with lock:`` runs no Python code; ``acquire`` and
    ``release`` are the native methods themselves (see _make_methods)."""

    _rand = tempfile._RandomNameSequence()

    def __init__(self, kind, value, maxvalue, *, ctx):
        if ctx is None:
            ctx = context._default_context.get_context()
        self._is_fork_ctx = ctx.get_start_method() == 'fork'
        # A fork-only semaphore needs no name: children inherit the mapping.
        unlink_now = self._is_fork_ctx
        for _attempt in range(100):
            try:
                self._semlock = _NativeSemLock(kind, value, maxvalue, self._make_name(), unlink_now)
            except FileExistsError:
                continue
            break
        else:
            raise FileExistsError('cannot find name for semaphore')
        util.debug('created semlock with handle %s' % self._semlock.handle)
        self._make_methods()
        util.register_after_fork(self, _semlock_after_fork)
        if self._semlock.name is not None:
            from .resource_tracker import register
            register(self._semlock.name, 'semaphore')
            util.Finalize(self, SemLock._cleanup, (self._semlock.name,), exitpriority=0)

    @staticmethod
    def _cleanup(name):
        from .resource_tracker import unregister
        sem_unlink(name)
        unregister(name, 'semaphore')

    def _make_methods(self):
        self.acquire = self._semlock.acquire
        self.release = self._semlock.release

    def __getstate__(self):
        context.assert_spawning(self)
        sl = self._semlock
        if self._is_fork_ctx:
            raise RuntimeError('A SemLock created in a fork context is being shared with a '
                               'process in a spawn context. This is not supported. Please use '
                               'the same context to create multiprocessing objects and Process.')
        return (sl.handle, sl.kind, sl.maxvalue, sl.name)

    def __setstate__(self, state):
        self._semlock = _NativeSemLock._rebuild(*state)
        util.debug('recreated blocker with handle %r' % state[0])
        self._make_methods()
        # A child that rebuilt the semaphore is not fork-only any more.
        self._is_fork_ctx = False

    @staticmethod
    def _make_name():
        return '%s-%s' % (process.current_process()._config['semprefix'], next(SemLock._rand))


def _semlock_after_fork(obj):
    obj._semlock._after_fork()


class Semaphore(SemLock):

    def __init__(self, value=1, *, ctx):
        SemLock.__init__(self, SEMAPHORE, value, SEM_VALUE_MAX, ctx=ctx)

    def get_value(self):
        return self._semlock._get_value()

    def __repr__(self):
        try:
            value = self._semlock._get_value()
        except Exception:
            value = 'unknown'
        return '<%s(value=%s)>' % (self.__class__.__name__, value)


class BoundedSemaphore(Semaphore):

    def __init__(self, value=1, *, ctx):
        SemLock.__init__(self, SEMAPHORE, value, value, ctx=ctx)

    def __repr__(self):
        try:
            value = self._semlock._get_value()
        except Exception:
            value = 'unknown'
        return '<%s(value=%s, maxvalue=%s)>' % (self.__class__.__name__, value, self._semlock.maxvalue)


def _owner_name(semlock):
    """Who holds a lock, as the stdlib's reprs say it: None, this process
    (and thread), SomeOtherThread or SomeOtherProcess."""
    if semlock._is_mine():
        name = process.current_process().name
        if threading.current_thread().name != 'MainThread':
            name += '|' + threading.current_thread().name
        return name
    if semlock._get_value() == 1:
        return 'None'
    if semlock._count() > 0:
        return 'SomeOtherThread'
    return 'SomeOtherProcess'


class Lock(SemLock):
    """A non-recursive lock that any process or thread may release."""

    def __init__(self, *, ctx):
        SemLock.__init__(self, SEMAPHORE, 1, 1, ctx=ctx)

    def __repr__(self):
        try:
            name = _owner_name(self._semlock)
        except Exception:
            name = 'unknown'
        return '<%s(owner=%s)>' % (self.__class__.__name__, name)


class RLock(SemLock):
    """A recursive lock: the owner may acquire it again; only it may release."""

    def __init__(self, *, ctx):
        SemLock.__init__(self, RECURSIVE_MUTEX, 1, 1, ctx=ctx)

    def __repr__(self):
        try:
            name = _owner_name(self._semlock)
            count = self._semlock._count() if self._semlock._is_mine() else \
                (0 if name == 'None' else 'nonzero')
        except Exception:
            name, count = 'unknown', 'unknown'
        return '<%s(%s, %s)>' % (self.__class__.__name__, name, count)


class Condition(object):
    """A condition variable over a Lock or RLock shared between processes.

    Waiters announce themselves on `_sleeping_count` and sleep on
    `_wait_semaphore`; a notifier wakes as many as it wants and waits on
    `_woken_count` until each woken waiter has left, so that a waiter that
    arrives later cannot steal a wake-up.
    """

    def __init__(self, lock=None, *, ctx):
        self._lock = lock or ctx.RLock()
        self._sleeping_count = ctx.Semaphore(0)
        self._woken_count = ctx.Semaphore(0)
        self._wait_semaphore = ctx.Semaphore(0)
        self._make_methods()

    def __getstate__(self):
        context.assert_spawning(self)
        return (self._lock, self._sleeping_count, self._woken_count, self._wait_semaphore)

    def __setstate__(self, state):
        (self._lock, self._sleeping_count, self._woken_count, self._wait_semaphore) = state
        self._make_methods()

    def __enter__(self):
        return self._lock.__enter__()

    def __exit__(self, *args):
        return self._lock.__exit__(*args)

    def _make_methods(self):
        self.acquire = self._lock.acquire
        self.release = self._lock.release

    def __repr__(self):
        try:
            waiters = (self._sleeping_count._semlock._get_value() -
                       self._woken_count._semlock._get_value())
        except Exception:
            waiters = 'unknown'
        return '<%s(%s, %s)>' % (self.__class__.__name__, self._lock, waiters)

    def wait(self, timeout=None):
        assert self._lock._semlock._is_mine(), 'must acquire() condition before using wait()'
        self._sleeping_count.release()
        # Give the lock up entirely (an RLock may be held several times).
        depth = self._lock._semlock._count()
        for _ in range(depth):
            self._lock.release()
        try:
            return self._wait_semaphore.acquire(True, timeout)
        finally:
            self._woken_count.release()
            for _ in range(depth):
                self._lock.acquire()

    def notify(self, n=1):
        assert self._lock._semlock._is_mine(), 'lock is not owned'
        assert not self._wait_semaphore.acquire(False)
        # Waiters that timed out earlier left a token in _woken_count
        # without consuming a sleeping slot: settle those first.
        while self._woken_count.acquire(False):
            taken = self._sleeping_count.acquire(False)
            assert taken
        woken = 0
        while woken < n and self._sleeping_count.acquire(False):
            self._wait_semaphore.release()
            woken += 1
        if woken:
            for _ in range(woken):
                self._woken_count.acquire()
            # Wake-ups not consumed (the waiter timed out meanwhile) are withdrawn.
            while self._wait_semaphore.acquire(False):
                pass

    def notify_all(self):
        self.notify(n=sys.maxsize)

    def wait_for(self, predicate, timeout=None):
        result = predicate()
        if result:
            return result
        deadline = None if timeout is None else time.monotonic() + timeout
        remaining = timeout
        while not result:
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
            self.wait(remaining)
            result = predicate()
        return result


class Event(object):
    """A flag that processes can set, clear and wait for."""

    def __init__(self, *, ctx):
        self._cond = ctx.Condition(ctx.Lock())
        self._flag = ctx.Semaphore(0)

    def is_set(self):
        with self._cond:
            if self._flag.acquire(False):
                self._flag.release()
                return True
            return False

    def set(self):
        with self._cond:
            self._flag.acquire(False)
            self._flag.release()
            self._cond.notify_all()

    def clear(self):
        with self._cond:
            self._flag.acquire(False)

    def wait(self, timeout=None):
        with self._cond:
            if self._flag.acquire(False):
                self._flag.release()
            else:
                self._cond.wait(timeout)
            if self._flag.acquire(False):
                self._flag.release()
                return True
            return False

    def __repr__(self):
        return f'<{type(self).__qualname__} at {id(self):#x} {"set" if self.is_set() else "unset"}>'


class Barrier(threading.Barrier):
    """threading.Barrier's algorithm with its state in shared memory and a
    process-shared Condition."""

    def __init__(self, parties, action=None, timeout=None, *, ctx):
        import struct
        from .heap import BufferWrapper
        wrapper = BufferWrapper(struct.calcsize('i') * 2)
        cond = ctx.Condition()
        self.__setstate__((parties, action, timeout, cond, wrapper))
        self._state = 0
        self._count = 0

    def __setstate__(self, state):
        (self._parties, self._action, self._timeout, self._cond, self._wrapper) = state
        self._array = self._wrapper.create_memoryview().cast('i')

    def __getstate__(self):
        return (self._parties, self._action, self._timeout, self._cond, self._wrapper)

    @property
    def _state(self):
        return self._array[0]

    @_state.setter
    def _state(self, value):
        self._array[0] = value

    @property
    def _count(self):
        return self._array[1]

    @_count.setter
    def _count(self, value):
        self._array[1] = value
