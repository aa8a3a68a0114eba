"""The resource tracker: named resources of a program tree, removed when it ends.

One tracker process serves a whole program tree. It is an mphost process
started by the first process that needs it (a resource registered, or a
spawn/forkserver child started) and it holds the only read end of a pipe;
every process of the tree holds a write end. Processes announce resources
with lines ``REGISTER:name:rtype`` and ``UNREGISTER:name:rtype`` (each line
is at most 512 bytes, so writes from many processes never interleave).
When the last write end closes -- every process of the tree has ended,
whatever way it ended, SIGKILL included -- the tracker reads EOF, warns
about what is still registered, as the stdlib does, and removes it.

How the processes of a tree reach their tracker:

* fork children inherit the descriptor together with the module's state;
* spawn and forkserver children get a duplicate while they start: every
  process object carries a ``_TrackerHandle`` in its ``_config``, which,
  pickled for a child being started, becomes a ``DupFd`` of the descriptor
  and, unpickled in the child, installs it in the child's tracker. A child
  that registered something before that (while importing its parent's main
  module, or in the forkserver it was forked from) moves its registrations
  over to the tree's tracker then;
* callers that start processes their own way (loky) set
  ``_resource_tracker._fd`` and ``_pid`` themselves, as with the stdlib.

Leftovers of a tree killed as a whole. When the tracker dies with the rest
of the tree (SIGKILL of the process group, the OOM killer), nobody is left
to clean up. So the tracker also journals every live resource in an
owner-only file ``rt-<tracker pid>-<tracker start>-<root pid>-<root start>.log``
in a private 0700 directory: ``$MPHOST_RESOURCE_REGISTRY_DIR`` if set, else
``$XDG_RUNTIME_DIR/mphost``, else ``/tmp/mphost-<uid>``. The root is the
process that started the tracker; start times are field 22 of
``/proc/<pid>/stat``, so that a reused pid is never taken for the owner.
Every tracker, when it starts, looks at the journals there:

* tracker and root both gone: the tree was killed; its resources are removed
  (with a warning) and the journal deleted;
* tracker gone, root alive and the root is this tracker's own root: the
  root is replacing a tracker that died; the new one adopts the entries;
* otherwise the owners still run and the journal is left alone.

A journal written before the last reboot is deleted without touching
anything (its boot id differs). A clean end deletes the journal.
"""

import contextlib
import os
import signal
import stat
import sys
import threading
import time
import warnings

from . import spawn
from . import util

__all__ = ['ensure_running', 'register', 'unregister']

_HAVE_SIGMASK = hasattr(signal, 'pthread_sigmask')
_IGNORED_SIGNALS = (signal.SIGINT, signal.SIGTERM)

# The longest message a process may send: POSIX makes pipe writes of up to
# PIPE_BUF (at least 512) bytes atomic.
_MAX_MESSAGE = 512

REGISTRY_DIR_ENV = 'MPHOST_RESOURCE_REGISTRY_DIR'


def _unlink_shared_memory(name):
    import _posixshmem
    _posixshmem.shm_unlink(name)


def _unlink_semaphore(name):
    import _multiprocessing
    _multiprocessing.sem_unlink(name)


def _remove_folder(name):
    import shutil
    shutil.rmtree(name)


# The resource types of the stdlib, with the function that removes one.
_CLEANUP_FUNCS = {
    'noop': lambda: None,
    'semaphore': _unlink_semaphore,
    'shared_memory': _unlink_shared_memory,
}

# Types mphost adds for its own resources (private directories, socket
# files). Kept apart so that code iterating _CLEANUP_FUNCS sees exactly the
# stdlib's types.
_EXTRA_CLEANUP_FUNCS = {
    'folder': _remove_folder,
    'file': os.unlink,
}


# What each command of the wire protocol does: to a set of registrations
# (the tracker's names of one type, a client's (name, rtype) pairs) and the
# mark it leaves in the journal.
_COMMANDS = {
    'REGISTER': (set.add, '+'),
    'UNREGISTER': (set.discard, '-'),
}


def _encode(cmd, name, rtype):
    """One message of the wire protocol (the stdlib's): 'CMD:name:rtype\n'."""
    return f'{cmd}:{name}:{rtype}\n'.encode('ascii')


def _cleanup_func(rtype):
    func = _CLEANUP_FUNCS.get(rtype)
    if func is None:
        func = _EXTRA_CLEANUP_FUNCS.get(rtype)
    return func


#
# The client side, present in every process
#

class ResourceTracker(object):
    """This process's link to the tree's tracker: a pipe's write end."""

    def __init__(self):
        self._lock = threading.RLock()
        self._fd = None
        self._pid = None
        # Messages sent while this thread was starting the tracker (a
        # finalizer run by the garbage collector in the middle of it).
        self._launching = False
        self._pending = []
        # What this process registered and has not unregistered, should it
        # have to move to another tracker (see _adopt).
        self._registered = set()

    def _reinit_after_fork(self):
        self._lock = threading.RLock()
        self._launching = False
        self._pending = []

    def _disconnect(self):
        """Close this process's descriptor and reap the tracker if this
        process started it (which then ends once every holder closed it).
        Lock held."""
        fd, pid, self._fd, self._pid = self._fd, self._pid, None, None
        os.close(fd)
        if pid is not None:
            _reap(pid)

    def _stop(self):
        """Disconnect from the tracker (used by tests)."""
        with self._lock:
            if self._fd is not None:
                self._disconnect()

    def getfd(self):
        return self._connected()

    def ensure_running(self):
        """Start the tracker unless this process already reaches a live one."""
        self._connected()

    def _connected(self):
        """The descriptor of a live tracker, launched first if need be (and
        the messages queued during the launch then sent); None while this
        thread is launching one."""
        with self._lock:
            if self._launching:
                return None
            if self._fd is not None and self._check_alive():
                return self._fd
            if self._fd is not None:
                # The tracker died: forget it and start another one.
                self._disconnect()
                warnings.warn('resource_tracker: process died unexpectedly, '
                              'relaunching.  Some resources might leak.')
            self._launching = True
            try:
                self._launch()
            finally:
                self._launching = False
            pending, self._pending = self._pending, []
            for message in pending:
                self._write(message)
            return self._fd

    def _launch(self):
        read_end, write_end = os.pipe()
        try:
            code = 'from multiprocessing.resource_tracker import main;main(%d)' % read_end
            argv = [spawn.get_executable(), *util._args_from_interpreter_flags(), '-c', code]
            # The tracker ignores SIGINT and SIGTERM; hold them back until it
            # has said so, or a Ctrl-C right now would kill it before it can.
            with _tracker_signals_held():
                pid = util.spawnv_passfds(argv[0], argv, [read_end])
        except BaseException:
            os.close(write_end)
            raise
        finally:
            os.close(read_end)
        self._fd = write_end
        self._pid = pid
        # Last of this process's exit work (after children are joined and
        # channel ends closed): let the tracker finish before the program's
        # root removes what its tree left, so leftovers are reported and
        # removed by the tracker, as with the stdlib.
        util.Finalize(self, ResourceTracker._finish_at_exit, args=(self, pid),
                      exitpriority=-2000)

    def _finish_at_exit(self, pid, limit=2.0):
        # The tracker ends once every holder of its pipe has closed it: wait
        # a bounded time, for a process that outlives us may hold it still.
        with self._lock:
            if self._pid != pid or self._fd is None:
                return
            # The forkserver zygote holds the pipe too: it goes first.
            forkserver = sys.modules.get(__package__ + '.forkserver')
            if forkserver is not None:
                forkserver._forkserver._stop()
            os.close(self._fd)
            self._fd = None
            self._pid = None
        deadline = time.monotonic() + limit
        while not _reaped_now(pid) and time.monotonic() < deadline:
            time.sleep(0.002)

    def _check_alive(self):
        """Probe the pipe: False once the tracker has gone."""
        try:
            os.write(self._fd, _encode('PROBE', 0, 'noop'))
        except OSError:
            return False
        return True

    def register(self, name, rtype):
        """Ask the tracker to remove resource `name` if the tree ends first."""
        self._send('REGISTER', name, rtype)

    def unregister(self, name, rtype):
        """Tell the tracker that `name` was removed (or is no longer ours)."""
        self._send('UNREGISTER', name, rtype)

    def _send(self, cmd, name, rtype):
        message = _encode(cmd, name, rtype)
        if len(message) > _MAX_MESSAGE:
            raise ValueError('msg too long')
        with self._lock:
            # While this thread launches the tracker (a registration made by
            # the launch itself), the message waits for the launch to end.
            if self._connected() is None:
                self._pending.append(message)
            else:
                self._write(message)
            change, _mark = _COMMANDS[cmd]
            change(self._registered, (name, rtype))

    def _adopt(self, fd):
        """Use `fd`, a descriptor of the tree's tracker handed down by the
        parent, from now on.

        A process may have reached another tracker before it learnt of its
        tree's: one it started itself while importing its parent's main
        module, or the one of the forkserver it was forked from. Its
        registrations move to the tree's tracker (and are withdrawn from the
        other), so that nothing is removed while the tree still runs.
        """
        with self._lock:
            if self._fd is None:
                self._fd, self._pid = fd, None
                return
            if self._fd == fd or _same_file(self._fd, fd):
                if fd != self._fd:
                    os.close(fd)
                return
            old_fd, old_pid = self._fd, self._pid
            self._fd, self._pid = fd, None
            moved = sorted(self._registered)
            for name, rtype in moved:
                self._write(_encode('REGISTER', name, rtype))
            try:
                for name, rtype in moved:
                    os.write(old_fd, _encode('UNREGISTER', name, rtype))
            except OSError:
                pass  # that tracker has gone already
            os.close(old_fd)
            if old_pid is not None:
                # Ours: it ends now that its last writer is closed; reap it
                # without waiting here.
                threading.Thread(target=_reap, args=(old_pid,), daemon=True).start()

    def _write(self, message):
        written = os.write(self._fd, message)
        assert written == len(message), 'nbytes {0:n} but len(msg) {1:n}'.format(
            written, len(message))


_resource_tracker = ResourceTracker()
ensure_running = _resource_tracker.ensure_running
register = _resource_tracker.register
unregister = _resource_tracker.unregister
getfd = _resource_tracker.getfd

if hasattr(os, 'register_at_fork'):
    os.register_at_fork(after_in_child=_resource_tracker._reinit_after_fork)


#
# Passing the tracker to spawn and forkserver children
#

_CONFIG_KEY = '_resource_tracker'


class _TrackerHandle(object):
    """Lives in a process object's ``_config``. Pickled to start a child, it
    carries a duplicate of the tracker descriptor; elsewhere it carries
    nothing."""

    def __reduce__(self):
        from .context import get_spawning_popen
        if get_spawning_popen() is None:
            return _TrackerHandle, ()
        from . import reduction
        return _adopt_descriptor, (reduction.DupFd(_resource_tracker.getfd()),)


def _adopt_descriptor(dupfd):
    """In a starting child: use the parent's tracker."""
    _resource_tracker._adopt(dupfd.detach())
    return _TrackerHandle()


def _same_file(fd1, fd2):
    try:
        st1, st2 = os.fstat(fd1), os.fstat(fd2)
    except OSError:
        return False
    return (st1.st_dev, st1.st_ino) == (st2.st_dev, st2.st_ino)


def _reap(pid):
    """Wait for child `pid` to end (gone already is fine)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def _reaped_now(pid):
    """Reap child `pid` if it has ended; True once it is gone."""
    try:
        return os.waitpid(pid, os.WNOHANG)[0] != 0
    except ChildProcessError:
        return True


@contextlib.contextmanager
def _tracker_signals_held():
    """Block the signals the tracker ignores (where the platform can), and
    restore the previous mask afterwards."""
    if not _HAVE_SIGMASK:
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _IGNORED_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _install_handle():
    # Process objects copy their parent's _config when created: put the
    # handle in this process's _config, and in those of process objects that
    # were created before this module was imported and not started yet.
    from . import process
    handle = _TrackerHandle()
    current = process.current_process()
    if current is not None and _CONFIG_KEY not in current._config:
        current._config[_CONFIG_KEY] = handle
    for proc in list(process._dangling):
        config = getattr(proc, '_config', None)
        if (config is not None and getattr(proc, '_popen', True) is None
                and _CONFIG_KEY not in config):
            config[_CONFIG_KEY] = handle


_install_handle()


#
# Process identities, for the journals
#

def _process_start_time(pid):
    """Start time of `pid` (field 22 of /proc/<pid>/stat), or None if the
    process does not exist or is a zombie."""
    try:
        with open('/proc/%d/stat' % pid, 'rb') as f:
            data = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: the other
    # fields follow the last ')'.
    fields = data[data.rindex(b')') + 2:].split()
    if fields[0] in (b'Z', b'X'):
        return None
    return int(fields[19])


def _is_alive(identity):
    pid, start = identity
    return pid > 0 and _process_start_time(pid) == start


def _boot_id():
    try:
        with open('/proc/sys/kernel/random/boot_id') as f:
            return f.read().strip()
    except OSError:
        return 'unknown'


def _registry_dir(create=True):
    """The private 0700 directory of the journals, or None if unusable."""
    path = os.environ.get(REGISTRY_DIR_ENV)
    if not path:
        runtime_dir = os.environ.get('XDG_RUNTIME_DIR')
        if runtime_dir and os.path.isdir(runtime_dir):
            path = os.path.join(runtime_dir, 'mphost')
        else:
            path = '/tmp/mphost-%d' % os.getuid()
    if create:
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        except OSError:
            return None
    try:
        st = os.lstat(path)
    except OSError:
        return None
    # Never trust a directory someone else could write to.
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        return None
    return path


_JOURNAL_HEADER = 'mphost-resource-journal 1 boot '


def _journal_name(tracker, root):
    return 'rt-%d-%d-%d-%d.log' % (tracker + root)


def _parse_journal_name(entry):
    """(tracker, root, sweeper) identities from a journal's file name, the
    sweeper being None unless a tracker claimed the journal; None if `entry`
    is not a journal."""
    if not entry.startswith('rt-'):
        return None
    base, dot, claim = entry.partition('.log')
    try:
        numbers = [int(x) for x in base[3:].split('-')]
        if len(numbers) != 4:
            return None
        sweeper = None
        if claim:
            if not claim.startswith('.sweep-'):
                return None
            pid, start = (int(x) for x in claim[7:].split('-'))
            sweeper = (pid, start)
    except ValueError:
        return None
    return (numbers[0], numbers[1]), (numbers[2], numbers[3]), sweeper


def _read_journal(path):
    """(boot id, set of (rtype, name) still registered) of a journal."""
    live = set()
    boot = None
    with open(path, 'r', encoding='utf-8', errors='surrogateescape') as f:
        for number, line in enumerate(f):
            if not line.endswith('\n'):
                break  # torn last line of a killed writer
            line = line[:-1]
            if number == 0:
                if line.startswith(_JOURNAL_HEADER):
                    boot = line[len(_JOURNAL_HEADER):]
                continue
            op, _, rest = line.partition('\t')
            rtype, _, name = rest.partition('\t')
            if not name:
                continue
            if op == '+':
                live.add((rtype, name))
            elif op == '-':
                live.discard((rtype, name))
    return boot, live


class _Journal(object):
    """The tracker's record of the live resources, kept on disk."""

    def __init__(self, directory, tracker, root):
        self.path = os.path.join(directory, _journal_name(tracker, root))
        self._boot = _boot_id()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND
                           | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        self._lines = 0
        os.write(self._fd, (_JOURNAL_HEADER + self._boot + '\n').encode())

    def record(self, op, rtype, name, cache):
        if self._fd is None:
            return
        try:
            os.write(self._fd, ('%s\t%s\t%s\n' % (op, rtype, name)).encode('utf-8', 'surrogateescape'))
            self._lines += 1
            live = sum(len(names) for names in cache.values())
            if self._lines > 2 * live + 256:
                self._rewrite(cache)
        except OSError as e:
            # A full disk must not stop the tracker: it still cleans up at
            # the end, only a killed tree would now leak.
            warnings.warn('resource_tracker: journal %s abandoned: %s' % (self.path, e))
            self.remove()

    def _rewrite(self, cache):
        # Write the live set to a new file, then put it in place at once: a
        # kill at any moment leaves a complete journal behind.
        tmp = self.path + '.tmp'
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            lines = [_JOURNAL_HEADER + self._boot + '\n']
            for rtype, names in cache.items():
                lines.extend('+\t%s\t%s\n' % (rtype, name) for name in names)
            os.write(fd, ''.join(lines).encode('utf-8', 'surrogateescape'))
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        os.close(self._fd)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW)
        self._lines = 0

    def remove(self):
        if self._fd is None:
            return
        os.close(self._fd)
        self._fd = None
        for path in (self.path, self.path + '.tmp'):
            try:
                os.unlink(path)
            except OSError:
                pass


def _sweep_journals(directory, own_identity, own_root):
    """Handle the journals of other trackers (see the module docstring).

    Returns the (rtype, name) pairs adopted from a dead tracker of our own
    root; they must be recorded before the adopted journal is deleted, so
    the journal paths to delete come back too.
    """
    adopted, adopted_paths = set(), []
    try:
        entries = sorted(os.listdir(directory))
    except OSError:
        return adopted, adopted_paths
    current_boot = _boot_id()
    for entry in entries:
        if entry.endswith('.log.tmp'):
            # A rewrite cut short; the journal itself is complete.
            parsed = _parse_journal_name(entry[:-4])
            if parsed is not None and parsed[2] is None and not _is_alive(parsed[0]):
                try:
                    os.unlink(os.path.join(directory, entry))
                except OSError:
                    pass
            continue
        parsed = _parse_journal_name(entry)
        if parsed is None:
            continue
        tracker, root, sweeper = parsed
        if tracker == own_identity:
            continue
        if sweeper is not None:
            if _is_alive(sweeper):
                continue  # another tracker is on it
        elif _is_alive(tracker):
            continue
        adopt = root == own_root and _is_alive(root)
        if not adopt and _is_alive(root):
            continue
        # Claim it: of several trackers starting at once, one wins the rename.
        claimed = os.path.join(directory, _journal_name(tracker, root) + '.sweep-%d-%d' % own_identity)
        try:
            os.rename(os.path.join(directory, entry), claimed)
        except OSError:
            continue
        try:
            boot, live = _read_journal(claimed)
        except OSError:
            continue
        if boot != current_boot:
            live = set()
        if adopt:
            adopted |= live
            adopted_paths.append(claimed)
            continue
        _remove_leftovers(live, root[0])
        try:
            os.unlink(claimed)
        except OSError:
            pass
    return adopted, adopted_paths


def _remove_resource(rtype, name, missing_ok=False):
    """Remove resource `name` of type `rtype`; True if it went. A failure is
    a warning (a missing one too, unless `missing_ok`)."""
    try:
        _cleanup_func(rtype)(name)
    except Exception as failure:
        if not (missing_ok and isinstance(failure, FileNotFoundError)):
            warnings.warn(f'resource_tracker: {name!r}: {failure}')
        return False
    return True


def _remove_leftovers(live, root_pid):
    removed = {}
    for rtype, name in sorted(live):
        if _cleanup_func(rtype) is None or not _remove_resource(rtype, name, missing_ok=True):
            continue
        removed[rtype] = removed.get(rtype, 0) + 1
    # What another, killed program left is not this program's business to
    # report on its stderr: it goes to the multiprocessing log.
    for rtype, count in sorted(removed.items()):
        util.info('resource_tracker: removed %d leaked %s objects left by a killed '
                  'program (root pid %d)', count, rtype, root_pid)


#
# The tracker process
#

def main(fd):
    """Run the tracker: read messages from `fd` until every writer is gone."""
    for signum in _IGNORED_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    if _HAVE_SIGMASK:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _IGNORED_SIGNALS)
    for stream in (sys.stdin, sys.stdout):
        try:
            stream.close()
        except Exception:
            pass

    cache = {rtype: set() for rtype in list(_CLEANUP_FUNCS) + list(_EXTRA_CLEANUP_FUNCS)}
    journal = None
    try:
        journal = _start_journal(cache)
    except Exception as e:
        warnings.warn('resource_tracker: cannot keep a journal: %s' % (e,))

    try:
        with open(fd, 'rb') as pipe:
            for line in pipe:
                try:
                    _handle_message(line, cache, journal)
                except Exception:
                    try:
                        sys.excepthook(*sys.exc_info())
                    except Exception:
                        pass
    finally:
        # Every process of the tree has ended: remove what is left.
        for rtype, names in cache.items():
            if not names:
                continue
            try:
                warnings.warn('resource_tracker: There appear to be %d leaked %s objects '
                              'to clean up at shutdown' % (len(names), rtype))
            except Exception:
                pass
            for name in names:
                _remove_resource(rtype, name)
        if journal is not None:
            journal.remove()


def _start_journal(cache):
    directory = _registry_dir()
    if directory is None:
        return None
    me = (os.getpid(), _process_start_time(os.getpid()))
    root_pid = os.getppid()
    root = (root_pid, _process_start_time(root_pid) or 0)
    journal = _Journal(directory, me, root)
    adopted, adopted_paths = _sweep_journals(directory, me, root)
    for rtype, name in adopted:
        names = cache.setdefault(rtype, set())
        if name not in names:
            names.add(name)
            journal.record('+', rtype, name, cache)
    for path in adopted_paths:
        try:
            os.unlink(path)
        except OSError:
            pass
    return journal


def _handle_message(line, cache, journal):
    cmd, _, rest = line.strip().decode('ascii').partition(':')
    name, _, rtype = rest.rpartition(':')
    if cmd == 'PROBE':
        return
    if _cleanup_func(rtype) is None:
        raise ValueError('Cannot register %s for automatic cleanup: '
                         'unknown resource type %s' % (name, rtype))
    try:
        change, mark = _COMMANDS[cmd]
    except KeyError:
        raise RuntimeError('unrecognized command %r' % (cmd,)) from None
    names = cache.setdefault(rtype, set())
    before = len(names)
    change(names, name)
    if len(names) != before and journal is not None:
        journal.record(mark, rtype, name, cache)
