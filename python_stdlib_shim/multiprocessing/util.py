"""Logging, finalizers, after-fork hooks and small process utilities.

This module keeps the stdlib's names (``Finalize``, ``register_after_fork``,
``get_temp_dir``, ``_exit_function`` ...) because libraries and CPython's own
tests reach for them.
"""

import atexit
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
# Logging
#

NOTSET = 0
SUBDEBUG = 5
DEBUG = 10
INFO = 20
SUBWARNING = 25

LOGGER_NAME = 'multiprocessing'
DEFAULT_LOGGING_FORMAT = '[%(levelname)s/%(processName)s] %(message)s'

_logger = None
_log_to_stderr = False


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


def get_logger():
    """Return the 'multiprocessing' logger, creating it on first use."""
    global _logger
    import logging

    with logging._lock:
        if not _logger:
            _logger = logging.getLogger(LOGGER_NAME)
            _logger.propagate = 0
            # Run the exit function before logging's own, so that messages
            # logged while the process shuts down still reach their handlers.
            if hasattr(atexit, 'unregister'):
                atexit.unregister(_exit_function)
                atexit.register(_exit_function)
            else:
                atexit._exithandlers.remove((_exit_function, (), {}))
                atexit._exithandlers.append((_exit_function, (), {}))
    return _logger


def log_to_stderr(level=None):
    """Attach a stderr handler to the multiprocessing logger and return it."""
    global _log_to_stderr
    import logging

    logger = get_logger()
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(DEFAULT_LOGGING_FORMAT))
    logger.addHandler(handler)
    if level:
        logger.setLevel(level)
    _log_to_stderr = True
    return _logger


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
    if not address:
        return False
    if isinstance(address, bytes):
        return address[0] == 0
    if isinstance(address, str):
        return address[0] == '\0'
    raise TypeError(f'address type of {address!r} unrecognized')


#
# A private temporary directory per process
#

def _remove_temp_dir(rmtree, tempdir):
    rmtree(tempdir)
    current = process.current_process()
    # A forked child inherits the configuration: do not leave it pointing at
    # a removed directory.
    if current is not None:
        current._config['tempdir'] = None


def get_temp_dir():
    """A 0700 directory private to this process, removed when it exits."""
    tempdir = process.current_process()._config.get('tempdir')
    if tempdir is None:
        import shutil
        import tempfile
        tempdir = tempfile.mkdtemp(prefix='pymp-')
        info('created temp directory %s', tempdir)
        Finalize(None, _remove_temp_dir, args=(shutil.rmtree, tempdir), exitpriority=-100)
        process.current_process()._config['tempdir'] = tempdir
    return tempdir


#
# Callbacks run in a child after fork
#

_afterfork_registry = weakref.WeakValueDictionary()
_afterfork_counter = itertools.count()


def _run_after_forkers():
    entries = sorted(_afterfork_registry.items())
    for (_index, _ident, func), obj in entries:
        try:
            func(obj)
        except Exception as exc:
            info('after forker raised exception %s', exc)


def register_after_fork(obj, func):
    """Call func(obj) in every child process started after this call."""
    _afterfork_registry[(next(_afterfork_counter), id(obj), func)] = obj


#
# Finalizers
#

_finalizer_registry = {}
_finalizer_counter = itertools.count()


class Finalize(object):
    """Run a callback when ``obj`` is garbage collected or at process exit.

    Finalizers with an ``exitpriority`` run at exit in decreasing priority
    order (later registrations first within a priority); those without one
    run only when ``obj`` goes away.
    """

    def __init__(self, obj, callback, args=(), kwargs=None, exitpriority=None):
        if exitpriority is not None and not isinstance(exitpriority, int):
            raise TypeError(
                f'Exitpriority ({exitpriority!r}) must be None or int, not {type(exitpriority)}')
        if obj is not None:
            self._weakref = weakref.ref(obj, self)
        elif exitpriority is None:
            raise ValueError('Without object, exitpriority cannot be None')
        self._callback = callback
        self._args = args
        self._kwargs = kwargs or {}
        self._key = (exitpriority, next(_finalizer_counter))
        self._pid = os.getpid()
        _finalizer_registry[self._key] = self

    def __call__(self, wr=None, _finalizer_registry=_finalizer_registry,
                 sub_debug=sub_debug, getpid=os.getpid):
        """Run the callback unless it already ran; return its result."""
        try:
            del _finalizer_registry[self._key]
        except KeyError:
            sub_debug('finalizer no longer registered')
            return None
        if self._pid != getpid():
            sub_debug('finalizer ignored because different process')
            res = None
        else:
            sub_debug('finalizer calling %s with args %s and kwargs %s',
                      self._callback, self._args, self._kwargs)
            res = self._callback(*self._args, **self._kwargs)
        self._weakref = self._callback = self._args = self._kwargs = self._key = None
        return res

    def cancel(self):
        """Forget the finalizer without running it."""
        try:
            del _finalizer_registry[self._key]
        except KeyError:
            return
        self._weakref = self._callback = self._args = self._kwargs = self._key = None

    def still_active(self):
        return self._key in _finalizer_registry

    def __repr__(self):
        try:
            obj = self._weakref()
        except (AttributeError, TypeError):
            obj = None
        if obj is None:
            return '<%s object, dead>' % self.__class__.__name__
        text = '<%s object, callback=%s' % (
            self.__class__.__name__, getattr(self._callback, '__name__', self._callback))
        if self._args:
            text += ', args=' + str(self._args)
        if self._kwargs:
            text += ', kwargs=' + str(self._kwargs)
        if self._key[0] is not None:
            text += ', exitpriority=' + str(self._key[0])
        return text + '>'


def _run_finalizers(minpriority=None):
    """Run the registered finalizers whose priority is at least minpriority.

    With minpriority None, run every finalizer that has a priority.
    """
    if _finalizer_registry is None:
        return
    if minpriority is None:
        def wanted(priority):
            return priority is not None
    else:
        def wanted(priority):
            return priority is not None and priority >= minpriority
    keys = sorted((key for key in list(_finalizer_registry) if wanted(key[0])), reverse=True)
    for key in keys:
        finalizer = _finalizer_registry.get(key)
        if finalizer is None:
            continue
        sub_debug('calling %s', finalizer)
        try:
            finalizer()
        except Exception:
            import traceback
            traceback.print_exc()
    if minpriority is None:
        _finalizer_registry.clear()


#
# Exit
#

_exiting = False


def is_exiting():
    """True once the process has started shutting down."""
    return _exiting or _exiting is None


def _exit_function(info=info, debug=debug, _run_finalizers=_run_finalizers,
                   active_children=process.active_children,
                   current_process=process.current_process):
    # Defaults bind the globals: this runs while the interpreter shuts down.
    global _exiting
    if _exiting:
        return
    _exiting = True
    info('process shutting down')
    debug('running all "atexit" finalizers with priority >= 0')
    _run_finalizers(0)
    if current_process() is not None:
        for child in active_children():
            if child.daemon:
                info('calling terminate() for daemon %s', child.name)
                child._popen.terminate()
        for child in active_children():
            info('calling join() for process %s', child.name)
            child.join()
    debug('running the remaining "atexit" finalizers')
    _run_finalizers()


atexit.register(_exit_function)


#
# Locks and thread-locals that reset in a forked child
#

class ForkAwareThreadLock(object):
    def __init__(self):
        self._lock = threading.Lock()
        self.acquire = self._lock.acquire
        self.release = self._lock.release
        register_after_fork(self, ForkAwareThreadLock._at_fork_reinit)

    def _at_fork_reinit(self):
        self._lock._at_fork_reinit()

    def __enter__(self):
        return self._lock.__enter__()

    def __exit__(self, *args):
        return self._lock.__exit__(*args)


class ForkAwareLocal(threading.local):
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
    """Close every descriptor from 0 to MAXFD except those in fds."""
    keep = sorted(set(list(fds) + [-1, MAXFD]))
    for low, high in zip(keep, keep[1:]):
        os.closerange(low + 1, high)


def _close_stdin():
    if sys.stdin is None:
        return
    try:
        sys.stdin.close()
    except (OSError, ValueError):
        pass
    try:
        fd = os.open(os.devnull, os.O_RDONLY)
        try:
            sys.stdin = open(fd, encoding='utf-8', closefd=False)
        except BaseException:
            os.close(fd)
            raise
    except (OSError, ValueError):
        pass


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
    """Clean-up hook used by CPython's test suite between tests."""
    from test import support

    # A forkserver started by one test must not leak into the next.
    from . import forkserver
    forkserver._forkserver._stop()

    from . import resource_tracker
    resource_tracker._resource_tracker._stop()

    process._cleanup()
    support.gc_collect()
    support.reap_children()
