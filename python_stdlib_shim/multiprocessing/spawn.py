"""Starting a fresh interpreter: preparation data and the child's entry.

A spawned child is a new mphost process in child mode. Its parent sends it,
over an inherited pipe, one message: the preparation data (sys.path, cwd,
argv, authkey, start method, logging, and how to find the main module),
then the pickled process object. The child imports the parent's main
module as ``__mp_main__`` -- so code under ``if __name__ == '__main__':``
does not run again -- and then runs the process object.
"""

import io
import os
import runpy
import sys
import types

from . import process
from . import util

__all__ = ['_main', 'freeze_support', 'set_executable', 'get_executable',
           'get_preparation_data', 'get_command_line', 'import_main_path']

WINEXE = False
WINSERVICE = False

_python_exe = sys.executable


def set_executable(exe):
    global _python_exe
    _python_exe = os.fsdecode(exe) if exe is not None else None


def get_executable():
    return _python_exe


def is_forking(argv):
    """True when argv says this process was started to run a child."""
    return len(argv) >= 2 and argv[1] == '--multiprocessing-fork'


def freeze_support():
    """In a process started with get_command_line(), run the child and exit."""
    if is_forking(sys.argv):
        kwds = {}
        for arg in sys.argv[2:]:
            name, value = arg.split('=')
            kwds[name] = None if value == 'None' else int(value)
        spawn_main(**kwds)
        sys.exit()


def get_command_line(**kwds):
    """A command line that runs a spawned child reading from a pipe."""
    if getattr(sys, 'frozen', False):
        return [sys.executable, '--multiprocessing-fork'] + ['%s=%r' % item for item in kwds.items()]
    call = 'from multiprocessing.spawn import spawn_main; spawn_main(%s)' % \
        ', '.join('%s=%r' % item for item in kwds.items())
    return [get_executable()] + util._args_from_interpreter_flags() + \
        ['-c', call, '--multiprocessing-fork']


def spawn_main(pipe_handle, parent_pid=None, tracker_fd=None):
    """Child entry for a command line from get_command_line()."""
    assert is_forking(sys.argv), "Not forking"
    sys.exit(_main(pipe_handle))


def _child_main(fd):
    """Child entry of mphost's child mode: `mphost --mphost-child FD`.

    The first pickle in the handshake message says what this child is for:
    a process object to run, or the forkserver zygote.
    """
    import _mphost
    import signal
    from . import reduction
    # What prepare() will need anyway, loaded before the work arrives.
    import pkgutil  # noqa: F401  (runpy imports it lazily)
    # A child may wait here long before it has work (warm spawn): Ctrl-C
    # aimed at the program must not make it print a traceback.
    sigint = signal.getsignal(signal.SIGINT)
    if sigint is not None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        payload = _mphost.receive_handover(fd)
    except EOFError:
        # The parent ended, or no longer needs this child.
        return 0
    finally:
        if sigint is not None:
            signal.signal(signal.SIGINT, sigint)
    stream = io.BytesIO(payload)
    kind = reduction.pickle.load(stream)
    if kind == 'forkserver':
        from . import forkserver
        return forkserver._zygote_main(reduction.pickle.load(stream))
    if kind != 'process':
        raise RuntimeError('mphost child started with unknown instructions %r' % (kind,))
    return _run_from_stream(stream)


def _main(fd, parent_sentinel=None):
    """Read a spawn message from descriptor fd and run its process object."""
    import _mphost
    from . import reduction
    stream = io.BytesIO(_mphost.read_message(fd))
    os.close(fd)
    if reduction.pickle.load(stream) != 'process':
        raise RuntimeError('not a process handshake')
    return _run_from_stream(stream, parent_sentinel)


def _run_from_stream(stream, parent_sentinel=None):
    from . import reduction
    current = process.current_process()
    current._inheriting = True
    try:
        preparation_data = reduction.pickle.load(stream)
        prepare(preparation_data)
        process_obj = reduction.pickle.load(stream)
    finally:
        del current._inheriting
    expected_ppid = 0
    if parent_sentinel is None:
        # A spawned child's kernel parent is its parent process: while
        # getppid() still says so, the pidfd opened by pid is the parent's.
        parent_sentinel = _open_parent_sentinel(process_obj._parent_pid)
        expected_ppid = process_obj._parent_pid
    if process_obj.daemon:
        # A daemon child dies with its parent, however the parent ends.
        import _mphost
        _mphost.die_with_parent(parent_sentinel, expected_ppid)
    return process_obj._bootstrap(parent_sentinel)


def _open_parent_sentinel(pid):
    """A descriptor readable once the parent has ended."""
    import _mphost
    try:
        return _mphost.open_sentinel(pid)
    except ProcessLookupError:
        # The parent is already gone: a pipe whose writer is closed reads EOF.
        r, w = os.pipe()
        os.close(w)
        return r


def _check_not_importing_main():
    if getattr(process.current_process(), '_inheriting', False):
        raise RuntimeError('''
        An attempt has been made to start a new process before the current
        process has finished its bootstrapping phase: this child process was
        still importing its parent's main module (as __mp_main__), so the
        code that starts processes runs at import time.

        With the spawn and forkserver start methods, a child imports the main
        module of its parent. Protect the code that starts processes with

            if __name__ == '__main__':
                freeze_support()   # only needed for frozen executables
                ...

        so that it runs in the parent only.''')


def get_preparation_data(name):
    """What a spawned child needs to look like its parent."""
    _check_not_importing_main()
    data = dict(
        log_to_stderr=util._log_to_stderr,
        authkey=process.current_process().authkey,
    )
    if util._logger is not None:
        data['log_level'] = util._logger.getEffectiveLevel()
    sys_path = sys.path.copy()
    try:
        index = sys_path.index('')
    except ValueError:
        pass
    else:
        sys_path[index] = process.ORIGINAL_DIR
    from .context import _default_context
    data.update(
        name=name,
        sys_path=sys_path,
        sys_argv=sys.argv,
        orig_dir=process.ORIGINAL_DIR,
        dir=os.getcwd(),
        start_method=_default_context.get_start_method(),
    )
    main_module = sys.modules['__main__']
    main_name = getattr(main_module.__spec__, 'name', None)
    if main_name is not None:
        data['init_main_from_name'] = main_name
    else:
        main_path = getattr(main_module, '__file__', None)
        if main_path is not None:
            if not os.path.isabs(main_path) and process.ORIGINAL_DIR is not None:
                main_path = os.path.join(process.ORIGINAL_DIR, main_path)
            data['init_main_from_path'] = os.path.normpath(main_path)
    return data


old_main_modules = []


def prepare(data):
    """Make this fresh child look like the parent described by `data`."""
    if 'name' in data:
        process.current_process().name = data['name']
    if 'authkey' in data:
        process.current_process().authkey = data['authkey']
    if 'log_to_stderr' in data and data['log_to_stderr']:
        util.log_to_stderr()
    if 'log_level' in data:
        util.get_logger().setLevel(data['log_level'])
    if 'mphost_environ' in data:
        _apply_environ(data['mphost_environ'])
    if 'sys_path' in data:
        sys.path = _keep_shim_first(data['sys_path'])
    if 'sys_argv' in data:
        sys.argv = data['sys_argv']
    if 'dir' in data:
        os.chdir(data['dir'])
    if 'orig_dir' in data:
        process.ORIGINAL_DIR = data['orig_dir']
    if 'start_method' in data:
        from .context import _default_context
        _default_context.set_start_method(data['start_method'], force=True)
    if 'init_main_from_name' in data:
        _fixup_main_from_name(data['init_main_from_name'])
    elif 'init_main_from_path' in data:
        _fixup_main_from_path(data['init_main_from_path'])


def _apply_environ(environ):
    for key in list(os.environb):
        if key not in environ:
            del os.environb[key]
    for key, value in environ.items():
        if os.environb.get(key) != value:
            os.environb[key] = value


def _keep_shim_first(sys_path):
    # The parent's sys.path normally names this same shim directory; if it
    # does not (another mphost build), this child's own shim goes first so
    # that multiprocessing stays mphost's.
    shim = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return list(sys_path) if shim in sys_path else [shim] + list(sys_path)


def _fixup_main_from_name(mod_name):
    current_main = sys.modules['__main__']
    # `-m package` runs package.__main__, which is not importable again
    # without side effects; the stdlib does not re-run it either.
    if mod_name == '__main__' or mod_name.endswith('.__main__'):
        return
    if getattr(current_main.__spec__, 'name', None) == mod_name:
        return
    old_main_modules.append(current_main)
    main_module = types.ModuleType('__mp_main__')
    main_content = runpy.run_module(mod_name, run_name='__mp_main__', alter_sys=True)
    main_module.__dict__.update(main_content)
    sys.modules['__main__'] = sys.modules['__mp_main__'] = main_module


def _fixup_main_from_path(main_path):
    current_main = sys.modules['__main__']
    main_name = os.path.splitext(os.path.basename(main_path))[0]
    if main_name == 'ipython':
        return
    if getattr(current_main, '__file__', None) == main_path:
        return
    old_main_modules.append(current_main)
    main_module = types.ModuleType('__mp_main__')
    main_content = runpy.run_path(main_path, run_name='__mp_main__')
    main_module.__dict__.update(main_content)
    sys.modules['__main__'] = sys.modules['__mp_main__'] = main_module


def import_main_path(main_path):
    """Import the script at main_path as the __main__ of this child."""
    _fixup_main_from_path(main_path)
