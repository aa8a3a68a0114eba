"""Contexts: the front door of the package.

A context bundles a start method with factories for every multiprocessing
object. ``multiprocessing.X`` is ``X`` of the default context, whose start
method is chosen on first use (fork unless set_start_method said otherwise).
The package's exception classes are defined here, once; the native layer
raises these very classes.

Two kinds of context:
- one concrete context per start method, kept in ``_concrete_contexts`` by
  name (loky adds its own there, so lookups go through that dict);
- the default context, which forwards to the concrete context chosen by
  ``set_start_method`` -- or to its fallback (fork), which becomes the
  choice the first time anything asks which method is in force. That
  choice is the only state a context holds.

Factories import their module on first call, so importing the package stays
cheap and the modules may import this one.
"""

import importlib
import os
import sys
import threading

from . import process
from . import reduction

__all__ = ()


class ProcessError(Exception):
    pass


class BufferTooShort(ProcessError):
    pass


class TimeoutError(ProcessError):
    pass


class AuthenticationError(ProcessError):
    pass


def _sibling(name):
    """Module `name` of this package, imported on first use.

    A module another thread is still importing is waited for (through
    import_module, which takes the module's import lock), never returned
    half made."""
    module = sys.modules.get(f'{__package__}.{name}')
    if module is None or getattr(module.__spec__, '_initializing', False):
        module = importlib.import_module(f'.{name}', __package__)
    return module


class BaseContext(object):
    """Factories for processes, queues, locks, pools... bound to a start method."""

    ProcessError = ProcessError
    BufferTooShort = BufferTooShort
    TimeoutError = TimeoutError
    AuthenticationError = AuthenticationError

    current_process = staticmethod(process.current_process)
    parent_process = staticmethod(process.parent_process)
    active_children = staticmethod(process.active_children)

    # -- the start method -------------------------------------------------

    def get_context(self, method=None):
        """This context (method None), or the concrete one named `method`."""
        if method is None:
            return self
        found = _concrete_contexts.get(method)
        if found is None:
            raise ValueError(f'cannot find context for {method!r}')
        found._check_available()
        return found

    def get_start_method(self, allow_none=False):
        return self._name

    def set_start_method(self, method, force=False):
        raise ValueError('cannot set start method of concrete context')

    def _check_available(self):
        """Raise ValueError when this start method cannot be used here."""

    # -- processes and their environment ----------------------------------

    def cpu_count(self):
        """Number of CPUs in the system."""
        counted = os.cpu_count()
        if not counted:
            raise NotImplementedError('cannot determine number of cpus')
        return counted

    def freeze_support(self):
        """Run the child's code when a frozen executable was started as one."""
        if getattr(sys, 'frozen', False):
            _sibling('spawn').freeze_support()

    def set_executable(self, executable):
        """The mphost executable that spawn starts children with."""
        _sibling('spawn').set_executable(executable)

    def set_forkserver_preload(self, module_names):
        """Modules the forkserver imports once, before forking children."""
        _sibling('forkserver').set_forkserver_preload(module_names)

    def get_logger(self):
        return _sibling('util').get_logger()

    def log_to_stderr(self, level=None):
        return _sibling('util').log_to_stderr(level)

    @property
    def reducer(self):
        """The reduction module (or an AbstractReducer) used for pickling."""
        return globals().get('reduction')

    @reducer.setter
    def reducer(self, reduction):
        globals()['reduction'] = reduction

    def allow_connection_pickling(self):
        """Connections and sockets pickle without this call; kept for the API."""
        _sibling('connection')  # importing it registers the reducers

    # -- objects bound to this context's start method ---------------------

    def Manager(self):
        """A started SyncManager: shared objects served by a manager process."""
        server = _sibling('managers').SyncManager(ctx=self.get_context())
        server.start()
        return server

    def Pipe(self, duplex=True):
        """A pair of connected Connection objects."""
        return _sibling('connection').Pipe(duplex)

    def Lock(self):
        return _sibling('synchronize').Lock(ctx=self.get_context())

    def RLock(self):
        return _sibling('synchronize').RLock(ctx=self.get_context())

    def Condition(self, lock=None):
        return _sibling('synchronize').Condition(lock, ctx=self.get_context())

    def Semaphore(self, value=1):
        return _sibling('synchronize').Semaphore(value, ctx=self.get_context())

    def BoundedSemaphore(self, value=1):
        return _sibling('synchronize').BoundedSemaphore(value, ctx=self.get_context())

    def Event(self):
        return _sibling('synchronize').Event(ctx=self.get_context())

    def Barrier(self, parties, action=None, timeout=None):
        return _sibling('synchronize').Barrier(parties, action, timeout, ctx=self.get_context())

    def Queue(self, maxsize=0):
        return _sibling('queues').Queue(maxsize, ctx=self.get_context())

    def JoinableQueue(self, maxsize=0):
        return _sibling('queues').JoinableQueue(maxsize, ctx=self.get_context())

    def SimpleQueue(self):
        return _sibling('queues').SimpleQueue(ctx=self.get_context())

    def Pool(self, processes=None, initializer=None, initargs=(), maxtasksperchild=None):
        return _sibling('pool').Pool(processes, initializer, initargs, maxtasksperchild,
                                     context=self.get_context())

    def RawValue(self, typecode_or_type, *args):
        return _sibling('sharedctypes').RawValue(typecode_or_type, *args)

    def RawArray(self, typecode_or_type, size_or_initializer):
        return _sibling('sharedctypes').RawArray(typecode_or_type, size_or_initializer)

    def Value(self, typecode_or_type, *args, lock=True):
        return _sibling('sharedctypes').Value(typecode_or_type, *args, lock=lock,
                                              ctx=self.get_context())

    def Array(self, typecode_or_type, size_or_initializer, *, lock=True):
        return _sibling('sharedctypes').Array(typecode_or_type, size_or_initializer, lock=lock,
                                              ctx=self.get_context())


#
# The default context: a choice made at most once, unless forced
#

class Process(process.BaseProcess):
    """A process started with the default context's start method."""
    _start_method = None

    @staticmethod
    def _Popen(process_obj):
        return _default_context.get_context().Process._Popen(process_obj)

    @staticmethod
    def _after_fork():
        return _default_context.get_context().Process._after_fork()


class DefaultContext(BaseContext):
    """Forwards to the concrete context chosen by set_start_method, or to
    `context`, the fallback, which becomes the choice the first time the
    context in force is needed."""
    Process = Process

    def __init__(self, context):
        self._fallback = context
        self._chosen = None     # no choice made yet

    def _in_force(self):
        if self._chosen is None:
            self._chosen = self._fallback
        return self._chosen

    def get_context(self, method=None):
        return self._in_force() if method is None else super().get_context(method)

    def set_start_method(self, method, force=False):
        """Choose the start method; once only, unless `force` (None with
        `force` undoes the choice)."""
        if not force and self._chosen is not None:
            raise RuntimeError('context has already been set')
        if method is not None:
            self._chosen = super().get_context(method)
        else:
            self._chosen = None if force else self._fallback

    def get_start_method(self, allow_none=False):
        if allow_none and self._chosen is None:
            return None
        return self._in_force()._name

    def get_all_start_methods(self):
        """The start methods available here, the default first."""
        return ['fork', 'spawn', 'forkserver']


#
# One concrete context per start method
#

class ForkProcess(process.BaseProcess):
    _start_method = 'fork'

    @staticmethod
    def _Popen(process_obj):
        return _sibling('popen_fork').Popen(process_obj)


class SpawnProcess(process.BaseProcess):
    _start_method = 'spawn'

    @staticmethod
    def _Popen(process_obj):
        return _sibling('popen_spawn_posix').Popen(process_obj)

    @staticmethod
    def _after_fork():
        """A spawned child is a fresh interpreter: nothing to reset."""


class ForkServerProcess(process.BaseProcess):
    _start_method = 'forkserver'

    @staticmethod
    def _Popen(process_obj):
        return _sibling('popen_forkserver').Popen(process_obj)


class ForkContext(BaseContext):
    _name = 'fork'
    Process = ForkProcess


class SpawnContext(BaseContext):
    _name = 'spawn'
    Process = SpawnProcess


class ForkServerContext(BaseContext):
    _name = 'forkserver'
    Process = ForkServerProcess

    def _check_available(self):
        if not reduction.HAVE_SEND_HANDLE:
            raise ValueError('forkserver start method not available')


_concrete_contexts = {
    ctx._name: ctx for ctx in (ForkContext(), SpawnContext(), ForkServerContext())
}
_default_context = DefaultContext(_concrete_contexts['fork'])


def _force_start_method(method):
    """Make `method` the default context's choice (a child adopts its parent's)."""
    _default_context._chosen = _concrete_contexts[method]


#
# Objects that may only travel to a child as it starts check that a Popen is
# pickling its process object in this thread.
#

class _Spawning(threading.local):
    popen = None


_spawning = _Spawning()


def get_spawning_popen():
    return _spawning.popen


def set_spawning_popen(popen):
    _spawning.popen = popen


def assert_spawning(obj):
    if _spawning.popen is None:
        raise RuntimeError(f'{type(obj).__name__} objects should only be shared '
                           f'between processes through inheritance')
