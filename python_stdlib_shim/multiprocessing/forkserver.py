"""The forkserver: one zygote mphost process per program.

The zygote is started (in child mode) the first time a forkserver process is
needed. It imports the preload modules once, then forks a child for each
request. Requests come over a Unix socket in a private 0700 directory and
must carry the program's secret token; the zygote itself (socket, token
check, fork, exit-status reporting) is mphost's native runtime. The zygote
ends when the program closes its end of the "alive" pipe.
"""

import io
import os
import signal
import sys
import threading
import warnings

from . import process
from . import spawn
from . import util

__all__ = ['ensure_running', 'get_inherited_fds', 'connect_to_new_process',
           'set_forkserver_preload']

MAXFDS_TO_SEND = 16


class ForkServer(object):

    def __init__(self):
        self._forkserver_address = None
        self._forkserver_alive_fd = None
        self._forkserver_pid = None
        self._forkserver_directory = None
        self._token = None
        self._inherited_fds = None
        self._lock = threading.Lock()
        self._preload_modules = ['__main__']

    def _stop(self):
        # Used by tests and at exit: close the alive pipe, reap the zygote.
        with self._lock:
            self._stop_unlocked()

    def _stop_unlocked(self):
        if self._forkserver_pid is None:
            return
        os.close(self._forkserver_alive_fd)
        self._forkserver_alive_fd = None
        import _mphost
        try:
            _mphost.wait_for_exit(self._forkserver_pid, True)
        except ChildProcessError:
            pass
        self._forkserver_pid = None
        _mphost.remove_private_directory(self._forkserver_directory)
        self._forkserver_address = None
        self._forkserver_directory = None

    def set_forkserver_preload(self, modules_names):
        """Modules that the zygote imports before it forks any child."""
        if not all(type(name) is str for name in modules_names):
            raise TypeError('module_names must be a list of strings')
        self._preload_modules = modules_names

    def get_inherited_fds(self):
        """In a forkserver child: the descriptors its parent passed."""
        return self._inherited_fds

    def connect_to_new_process(self, fds):
        """Fork a child with `fds`; returns (pid, sentinel)."""
        self.ensure_running()
        if len(fds) + 1 > MAXFDS_TO_SEND:
            raise ValueError('too many fds')
        import _mphost
        return _mphost.forkserver_request(self._forkserver_address, self._token, list(fds))

    def ensure_running(self):
        """Start the zygote unless it is already running."""
        with self._lock:
            if self._forkserver_pid is not None:
                import _mphost
                try:
                    ended = _mphost.wait_for_exit(self._forkserver_pid, False) is not None
                except ChildProcessError:
                    ended = True
                if not ended:
                    return
                # The zygote died: start a new one.
                os.close(self._forkserver_alive_fd)
                _mphost.remove_private_directory(self._forkserver_directory)
                self._forkserver_pid = None
            self._start_zygote()

    def _start_zygote(self):
        import _mphost
        from . import reduction, resource_tracker
        tracker_fd = resource_tracker.getfd()
        # Directories of zygotes killed outright are removed by the next one.
        _mphost.sweep_orphaned_directories('mphost-fs-')
        listen_fd, directory, address = _mphost.forkserver_listen()
        token = _mphost.forkserver_token()
        alive_r, alive_w = os.pipe()
        config = {
            'listen_fd': listen_fd,
            'directory': directory,
            'tracker_fd': tracker_fd,
            'alive_fd': alive_r,
            'token': token,
            'preload': self._preload_modules,
            'preparation': _zygote_preparation(self._preload_modules),
        }
        stream = io.BytesIO()
        reduction.dump('forkserver', stream)
        reduction.dump(config, stream)
        try:
            pid = _mphost.spawn_child(
                spawn.get_executable(), util._args_from_interpreter_flags(), stream.getvalue(),
                [(fd, fd) for fd in (0, 1, 2, listen_fd, alive_r, tracker_fd)])
        except BaseException:
            os.close(alive_w)
            _mphost.remove_private_directory(directory)
            raise
        finally:
            os.close(listen_fd)
            os.close(alive_r)
        self._forkserver_pid = pid
        self._forkserver_alive_fd = alive_w
        # The socket's directory goes when the program ends, however the
        # zygote ends.
        util.Finalize(self, _mphost.remove_private_directory, (directory,), exitpriority=-50)
        self._forkserver_address = address
        self._forkserver_directory = directory
        self._token = token


def _zygote_preparation(preload):
    """What the zygote needs to import the preload modules like the parent."""
    data = {'sys_path': sys.path, 'dir': os.getcwd(), 'orig_dir': process.ORIGINAL_DIR}
    if '__main__' in preload:
        main_path = getattr(sys.modules['__main__'], '__file__', None)
        main_name = getattr(sys.modules['__main__'].__spec__, 'name', None)
        if main_name is None and main_path is not None:
            data['init_main_from_path'] = os.path.abspath(main_path)
    return data


def _zygote_main(config):
    """Entry of the zygote process (called by spawn._child_main)."""
    import _mphost
    from . import resource_tracker
    # What the zygote and its children register goes to the program's tracker.
    resource_tracker._resource_tracker._adopt(config['tracker_fd'])
    preparation = config['preparation']
    sys.path = spawn._keep_shim_first(preparation['sys_path'])
    os.chdir(preparation['dir'])
    process.ORIGINAL_DIR = preparation['orig_dir']
    if 'init_main_from_path' in preparation:
        # Imported once here as __mp_main__; children find it already there.
        current = process.current_process()
        current._inheriting = True
        try:
            spawn.import_main_path(preparation['init_main_from_path'])
        except Exception:
            # Each child imports it again and reports the error itself.
            import traceback
            traceback.print_exc()
        finally:
            del current._inheriting
    for name in config['preload']:
        if name == '__main__':
            continue
        try:
            __import__(name)
        except ImportError:
            warnings.warn('forkserver: preloading module %r failed' % name, stacklevel=1)
    util._close_stdin()
    # Ctrl-C reaches the whole foreground process group: the zygote ignores
    # it and lets the program decide; children get the default back.
    previous_sigint = signal.signal(signal.SIGINT, signal.SIG_IGN)
    fds = _mphost.run_zygote(config['listen_fd'], config['alive_fd'], config['token'])
    if fds is None:
        # The program closed its end (or died): nothing can connect any more.
        _mphost.remove_private_directory(config['directory'])
        return 0
    # In a forked child from here on.
    signal.signal(signal.SIGINT, previous_sigint)
    _forkserver._forkserver_pid = None
    _forkserver._forkserver_alive_fd = None
    # fds: the handshake pipe, a pidfd of the parent, then the descriptors
    # the parent passed (popen_forkserver).
    _forkserver._inherited_fds = fds[2:]
    code = 1
    try:
        code = spawn._main(fds[0], parent_sentinel=fds[1])
    finally:
        util._flush_std_streams()
        os._exit(code)


_forkserver = ForkServer()
ensure_running = _forkserver.ensure_running
get_inherited_fds = _forkserver.get_inherited_fds
connect_to_new_process = _forkserver.connect_to_new_process
set_forkserver_preload = _forkserver.set_forkserver_preload
