"""Lock, RLock, Semaphore, BoundedSemaphore, Condition, Event and Barrier.

Every primitive here is a thin face over a native object in shared memory:

    Lock, RLock, Semaphore,     _multiprocessing.SemLock (ipc::semaphore): a Lock
    BoundedSemaphore            or RLock whose holder died is recovered by the
                                next acquirer, with an AbandonedLockWarning;
                                a Semaphore or BoundedSemaphore is a counter
                                with no owner, and what a dead process took
                                stays taken, as on the stdlib, unless it was
                                made with undo (mphost.Semaphore)
    Condition                   _mphost.SharedCondition (ipc::condition) over the
                                Lock or RLock it is given
    Event                       _mphost.SharedEvent (ipc::event)
    Barrier                     _mphost.SharedBarrier (ipc::barrier)

None of them keeps a lock across a sleep, so no process can block the
others by dying: a Condition waiter killed in its sleep is skipped by
notify(), an Event waiter's death changes nothing, and a Barrier party that
dies in the middle of a cycle breaks the barrier for the others within about
100 ms (BrokenBarrierError) instead of leaving them to their timeout.

Sharing. A primitive made for the fork start method has no name (children
inherit its mapping); one made for spawn or forkserver is pickled by name
(only while a child is being started) and its name is removed when the
creating object goes away.
"""

__all__ = ['Lock', 'RLock', 'Semaphore', 'BoundedSemaphore', 'Condition', 'Event', 'Barrier']

import os
import tempfile
import threading
import time

import _mphost
import _multiprocessing
from _multiprocessing import SemLock as _NativeSemLock, _SemLockFront, sem_unlink

from . import context
from . import process
from . import util

# The kinds of _multiprocessing.SemLock.
RECURSIVE_MUTEX = 0
SEMAPHORE = 1

SEM_VALUE_MAX = _multiprocessing.SemLock.SEM_VALUE_MAX

_FORK_SHARED_ONLY = ('A SemLock created in a fork context is being shared with a process in a '
                     'spawn context. This is not supported. Please use the same context to '
                     'create multiprocessing objects and Process.')


class AbandonedLockWarning(RuntimeWarning):
    """A process died holding a lock and this process recovered it: the state
    the lock protected may be half-updated. The lock's ``_semlock._recovered``
    says so too."""


def _shared_by_fork_only(ctx):
    """Whether objects made for `ctx` reach children only by inheritance."""
    if ctx is None:
        ctx = context._default_context.get_context()
    return ctx.get_start_method() == 'fork'


# ---------------------------------------------------------------------------
# Lock, RLock, Semaphore, BoundedSemaphore


class SemLock(_SemLockFront):
    """What the four semaphore-backed faces share: making, naming, pickling
    and cleaning up the native SemLock.

    ``with`` runs natively (the _SemLockFront base), and ``acquire`` and
    ``release`` are the native methods themselves (_make_methods)."""

    _rand = tempfile._RandomNameSequence()

    def __init__(self, kind, value, maxvalue, *, ctx, **native_options):
        self._is_fork_ctx = _shared_by_fork_only(ctx)
        self._semlock = self._new_native(kind, value, maxvalue, native_options)
        util.debug(f'created semlock with handle {self._semlock.handle}')
        self._make_methods()
        util.register_after_fork(self, SemLock._after_fork)
        name = self._semlock.name
        if name is not None:
            from .resource_tracker import register
            register(name, 'semaphore')
            util.Finalize(self, SemLock._cleanup, (name,), exitpriority=0)

    def _new_native(self, kind, value, maxvalue, options):
        # Fork-only semaphores are unlinked at once: the name is never needed.
        tries = 100
        while tries:
            tries -= 1
            try:
                return _NativeSemLock(kind, value, maxvalue, self._make_name(), self._is_fork_ctx, **options)
            except FileExistsError:
                if not tries:
                    raise FileExistsError('cannot find name for semaphore') from None

    @staticmethod
    def _make_name():
        # 96 random bits from the system's source, as secrets.token_hex
        # gives them (without importing secrets: it pulls in hashlib and
        # libcrypto, memory every process would carry).
        prefix = process.current_process()._config['semprefix']
        return f'{prefix}-{os.urandom(12).hex()}'

    @staticmethod
    def _cleanup(name):
        from .resource_tracker import unregister
        sem_unlink(name)
        unregister(name, 'semaphore')

    def _after_fork(self):
        # The child holds none of the parent's acquisitions.
        self._semlock._after_fork()

    def _make_methods(self):
        native = self._semlock
        self.acquire, self.release = native.acquire, native.release

    def __getstate__(self):
        context.assert_spawning(self)
        if self._is_fork_ctx:
            raise RuntimeError(_FORK_SHARED_ONLY)
        native = self._semlock
        return native.handle, native.kind, native.maxvalue, native.name

    def __setstate__(self, state):
        self._semlock = _NativeSemLock._rebuild(*state)
        util.debug(f'recreated blocker with handle {state[0]!r}')
        self._make_methods()
        self._is_fork_ctx = False


def _holder(semlock):
    """(who holds it, how often) in the words of the stdlib's reprs."""
    if semlock._is_mine():
        who = process.current_process().name
        thread = threading.current_thread().name
        if thread != 'MainThread':
            who = f'{who}|{thread}'
        return who, semlock._count()
    if semlock._get_value() == 1:
        return 'None', 0
    return ('SomeOtherThread' if semlock._count() > 0 else 'SomeOtherProcess'), 'nonzero'


def _describe(face, render):
    """repr text from render(semlock), or with 'unknown' fields if the
    native lock cannot be read (closed, or half-made)."""
    try:
        fields = render(face._semlock)
    except Exception:
        fields = None
    return f'<{type(face).__name__}({fields if fields is not None else render(None)})>'


def _undo_note(s):
    return ', undo=True' if s is not None and s.undo else ''


class Semaphore(SemLock):
    """A counter with no owner: any process may release it. `_undo` (see
    mphost.Semaphore) gives a dead process's net acquisitions back."""

    def __init__(self, value=1, *, ctx, _undo=False):
        super().__init__(SEMAPHORE, value, SEM_VALUE_MAX, ctx=ctx, holder=False, undo=_undo)

    def get_value(self):
        return self._semlock._get_value()

    def __repr__(self):
        return _describe(self, lambda s: f'value={"unknown" if s is None else s._get_value()}{_undo_note(s)}')


class BoundedSemaphore(Semaphore):

    def __init__(self, value=1, *, ctx, _undo=False):
        # No holder even at value 1: a counter, unlike Lock.
        SemLock.__init__(self, SEMAPHORE, value, value, ctx=ctx, holder=False, undo=_undo)

    def __repr__(self):
        def render(s):
            if s is None:
                return 'value=unknown, maxvalue=unknown'
            return f'value={s._get_value()}, maxvalue={s.maxvalue}{_undo_note(s)}'
        return _describe(self, render)


class Lock(SemLock):
    """A non-recursive lock that any process or thread may release."""

    def __init__(self, *, ctx):
        super().__init__(SEMAPHORE, 1, 1, ctx=ctx)

    def __repr__(self):
        return _describe(self, lambda s: f'owner={"unknown" if s is None else _holder(s)[0]}')


class RLock(SemLock):
    """A recursive lock: its owner may take it again, and only it may release."""

    def __init__(self, *, ctx):
        super().__init__(RECURSIVE_MUTEX, 1, 1, ctx=ctx)

    def __repr__(self):
        return _describe(self, lambda s: 'unknown, unknown' if s is None else '%s, %s' % _holder(s))


# ---------------------------------------------------------------------------
# The primitives over _mphost's shared objects


class _SharedFace:
    """Owns one native shared object (self._native): makes it, names it for
    spawned children, removes the name when this creator goes away, and
    rebuilds it by name on the other side of a pickle."""

    _native_type = None

    def _create_native(self, ctx, *args):
        native = self._native_type(*args, unlink=_shared_by_fork_only(ctx))
        if native.name is not None:
            util.Finalize(self, _mphost.sync_unlink, (native.name,), exitpriority=0)
        self._attach(native)

    def _attach(self, native):
        self._native = native

    def _shared_name(self):
        context.assert_spawning(self)
        name = self._native.name
        if name is None:
            raise RuntimeError(_FORK_SHARED_ONLY)
        return name

    def _open_shared(self, name):
        self._attach(self._native_type.open(name))


class _Gauge:
    """A read-only stand-in for the Semaphore the stdlib's Condition keeps
    under the same attribute name: get_value() reports the native count."""

    __slots__ = ('_read',)

    def __init__(self, read):
        self._read = read

    def get_value(self):
        return self._read()


class Condition(_SharedFace):
    """A condition variable over a Lock or RLock shared between processes.

    wait() enlists the caller natively while it still holds the lock, then
    lets the lock go entirely (an RLock as many times as it is held), sleeps
    until notified, and takes the lock back as many times."""

    _native_type = _mphost.SharedCondition

    def __init__(self, lock=None, *, ctx):
        self._lock = lock if lock else ctx.RLock()
        self._create_native(ctx)

    def _attach(self, native):
        self._native = native
        self.acquire, self.release = self._lock.acquire, self._lock.release

    def __getstate__(self):
        return self._lock, self._shared_name()

    def __setstate__(self, state):
        self._lock, name = state
        self._open_shared(name)

    def __enter__(self):
        return self._lock.__enter__()

    def __exit__(self, *exc_info):
        return self._lock.__exit__(*exc_info)

    def __repr__(self):
        try:
            sleepers = self._native.waiting
        except Exception:
            sleepers = 'unknown'
        return f'<{type(self).__name__}({self._lock}, {sleepers})>'

    # What the stdlib's own conformance checks read: waiters enlisted, and
    # no wake-up left pending once they have gone.
    _sleeping_count = property(lambda self: _Gauge(lambda: self._native.waiting))
    _woken_count = property(lambda self: _Gauge(int))
    _wait_semaphore = property(lambda self: _Gauge(int))

    def _require_owned(self, message):
        if not self._lock._semlock._is_mine():
            raise AssertionError(message)

    def wait(self, timeout=None):
        self._require_owned('must acquire() condition before using wait()')
        lock = self._lock
        depth = lock._semlock._count()
        place = self._native.enlist()
        try:
            for _ in range(depth):
                lock.release()
        except BaseException:
            self._native.withdraw(place)
            raise
        try:
            return self._native.wait(place, timeout)
        finally:
            while depth:
                lock.acquire()
                depth -= 1

    def wait_for(self, predicate, timeout=None):
        verdict = predicate()
        if verdict:
            return verdict
        give_up_at = None if timeout is None else time.monotonic() + timeout
        while not verdict:
            left = None
            if give_up_at is not None:
                left = max(0.0, give_up_at - time.monotonic())
            self.wait(left)
            verdict = predicate()
            if left == 0.0:
                break
        return verdict

    def notify(self, n=1):
        self._require_owned('lock is not owned')
        self._native.notify(n)

    def notify_all(self):
        self._require_owned('lock is not owned')
        self._native.notify_all()


class Event(_SharedFace):
    """A flag that processes can set, clear and wait for. wait() returns True
    when the flag is set, or was set at any moment during the wait."""

    _native_type = _mphost.SharedEvent

    def __init__(self, *, ctx):
        self._create_native(ctx)

    def _attach(self, native):
        # The native methods serve the calls directly, without a Python frame.
        self._native = native
        self.is_set, self.set, self.clear, self.wait = native.is_set, native.set, native.clear, native.wait

    def __getstate__(self):
        return self._shared_name()

    def __setstate__(self, name):
        self._open_shared(name)

    # The class-level methods document the API; instances use the native ones.
    def is_set(self):
        return self._native.is_set()

    def set(self):
        self._native.set()

    def clear(self):
        self._native.clear()

    def wait(self, timeout=None):
        return self._native.wait(timeout)

    def __repr__(self):
        state = 'set' if self._native.is_set() else 'unset'
        return f'<{type(self).__qualname__} at {id(self):#x} {state}>'


class Barrier(_SharedFace, threading.Barrier):
    """threading.Barrier's behaviour for parties in several processes; the
    last party to arrive runs the action, in its own process."""

    _native_type = _mphost.SharedBarrier

    def __init__(self, parties, action=None, timeout=None, *, ctx):
        if parties < 1:
            raise ValueError('parties must be > 0')
        self._action, self._timeout = action, timeout
        self._create_native(ctx, parties)

    def __getstate__(self):
        return self._action, self._timeout, self._shared_name()

    def __setstate__(self, state):
        self._action, self._timeout, name = state
        self._open_shared(name)

    def wait(self, timeout=None):
        return self._native.wait(self._timeout if timeout is None else timeout, self._action)

    def abort(self):
        self._native.abort()

    def reset(self):
        self._native.reset()

    parties = property(lambda self: self._native.parties)
    n_waiting = property(lambda self: self._native.n_waiting)
    broken = property(lambda self: self._native.broken)
    # threading.Barrier's private fields, which tests inspect.
    _state = property(lambda self: self._native.state)
    _count = property(lambda self: self._native.count)
    _parties = parties
