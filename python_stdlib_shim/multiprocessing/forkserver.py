"""The forkserver: one zygote mphost process per program.

The zygote is started (in child mode) the first time a forkserver process is
needed. It imports the preload modules once, then forks a child for each
request. Requests come over a Unix socket in a private 0700 directory and
must carry the program's secret token; the zygote itself (socket, token
check, fork, exit-status reporting) is mphost's native runtime
(runtime/forkserver.hpp). The zygote ends when the program closes its end of
the "alive" pipe.

This module is the client side: it keeps one record of the running zygote
(`_Zygote`), replaced whole when a zygote starts or is found dead, and the
zygote's own entry (`_zygote_main`, then `main`).
"""

import collections
import io
import os
import signal
import struct
import sys
import threading
import time
import warnings

from . import process
from . import spawn
from . import util

__all__ = ['ensure_running', 'get_inherited_fds', 'connect_to_new_process',
           'set_forkserver_preload']

# What one request may carry (runtime::forkserver_max_fds), counting the
# child's handshake pipe.
MAXFDS_TO_SEND = 16
# The stdlib's framing of a pid or exit code on a descriptor; the native
# zygote sends the child's pid in this layout (i64).
SIGNED_STRUCT = struct.Struct('q')

# A running zygote: its pid, socket path, the write end of its alive pipe,
# the private directory of the socket and the secret requests carry.
_Zygote = collections.namedtuple('_Zygote', 'pid address alive_fd directory token')


def _reap(pid, block):
    """Whether the zygote `pid` has ended, collecting it if so; with
    `block`, wait until it has."""
    import _mphost
    try:
        return _mphost.wait_for_exit(pid, block) is not None
    except ChildProcessError:
        return True  # collected already


class ForkServer(object):

    # In a child forked by the zygote: the descriptors its parent passed.
    _inherited_fds = None

    def __init__(self):
        self._zygote = None
        self._lock = threading.Lock()
        self._preload_modules = ['__main__']

    # The stdlib's attribute names for the zygote, read by tests and tools.
    @property
    def _forkserver_pid(self):
        return None if self._zygote is None else self._zygote.pid

    @property
    def _forkserver_address(self):
        return None if self._zygote is None else self._zygote.address

    @property
    def _forkserver_alive_fd(self):
        return None if self._zygote is None else self._zygote.alive_fd

    def set_forkserver_preload(self, modules_names):
        """Modules that the zygote imports before it forks any child."""
        if any(type(entry) is not str for entry in modules_names):
            raise TypeError('module_names must be a list of strings')
        self._preload_modules = modules_names

    def get_inherited_fds(self):
        """In a forkserver child: the descriptors its parent passed."""
        return self._inherited_fds

    def connect_to_new_process(self, fds):
        """Fork a child with `fds`; returns (pid, sentinel)."""
        if len(fds) >= MAXFDS_TO_SEND:
            raise ValueError('too many fds')
        import _mphost
        zygote = self._running_zygote()
        try:
            return _mphost.forkserver_request(zygote.address, zygote.token, list(fds))
        except (ConnectionRefusedError, ConnectionResetError, BrokenPipeError, FileNotFoundError):
            # A zygote killed a moment ago refuses before it can be reaped:
            # once it has ended, a new one serves the request.
            if not self._ended_soon(zygote.pid):
                raise
        zygote = self._running_zygote()
        return _mphost.forkserver_request(zygote.address, zygote.token, list(fds))

    @staticmethod
    def _ended_soon(pid, within=2.0):
        deadline = time.monotonic() + within
        while not _reap(pid, False):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def ensure_running(self):
        """Start the zygote unless it is already running."""
        self._running_zygote()

    def _running_zygote(self):
        # The record is read under the lock: a _stop() in another thread
        # cannot take it away between the check and the request.
        with self._lock:
            zygote = self._zygote
            if zygote is not None and not _reap(zygote.pid, False):
                return zygote
            if zygote is not None:
                # Killed or crashed: let go of it, then start another.
                self._zygote = None
                self._release(zygote)
            self._zygote = self._start_zygote()
            return self._zygote

    def _stop(self):
        # Used by tests and at exit: close the alive pipe, reap the zygote.
        with self._lock:
            zygote, self._zygote = self._zygote, None
            if zygote is None:
                return
            self._release(zygote, reap=True)

    @staticmethod
    def _release(zygote, reap=False):
        import _mphost
        # Closing the alive pipe tells a live zygote to end.
        os.close(zygote.alive_fd)
        if reap:
            _reap(zygote.pid, True)
        _mphost.remove_private_directory(zygote.directory)
        _mphost.registry_drop('folder', zygote.directory)

    def _start_zygote(self):
        import _mphost
        from . import reduction, resource_tracker
        tracker_fd = resource_tracker.getfd()
        # Directories of zygotes killed outright are removed by the next one.
        _mphost.sweep_orphaned_directories('mphost-fs-')
        listen_fd, directory, address = _mphost.forkserver_listen()
        # Recorded in the tree's registry (no watcher): if the whole tree is
        # killed, the next mphost program's sweep removes the directory with
        # the tree's other leftovers.
        _mphost.registry_add('folder', directory, 0)
        token = _mphost.forkserver_token()
        zygote_end, our_end = os.pipe()
        config = dict(
            listen_fd=listen_fd, alive_fd=zygote_end, tracker_fd=tracker_fd,
            directory=directory, token=token, preload=self._preload_modules,
            preparation=_zygote_preparation(self._preload_modules))
        message = io.BytesIO()
        reduction.dump('forkserver', message)
        reduction.dump(config, message)
        handed = (0, 1, 2, listen_fd, zygote_end, tracker_fd)
        try:
            pid = _mphost.spawn_child(spawn.get_executable(), util._args_from_interpreter_flags(),
                                      message.getvalue(), [(fd, fd) for fd in handed])
        except BaseException:
            os.close(our_end)
            _mphost.remove_private_directory(directory)
            _mphost.registry_drop('folder', directory)
            raise
        finally:
            os.close(listen_fd)
            os.close(zygote_end)
        # The socket's directory goes when the program ends, however the
        # zygote ends.
        util.Finalize(self, _mphost.remove_private_directory, (directory,), exitpriority=-50)
        return _Zygote(pid, address, our_end, directory, token)


def _zygote_preparation(preload):
    """What the zygote needs to import the preload modules like the parent."""
    data = {'sys_path': sys.path, 'dir': os.getcwd(), 'orig_dir': process.ORIGINAL_DIR}
    main = sys.modules['__main__']
    by_name = getattr(getattr(main, '__spec__', None), 'name', None) is not None
    location = getattr(main, '__file__', None)
    # A main module run by name (-m) is not imported by the zygote: each
    # child imports it by name, as with spawn.
    if '__main__' in preload and location is not None and not by_name:
        data['init_main_from_path'] = os.path.abspath(location)
    return data


# -- the zygote's side ------------------------------------------------------

def _zygote_main(config):
    """Entry of the zygote process (called by spawn._child_main)."""
    from . import resource_tracker
    # What the zygote and its children register goes to the program's tracker.
    resource_tracker._resource_tracker._adopt(config['tracker_fd'])
    preparation = config['preparation']
    os.chdir(preparation['dir'])
    process.ORIGINAL_DIR = preparation['orig_dir']
    return main(config['listen_fd'], config['alive_fd'], config['preload'],
                preparation.get('init_main_from_path'), preparation['sys_path'],
                token=config['token'], directory=config['directory'])


def _preload(preload, main_path):
    if main_path is not None:
        # Imported once here as __mp_main__; children find it already there.
        me = process.current_process()
        me._inheriting = True
        try:
            spawn.import_main_path(main_path)
        except Exception:
            # Each child imports it again and reports the error itself.
            import traceback
            traceback.print_exc()
        finally:
            del me._inheriting
    for name in preload:
        if name == '__main__':
            continue
        try:
            __import__(name)
        except ImportError:
            warnings.warn('forkserver: preloading module %r failed' % name, stacklevel=1)


def main(listener_fd, alive_r, preload, main_path=None, sys_path=None, *, token=None, directory=None):
    """Run the zygote: preload, then fork a child per request.

    Returns 0 in the zygote once the program has closed its end of the
    alive pipe; in each forked child, never returns (the child runs its
    process object and exits).
    """
    import _mphost
    if token is None:
        raise ValueError("the forkserver needs the program's secret token")
    if sys_path is not None:
        sys.path = spawn._keep_shim_first(sys_path)
    _preload(preload, main_path)
    util._close_stdin()
    # Ctrl-C reaches the whole foreground process group: the zygote ignores
    # it and lets the program decide; children get the default back.
    interactive = signal.signal(signal.SIGINT, signal.SIG_IGN)
    received = _mphost.run_zygote(listener_fd, alive_r, token)
    if received is None:
        # The program closed its end (or died): nothing can connect any more.
        if directory is not None:
            _mphost.remove_private_directory(directory)
        return 0
    signal.signal(signal.SIGINT, interactive)
    _run_forked_child(received)


def _run_forked_child(received):
    # received: the handshake pipe, a pidfd of the parent, then the
    # descriptors the parent passed (popen_forkserver).
    handshake, parent_pidfd, *passed = received
    _forkserver._zygote = None
    _forkserver._inherited_fds = passed
    status = 1
    try:
        status = spawn._main(handshake, parent_sentinel=parent_pidfd)
    finally:
        util._flush_std_streams()
        os._exit(status)


def read_signed(fd):
    """One SIGNED_STRUCT integer read from fd; EOFError if fd ends first."""
    wanted = SIGNED_STRUCT.size
    received = bytearray()
    while len(received) < wanted:
        chunk = os.read(fd, wanted - len(received))
        if not chunk:
            raise EOFError('unexpected EOF')
        received += chunk
    return SIGNED_STRUCT.unpack(received)[0]


def write_signed(fd, n):
    """Write n to fd as one SIGNED_STRUCT integer."""
    pending = memoryview(SIGNED_STRUCT.pack(n))
    while pending:
        written = os.write(fd, pending)
        if not written:
            raise RuntimeError('should not get here')
        pending = pending[written:]


_forkserver = ForkServer()
ensure_running = _forkserver.ensure_running
get_inherited_fds = _forkserver.get_inherited_fds
connect_to_new_process = _forkserver.connect_to_new_process
set_forkserver_preload = _forkserver.set_forkserver_preload
