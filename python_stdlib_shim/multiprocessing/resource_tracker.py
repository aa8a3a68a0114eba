"""The resource tracker: the stdlib's API over the program tree's registry.

Where registrations live. The root of every mphost program keeps a
registry in shared memory (``ipc/resource_registry.hpp``) that every
process of its tree maps. ``register(name, rtype)`` records the pair there
and ``unregister`` forgets it: a dictionary update in shared memory, which
survives whichever process made it. The registry removes what is left when
the tree ends, whatever way it ends: the root removes it at its exit, and
the registry of a root that was killed is swept by the next mphost program
to start (types the core knows: ``shared_memory``, ``semaphore``, and
absolute paths of type ``file`` and ``folder``).

The tracker process. Like the stdlib's, it is started by the first process
that needs it, ignores SIGINT and SIGTERM, and holds the only read end of a
pipe of which every process of the tree holds a write end: fork children
inherit it, spawn and forkserver children get a duplicate while they start
(a ``_TrackerHandle`` in the process object's ``_config``), and callers that
start processes their own way (loky) set ``_fd`` and ``_pid`` themselves.
It is also handed a member token of the registry, so that a root killed
while the tracker starts cannot have its registry swept before the tracker
has attached to it. It keeps no table of its own: a registration carries the identity of the
pipe it was made through (its inode, the "watcher"), so that when the
tracker reads EOF -- every holder of the pipe has ended, SIGKILL included --
it finds its registrations in the registry, warns about them as the stdlib
does ("There appear to be N leaked <rtype> objects to clean up at
shutdown") and removes each with ``_CLEANUP_FUNCS``. If the root was killed
and the tracker is the last process of the tree, it then removes the
registry itself with everything it still records.

Moving between trackers. A tracker found dead is replaced, with the
stdlib's "process died unexpectedly, relaunching" warning, and the new one
takes the dead one's registrations over. A child that started a tracker of
its own before it learnt of its tree's (while importing its parent's main
module, or in the forkserver) hands its registrations to the tree's.

What the registry cannot hold (no registry in this process, a full table)
and types this process does not know travel as the stdlib's pipe messages,
``REGISTER:name:rtype``; the tracker keeps those in its own memory and
reports an unknown type on its stderr, as the stdlib's does.
"""

import contextlib
import os
import signal
import sys
import threading
import time
import warnings

import _mphost

from . import spawn
from . import util

__all__ = ['ensure_running', 'register', 'unregister']

_HAVE_SIGMASK = hasattr(signal, 'pthread_sigmask')
_IGNORED_SIGNALS = (signal.SIGINT, signal.SIGTERM)

# POSIX makes pipe writes of up to PIPE_BUF (at least 512) bytes atomic.
_MAX_MESSAGE = 512


def _unlink_shared_memory(name):
    import _posixshmem
    _posixshmem.shm_unlink(name)


def _unlink_semaphore(name):
    import _multiprocessing
    _multiprocessing.sem_unlink(name)


# The stdlib's resource types and what removes one of each.
_CLEANUP_FUNCS = {
    'noop': lambda: None,
    'semaphore': _unlink_semaphore,
    'shared_memory': _unlink_shared_memory,
}

# mphost's own (private directories, socket files), apart so that whoever
# walks _CLEANUP_FUNCS sees exactly the stdlib's.
def _remove_folder(name):
    # shutil (which loads bz2 and lzma) only when a folder is left to remove:
    # every child imports this module.
    import shutil
    shutil.rmtree(name)


_EXTRA_CLEANUP_FUNCS = {
    'folder': _remove_folder,
    'file': os.unlink,
}


def _remover(rtype):
    return _CLEANUP_FUNCS.get(rtype) or _EXTRA_CLEANUP_FUNCS.get(rtype)


def _message(cmd, name, rtype):
    data = f'{cmd}:{name}:{rtype}\n'.encode('ascii')
    if len(data) > _MAX_MESSAGE:
        raise ValueError('msg too long')
    return data


def _pipe_id(fd):
    """The watcher a registration made through pipe end `fd` belongs to."""
    return os.fstat(fd).st_ino


#
# Every process: the link to the tree's tracker
#

class ResourceTracker(object):

    # The write end of the tracker's pipe and, if this process started the
    # tracker, its pid (loky sets both in the processes it starts).
    _fd = _pid = None
    # (descriptor, watcher) last seen: the pipe's inode, read once.
    _known = (None, None)

    def __init__(self):
        self._reinit_after_fork()

    def _reinit_after_fork(self):
        self._lock = threading.RLock()
        # (write end, watcher) while this thread starts a tracker: a
        # registration made meanwhile (a finalizer run by the garbage
        # collector) goes to the pipe being set up.
        self._starting = None

    def getfd(self):
        return self._link()[0]

    def ensure_running(self):
        """Start the tracker unless this process reaches a live one."""
        self._link()

    def _stop(self):
        """Let go of the tracker (used by tests)."""
        with self._lock:
            if self._fd is not None:
                self._drop_link()

    def _check_alive(self):
        """A probe down the pipe: False once the tracker has gone."""
        try:
            os.write(self._fd, _message('PROBE', 0, 'noop'))
        except OSError:
            return False
        return True

    def register(self, name, rtype):
        """Have `name` removed when the tree ends, unless unregistered first."""
        message = _message('REGISTER', name, rtype)
        with self._lock:
            fd, watcher = self._link()
            if _remover(rtype) is None or not _mphost.registry_add(rtype, name, watcher):
                os.write(fd, message)

    def unregister(self, name, rtype):
        """`name` was removed, or is no longer the tree's to remove."""
        message = _message('UNREGISTER', name, rtype)
        with self._lock:
            fd, _watcher = self._link()
            if not _mphost.registry_drop(rtype, name):
                # It may be one the tracker keeps itself (see register).
                os.write(fd, message)

    # -- the link --

    def _link(self):
        """(write end, watcher) of a live tracker, started if need be."""
        with self._lock:
            if self._starting is not None:
                return self._starting
            if self._fd is not None and self._check_alive():
                if self._known[0] != self._fd:
                    # (loky sets _fd itself.)
                    self._known = (self._fd, _pipe_id(self._fd))
                return self._known
            orphaned = None
            if self._fd is not None:
                orphaned = _pipe_id(self._fd)
                self._drop_link()
                warnings.warn('resource_tracker: process died unexpectedly, '
                              'relaunching.  Some resources might leak.')
            link = self._start_tracker()
            if orphaned is not None:
                _mphost.registry_move(orphaned, link[1])
            return link

    def _drop_link(self):
        fd, pid = self._fd, self._pid
        self._fd = self._pid = None
        self._known = (None, None)
        os.close(fd)
        if pid is not None:
            _reap(pid)

    def _start_tracker(self):
        tracker_end, our_end = os.pipe()
        self._starting = (our_end, _pipe_id(our_end))
        try:
            registry = _registry_for_tracker()
            passed = [tracker_end] if registry is None else [tracker_end, registry[1]]
            source = 'from multiprocessing.resource_tracker import main;main(%d, %r)' % (
                tracker_end, registry)
            argv = [spawn.get_executable(), *util._args_from_interpreter_flags(), '-c', source]
            # Held back until the tracker ignores them: a Ctrl-C now must
            # not kill it before it can.
            with _signals_blocked(_IGNORED_SIGNALS):
                pid = util.spawnv_passfds(argv[0], argv, passed)
        except BaseException:
            os.close(our_end)
            raise
        finally:
            os.close(tracker_end)
            link, self._starting = self._starting, None
        self._fd, self._pid = our_end, pid
        self._known = link
        # Among the last of this process's exit work (after children are
        # joined): let the tracker report and remove what is left before
        # the root's registry removes the rest silently.
        util.Finalize(self, ResourceTracker._release_at_exit, args=(self, pid), exitpriority=-2000)
        return link

    def _release_at_exit(self, pid, patience=2.0):
        with self._lock:
            if self._pid != pid:
                return
            # The forkserver's zygote holds the pipe too: it ends first.
            forkserver = sys.modules.get(__package__ + '.forkserver')
            if forkserver is not None:
                forkserver._forkserver._stop()
            os.close(self._fd)
            self._fd = self._pid = None
        # It ends once every holder has closed the pipe; a process that
        # outlives this one may hold it still, so the wait is bounded.
        _reap_within(pid, patience)

    def _adopt(self, fd):
        """From now on use `fd`, the tree's tracker handed down by the parent.

        A tracker this process reached before (one it started while
        importing its parent's main module, or its forkserver's) hands its
        registrations over and is let go.
        """
        with self._lock:
            previous, pid = self._fd, self._pid
            if previous is not None and _same_pipe(previous, fd):
                if fd != previous:
                    os.close(fd)
                return
            self._fd, self._pid = fd, None
            self._known = (None, None)
            if previous is None:
                return
            _mphost.registry_move(_pipe_id(previous), _pipe_id(fd))
            os.close(previous)
            if pid is not None:
                # Ours: it ends now that its last holder let go.
                threading.Thread(target=_reap, args=(pid,), daemon=True).start()


_resource_tracker = ResourceTracker()
ensure_running = _resource_tracker.ensure_running
register = _resource_tracker.register
unregister = _resource_tracker.unregister
getfd = _resource_tracker.getfd

if hasattr(os, 'register_at_fork'):
    os.register_at_fork(after_in_child=_resource_tracker._reinit_after_fork)


_member_tokens = {}


def _registry_for_tracker():
    """(name, member token) of this process's registry for a tracker being
    started, or None. The token makes the tracker a member of the registry
    from the instant it exists: a root killed while its tracker starts does
    not leave the registry to be swept under the tracker's feet. One token
    per registry and process, never closed here (see the registry's
    contract)."""
    name = _mphost.registry_name()
    if name is None:
        return None
    token = _member_tokens.get(name)
    if token is None:
        token = _member_tokens[name] = _mphost.registry_member_token()
    return None if token < 0 else (name, token)


def _same_pipe(fd1, fd2):
    try:
        return _pipe_id(fd1) == _pipe_id(fd2)
    except OSError:
        return False


def _reap(pid):
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def _reaped_now(pid):
    try:
        return os.waitpid(pid, os.WNOHANG)[0] != 0
    except ChildProcessError:
        return True


def _reap_within(pid, patience):
    """Reap child `pid` if it ends within `patience` seconds.

    Woken by the child's exit itself (a pidfd turns readable when it ends),
    not by polling; where pidfds are missing, a short sleep between looks."""
    if _reaped_now(pid):
        return
    try:
        exit_notice = os.pidfd_open(pid)
    except (AttributeError, OSError):
        exit_notice = None
    if exit_notice is None:
        give_up = time.monotonic() + patience
        while not _reaped_now(pid) and time.monotonic() < give_up:
            time.sleep(0.002)
        return
    try:
        import select
        watch = select.poll()
        watch.register(exit_notice, select.POLLIN)
        give_up = time.monotonic() + patience
        # (It may have ended, and been reaped elsewhere, before the pidfd.)
        while not _reaped_now(pid):
            left = give_up - time.monotonic()
            if left <= 0:
                break
            with contextlib.suppress(InterruptedError):
                watch.poll(max(1, int(left * 1000)))
    finally:
        os.close(exit_notice)


@contextlib.contextmanager
def _signals_blocked(signals):
    if not _HAVE_SIGMASK:
        yield
        return
    saved = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, saved)


#
# Handing the tracker to spawn and forkserver children
#

_CONFIG_KEY = '_resource_tracker'


class _TrackerHandle(object):
    """Kept in a process object's ``_config``: pickled while a child is
    started, it carries a duplicate of the tracker's pipe; otherwise
    nothing."""

    def __reduce__(self):
        from .context import get_spawning_popen
        if get_spawning_popen() is None:
            return _TrackerHandle, ()
        from . import reduction
        return _adopt_descriptor, (reduction.DupFd(_resource_tracker.getfd()),)


def _adopt_descriptor(dupfd):
    _resource_tracker._adopt(dupfd.detach())
    return _TrackerHandle()


def _install_handle():
    # A process object copies its parent's _config when created: the handle
    # goes into this process's, and into those of process objects created
    # before this module was imported that are not started yet.
    from . import process
    handle = _TrackerHandle()
    me = process.current_process()
    if me is not None:
        me._config.setdefault(_CONFIG_KEY, handle)
    for proc in list(process._dangling):
        config = getattr(proc, '_config', None)
        if config is not None and getattr(proc, '_popen', True) is None:
            config.setdefault(_CONFIG_KEY, handle)


_install_handle()


#
# The tracker process
#

def main(fd, registry=None):
    """Run the tracker over read end `fd` until every holder has let go.

    `registry`: (name, member token) of the tree's registry, from the
    process that started the tracker."""
    for signum in _IGNORED_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    if _HAVE_SIGMASK:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _IGNORED_SIGNALS)
    for stream in (sys.stdin, sys.stdout):
        with contextlib.suppress(Exception):
            stream.close()
    token = None
    if registry is not None:
        name, token = registry
        _mphost.registry_adopt(name)
    _mphost.state_note_self('resource_tracker', name='ResourceTracker', ppid=os.getppid())
    watcher = _pipe_id(fd)
    kept = {}  # rtype -> names the registry does not hold for us
    try:
        with open(fd, 'rb') as pipe:
            for line in pipe:
                try:
                    _take(line, watcher, kept)
                except Exception:
                    with contextlib.suppress(Exception):
                        sys.excepthook(*sys.exc_info())
    finally:
        _clean_up(watcher, kept)
        if token is not None:
            os.close(token)
        # The root was killed and nobody else is left: the tree ends here.
        _mphost.registry_finish_abandoned()


def _take(line, watcher, kept):
    """One message of the stdlib's protocol, sent by whoever holds the pipe."""
    cmd, _, rest = line.strip().decode('ascii').partition(':')
    name, _, rtype = rest.rpartition(':')
    if cmd == 'PROBE':
        return
    if _remover(rtype) is None:
        raise ValueError('Cannot register %s for automatic cleanup: '
                         'unknown resource type %s' % (name, rtype))
    if cmd == 'REGISTER':
        if not _mphost.registry_add(rtype, name, watcher):
            kept.setdefault(rtype, set()).add(name)
    elif cmd == 'UNREGISTER':
        _mphost.registry_drop(rtype, name)
        kept.get(rtype, set()).discard(name)
    else:
        raise RuntimeError('unrecognized command %r' % (cmd,))


def _clean_up(watcher, kept):
    """Report and remove the leftovers of this tracker's registrations."""
    leftovers = {rtype: set(names) for rtype, names in kept.items()}
    for rtype, name in _mphost.registry_entries(watcher):
        leftovers.setdefault(rtype, set()).add(name)
    for rtype in sorted(leftovers):
        names = leftovers[rtype]
        if not names:
            continue
        with contextlib.suppress(Exception):
            warnings.warn('resource_tracker: There appear to be %d leaked %s objects '
                          'to clean up at shutdown' % (len(names), rtype))
        remove = _remover(rtype)
        for name in sorted(names):
            try:
                if remove is None:
                    raise ValueError('unknown resource type %s' % rtype)
                remove(name)
            except Exception as failure:
                with contextlib.suppress(Exception):
                    warnings.warn('resource_tracker: %r: %s' % (name, failure))
            finally:
                _mphost.registry_drop(rtype, name)
