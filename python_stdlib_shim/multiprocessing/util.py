"""Logging, finalizers, after-fork hooks and small process utilities.

The names are the stdlib's (``Finalize``, ``register_after_fork``,
``get_temp_dir``, ``_exit_function``, ``_finalizer_registry`` ...): the rest
of the package, libraries such as loky and CPython's own tests reach them.

Finalizers
  ``_finalizer_registry`` maps a key ``(exitpriority, serial)`` to its
  Finalize. A finalizer leaves the registry the moment it runs or is
  cancelled, so whichever comes first of the weakref callback, an explicit
  call and the exit sweep runs it, once. The exit sweep takes the keys with
  a priority, highest priority first and, within one priority, the latest
  registration first.

After-fork hooks
  ``_afterfork_registry`` is a WeakValueDictionary ``(serial, func) -> obj``:
  a hook lives as long as its object. A child started by fork runs the
  hooks in registration order (process._after_fork).
"""

import atexit
import contextlib
import itertools
import os
import sys
import threading
import weakref
from subprocess import _args_from_interpreter_flags  # noqa: F401  (part of the API)

from . import process

__all__ = [
    'sub_debug', 'debug', 'info', 'sub_warning', 'get_logger',
    'log_to_stderr', 'get_temp_dir', 'register_after_fork',
    'is_exiting', 'Finalize', 'ForkAwareThreadLock', 'ForkAwareLocal',
    'close_all_fds_except', 'SUBDEBUG', 'SUBWARNING',
]

#
# Logging: nothing is logged until get_logger() or log_to_stderr() made the
# 'multiprocessing' logger.
#

NOTSET = 0
SUBDEBUG = 5
DEBUG = 10
INFO = 20
SUBWARNING = 25

LOGGER_NAME = 'multiprocessing'
DEFAULT_LOGGING_FORMAT = '[%(levelname)s/%(processName)s] %(message)s'

_logger = None           # read by spawn (the child's logging setup)
_log_to_stderr = False   # likewise


def _log(level, msg, args):
    if _logger:
        _logger.log(level, msg, *args, stacklevel=3)


def sub_debug(msg, *args):
    _log(SUBDEBUG, msg, args)


def debug(msg, *args):
    _log(DEBUG, msg, args)


def info(msg, *args):
    _log(INFO, msg, args)


def sub_warning(msg, *args):
    _log(SUBWARNING, msg, args)


def _exit_before_logging():
    # atexit calls the latest registration first; logging registered its
    # shutdown when it was imported, so registering anew puts our exit
    # function, which still logs, ahead of it.
    atexit.unregister(_exit_function)
    atexit.register(_exit_function)


def get_logger():
    """Return the 'multiprocessing' logger, making it on first use (it does
    not propagate to the root logger)."""
    global _logger
    import logging

    with logging._lock:
        if _logger is None:
            made = logging.getLogger(LOGGER_NAME)
            made.propagate = 0     # as stock: an int, which programs may print
            _logger = made
            _exit_before_logging()
    return _logger


def log_to_stderr(level=None):
    """Send the multiprocessing logger's records to stderr, in the format
    DEFAULT_LOGGING_FORMAT, optionally setting its level; return it."""
    global _log_to_stderr
    import logging

    to_stderr = logging.StreamHandler()
    to_stderr.setFormatter(logging.Formatter(DEFAULT_LOGGING_FORMAT))
    target = get_logger()
    target.addHandler(to_stderr)
    if level:
        target.setLevel(level)
    _log_to_stderr = True
    return target


#
# Sockets. Linux has an abstract socket namespace and a Listener given an
# abstract address ('\0name') uses it, as in the stdlib; but mphost never
# picks one itself: its own addresses are socket files in a private 0700
# directory, which other users cannot reach (abstract sockets have no
# permissions).
#

def _platform_supports_abstract_sockets():
    return sys.platform == 'linux'


abstract_sockets_supported = _platform_supports_abstract_sockets()


def is_abstract_socket_namespace(address):
    """True for an AF_UNIX address in the abstract namespace (a leading NUL)."""
    if isinstance(address, (str, bytes)):
        nul = '\0' if isinstance(address, str) else b'\0'
        return address[:1] == nul
    if address:
        raise TypeError(f'address type of {address!r} unrecognized')
    return False


#
# A private temporary directory per process
#

def _remove_temp_dir(rmtree, tempdir):
    # rmtree comes as an argument: this may run late in shutdown, when the
    # shutil module is being torn down.
    rmtree(tempdir)
    import _mphost
    _mphost.registry_drop('folder', tempdir)
    me = process.current_process()
    if me is not None:
        # A child forked later must not inherit the removed path.
        me._config.pop('tempdir', None)


def get_temp_dir():
    """A 0700 directory private to this process, removed when it exits."""
    config = process.current_process()._config
    path = config.get('tempdir')
    if path is not None:
        return path
    import shutil
    import tempfile
    # 96 random bits in the name besides mkdtemp's own.
    path = config['tempdir'] = tempfile.mkdtemp(prefix=f'pymp-{os.urandom(12).hex()}-')
    # Listener and manager sockets live here: recorded in the tree's
    # registry so that a tree killed as a whole leaves no directory behind.
    import _mphost
    _mphost.registry_add('folder', path, 0)
    Finalize(None, _remove_temp_dir, args=(shutil.rmtree, path), exitpriority=-100)
    info('made the temporary directory %s', path)
    return path


#
# Hooks run in a child after fork
#

_afterfork_registry = weakref.WeakValueDictionary()
_afterfork_counter = itertools.count()


def register_after_fork(obj, func):
    """Call func(obj) in every child forked after this call, for as long as
    obj lives."""
    _afterfork_registry[next(_afterfork_counter), func] = obj


def _serial_of(entry):
    return entry[0][0]


def _run_after_forkers():
    for (_serial, hook), obj in sorted(_afterfork_registry.items(), key=_serial_of):
        try:
            hook(obj)
        except Exception as exc:
            info('after-fork hook %r failed: %s', hook, exc)


#
# Finalizers
#

_finalizer_registry = {}
_finalizer_counter = itertools.count()


class Finalize(object):
    """Call ``callback(*args, **kwargs)`` once: when ``obj`` is collected,
    when the Finalize itself is called, or at process exit if it has an
    ``exitpriority`` (an int; exit runs higher priorities first, later
    registrations first within one). ``obj`` None needs an exitpriority.
    Only the process that made it runs the callback."""

    def __init__(self, obj, callback, args=(), kwargs=None, exitpriority=None):
        if not (exitpriority is None or isinstance(exitpriority, int)):
            raise TypeError(f'Exitpriority ({exitpriority!r}) must be None or int, '
                            f'not {type(exitpriority)}')
        if obj is None and exitpriority is None:
            raise ValueError('Without object, exitpriority cannot be None')
        if obj is not None:
            # The weakref calls the finalizer with itself as argument.
            self._weakref = weakref.ref(obj, self)
        self._callback, self._args = callback, args
        self._kwargs = {} if kwargs is None else kwargs
        self._pid = os.getpid()
        self._key = key = (exitpriority, next(_finalizer_counter))
        _finalizer_registry[key] = self

    def _disarm(self, registry=_finalizer_registry):
        """Leave the registry; True for the one caller that found it there."""
        if registry.pop(self._key, None) is None:
            return False
        # Let go of the callback and everything it references.
        self._callback = self._args = self._kwargs = self._weakref = self._key = None
        return True

    def __call__(self, wr=None, getpid=os.getpid):
        """Run the callback unless it ran or was cancelled; return what it
        returns (None in a process other than the creator)."""
        call = (self._callback, self._args, self._kwargs, self._pid)
        if not self._disarm():
            return None
        callback, args, kwargs, owner = call
        if owner != getpid():
            # Inherited through fork: the resource is the parent's.
            return None
        return callback(*args, **kwargs)

    def cancel(self):
        """Forget the finalizer without running it."""
        self._disarm()

    def still_active(self):
        """True until the finalizer ran or was cancelled."""
        return self._key in _finalizer_registry

    def __repr__(self):
        ref = getattr(self, '_weakref', None)
        if ref is None or ref() is None:
            return f'<{type(self).__name__} object, dead>'
        callback = self._callback
        parts = [f'{type(self).__name__} object',
                 f'callback={getattr(callback, "__name__", callback)}']
        if self._args:
            parts.append(f'args={self._args}')
        if self._kwargs:
            parts.append(f'kwargs={self._kwargs}')
        priority = self._key[0]
        if priority is not None:
            parts.append(f'exitpriority={priority}')
        return '<' + ', '.join(parts) + '>'


def _exit_order(keys, minpriority):
    """The keys of the finalizers the exit sweep runs, in the order it runs
    them: a priority of at least minpriority (any, if None), highest
    first, later registrations first within a priority."""
    chosen = [key for key in keys
              if key[0] is not None and (minpriority is None or key[0] >= minpriority)]
    chosen.sort(reverse=True)
    return chosen


def _run_finalizers(minpriority=None):
    """Run the finalizers with a priority of at least minpriority; with
    None, every one that has a priority, then empty the registry."""
    registry = _finalizer_registry
    if registry is None:
        return                 # module globals already torn down
    sweep_all = minpriority is None
    # A snapshot: the collector may run other finalizers meanwhile (they
    # leave the registry themselves, and are skipped below).
    for key in _exit_order(registry.copy(), minpriority):
        finalizer = registry.get(key)
        if finalizer is None:
            continue
        callback = finalizer._callback
        try:
            finalizer()
        except Exception:
            import traceback
            sys.stderr.write(f'Error in the finalizer calling {callback!r}:\n'
                             f'{traceback.format_exc()}')
    if sweep_all:
        registry.clear()


#
# Exit
#

_exiting = False


def is_exiting():
    """True once the process has started shutting down (or has torn down
    this module's globals)."""
    return _exiting is not False


def _end_children(children, me, end_orphans=process._end_orphans):
    """Terminate the daemonic children, then wait for every child; nothing
    when this process's own object is gone (late in shutdown). Children
    whose process objects were dropped are left to the native table."""
    if me() is None:
        return
    for child in children():
        if child.daemon:
            info('terminating daemon %s', child.name)
            child._popen.terminate()
    for child in children():
        info('waiting for %s', child.name)
        child.join()
    end_orphans()


def _exit_function(info=info, run_finalizers=_run_finalizers,
                   active_children=process.active_children,
                   current_process=process.current_process):
    """The atexit hook (also run by a child at the end of its bootstrap):
    finalizers of priority >= 0, then the children, then the remaining
    finalizers. The defaults keep what it needs through shutdown."""
    global _exiting
    if _exiting:
        return
    _exiting = True
    info('process shutting down: finalizers, then children')
    run_finalizers(0)
    _end_children(active_children, current_process)
    run_finalizers()


atexit.register(_exit_function)


#
# Locks and thread-locals that reset in a forked child
#

class ForkAwareThreadLock(object):
    """A threading.Lock that a forked child finds released, whatever state
    the parent's thread left it in."""

    def __init__(self):
        lock = threading.Lock()
        self._lock = lock
        # Bound once: the child reinitialises this very lock object.
        self.acquire, self.release = lock.acquire, lock.release
        register_after_fork(self, ForkAwareThreadLock._at_fork_reinit)

    def _at_fork_reinit(self):
        self._lock._at_fork_reinit()

    def __enter__(self):
        return self._lock.__enter__()

    def __exit__(self, *args):
        return self._lock.__exit__(*args)


class ForkAwareLocal(threading.local):
    """A threading.local that a forked child finds empty."""

    def __init__(self):
        register_after_fork(self, lambda obj: obj.__dict__.clear())

    def __reduce__(self):
        return type(self), ()


#
# File descriptors and standard streams
#

try:
    MAXFD = os.sysconf('SC_OPEN_MAX')
except Exception:
    MAXFD = 256


def close_all_fds_except(fds):
    """Close every descriptor below MAXFD except those in fds."""
    keep = sorted({-1, MAXFD, *fds})
    if keep[-1] != MAXFD:
        raise AssertionError('fd too large')
    for low, high in zip(keep, keep[1:]):
        # Only non-empty gaps: CPython 3.11's os.closerange(n, n) becomes
        # close_range(n, -1), which closes every descriptor from n on.
        if high > low + 1:
            os.closerange(low + 1, high)


def _close_stdin():
    """In a new child: close sys.stdin and read from /dev/null instead."""
    old = sys.stdin
    if old is None:
        return
    with contextlib.suppress(OSError, ValueError):
        old.close()
    try:
        devnull = os.open(os.devnull, os.O_RDONLY)
    except OSError:
        return
    try:
        # The descriptor stays open with the process, as stdin's would.
        sys.stdin = open(devnull, encoding='utf-8', closefd=False)
    except (OSError, ValueError):
        os.close(devnull)


def _flush_std_streams():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, ValueError):
            pass


def spawnv_passfds(path, args, passfds):
    """Start `path` with `args` (argv, including argv[0]); only `passfds`
    and the standard streams are inherited. Returns the pid."""
    import _mphost
    return _mphost.launch(os.fsdecode(path), [os.fsdecode(a) for a in args[1:]],
                          sorted(int(fd) for fd in passfds))


def close_fds(*fds):
    for fd in fds:
        os.close(fd)


def _cleanup_tests():
    """Clean-up hook of CPython's test suite, run between test modules:
    stop the helper processes one test started (so they do not leak into
    the next), forget finished children, collect and reap."""
    from test import support
    from . import forkserver, resource_tracker

    for helper in (forkserver._forkserver, resource_tracker._resource_tracker):
        helper._stop()
    for step in (process._cleanup, support.gc_collect, support.reap_children):
        step()
