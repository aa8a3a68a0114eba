"""Starting a fresh interpreter: preparation data and the child's entry.

A spawned child is a new mphost process in child mode. Its parent sends it,
over an inherited descriptor, one message: the preparation data (sys.path,
cwd, argv, authkey, start method, logging, and how to find the main
module), then the pickled process object. The child imports the parent's
main module as ``__mp_main__`` -- so code under
``if __name__ == '__main__':`` does not run again -- and then runs the
process object.

The preparation data is a plain dict, as with the stdlib (loky builds and
applies it too). Which keys exist, how the parent reads each and how the
child applies it, is one table, ``_FIELDS``; the main module, which needs
one of two keys and never both, has its own small table, ``_MAIN_FIELDS``.
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

# Windows-only notions of the stdlib's layout: never true on Linux.
WINEXE = False
WINSERVICE = False

_python_exe = sys.executable

# The flag that marks a command line as a child's (get_command_line()).
_CHILD_FLAG = '--multiprocessing-fork'


def set_executable(exe):
    """The program children are started with (mphost itself by default)."""
    global _python_exe
    _python_exe = None if exe is None else os.fsdecode(exe)


def get_executable():
    return _python_exe


def is_forking(argv):
    """True when argv says this process was started to run a child."""
    return argv[1:2] == [_CHILD_FLAG]


def freeze_support():
    """In a process started with get_command_line(), run the child and exit."""
    if not is_forking(sys.argv):
        return
    arguments = {}
    for word in sys.argv[2:]:
        key, _, text = word.partition('=')
        arguments[key] = None if text == 'None' else int(text)
    spawn_main(**arguments)
    sys.exit()


def get_command_line(**kwds):
    """A command line that runs a spawned child reading from a pipe."""
    assignments = ['%s=%r' % pair for pair in kwds.items()]
    if getattr(sys, 'frozen', False):
        # A frozen program re-enters itself; freeze_support() takes over.
        return [sys.executable, _CHILD_FLAG] + assignments
    entry = 'from multiprocessing.spawn import spawn_main; spawn_main(%s)' % ', '.join(assignments)
    interpreter = [get_executable()] + util._args_from_interpreter_flags()
    return interpreter + ['-c', entry, _CHILD_FLAG]


def spawn_main(pipe_handle, parent_pid=None, tracker_fd=None):
    """Child entry for a command line from get_command_line()."""
    assert is_forking(sys.argv), "Not forking"
    sys.exit(_main(pipe_handle))


# -- the child's side -------------------------------------------------------

def _child_main(fd):
    """Child entry of mphost's child mode: `mphost --mphost-child FD`.

    The first pickle in the handshake message says what this child is for:
    a process object to run, or the forkserver zygote.
    """
    import _mphost
    import signal
    _load_what_every_child_loads()
    # A spare child (warm spawn) may wait here long before it has work:
    # Ctrl-C aimed at the program must not make it print a traceback.
    handler = signal.getsignal(signal.SIGINT)
    if handler is not None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        payload = _mphost.receive_handover(fd)
    except EOFError:
        return 0  # the parent ended, or no longer needs this child
    finally:
        if handler is not None:
            signal.signal(signal.SIGINT, handler)
    return _dispatch(io.BytesIO(payload), None, ('process', 'forkserver'))


def _load_what_every_child_loads():
    """Import, while no work is waiting, the modules every spawned child
    imports on its way to the target: the shim modules that unpickle the
    preparation data and the process object, and the standard library ones
    runpy and they need. None of them runs code of the program, so a spare
    that has them is still a fresh interpreter as far as spawn goes."""
    import pkgutil  # noqa: F401  (runpy imports it lazily)
    from . import reduction, resource_tracker, popen_spawn_posix  # noqa: F401


def _main(fd, parent_sentinel=None):
    """Read a spawn message from descriptor fd and run its process object."""
    import _mphost
    try:
        message = _mphost.read_message(fd)
    finally:
        os.close(fd)
    return _dispatch(io.BytesIO(message), parent_sentinel, ('process',))


def _dispatch(stream, parent_sentinel, accepted):
    from . import reduction
    kind = reduction.pickle.load(stream)
    if kind not in accepted:
        raise RuntimeError('mphost child started with unknown instructions %r' % (kind,))
    if kind == 'forkserver':
        from . import forkserver
        return forkserver._zygote_main(reduction.pickle.load(stream))
    return _run_process(stream, parent_sentinel)


def _run_process(stream, parent_sentinel):
    """Become the parent's likeness, then run the process object."""
    from . import reduction
    me = process.current_process()
    # While set, starting a process raises (_check_not_importing_main).
    me._inheriting = True
    try:
        prepare(reduction.pickle.load(stream))
        target = reduction.pickle.load(stream)
    finally:
        del me._inheriting
    watched_ppid = 0
    if parent_sentinel is None:
        # A spawned child's kernel parent is its parent process: while
        # getppid() still says so, the pidfd opened by pid is the parent's.
        watched_ppid = target._parent_pid
        parent_sentinel = _open_parent_sentinel(watched_ppid)
    if target.daemon:
        # A daemon child dies with its parent, however the parent ends.
        import _mphost
        _mphost.die_with_parent(parent_sentinel, watched_ppid)
    return target._bootstrap(parent_sentinel)


def _open_parent_sentinel(pid):
    """A descriptor readable once the parent has ended."""
    import _mphost
    try:
        return _mphost.open_sentinel(pid)
    except ProcessLookupError:
        # Already gone: a pipe without a writer reads EOF at once.
        readable, writable = os.pipe()
        os.close(writable)
        return readable


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


# -- the preparation data ---------------------------------------------------

_ABSENT = object()  # a reader's "leave this key out"


def _logger_level():
    logger = util._logger
    return _ABSENT if logger is None else logger.getEffectiveLevel()


def _path_for_child():
    # '' means "the directory the program started in" for the parent; the
    # child, which may start elsewhere, gets that directory spelled out.
    return [process.ORIGINAL_DIR if entry == '' else entry for entry in sys.path]


def _keep_shim_first(sys_path):
    # The parent's sys.path normally names this same shim directory; if it
    # does not (another mphost build), this child's own shim goes first so
    # that multiprocessing stays mphost's.
    shim = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    entries = list(sys_path)
    return entries if shim in entries else [shim] + entries


def _apply_environ(environ):
    # The environment of the moment the parent started this child, which
    # may have been started ahead of time (warm spawn).
    for key in [k for k in os.environb if k not in environ]:
        del os.environb[key]
    for key, value in environ.items():
        if os.environb.get(key) != value:
            os.environb[key] = value


def _set_current(attribute):
    return lambda value: setattr(process.current_process(), attribute, value)


def _start_logging(wanted):
    if wanted:
        util.log_to_stderr()


def _default_context():
    from .context import _default_context as context
    return context


def _force_start_method(method):
    _default_context().set_start_method(method, force=True)


def _set_module_attribute(module, attribute):
    return lambda value: setattr(module, attribute, value)


# (key, read in the parent or None when the caller supplies it, apply in
# the child); the child applies in this order.
_FIELDS = (
    ('name', None, _set_current('name')),
    ('authkey', lambda: process.current_process().authkey, _set_current('authkey')),
    ('log_to_stderr', lambda: util._log_to_stderr, _start_logging),
    ('log_level', _logger_level, lambda level: util.get_logger().setLevel(level)),
    ('mphost_environ', None, _apply_environ),
    ('sys_path', _path_for_child, lambda entries: setattr(sys, 'path', _keep_shim_first(entries))),
    ('sys_argv', lambda: sys.argv, _set_module_attribute(sys, 'argv')),
    ('dir', os.getcwd, os.chdir),
    ('orig_dir', lambda: process.ORIGINAL_DIR, _set_module_attribute(process, 'ORIGINAL_DIR')),
    ('start_method', lambda: _default_context().get_start_method(), _force_start_method),
)


def _main_module_name():
    spec = getattr(sys.modules['__main__'], '__spec__', None)
    name = getattr(spec, 'name', None)
    return _ABSENT if name is None else name


def _main_module_file():
    if _main_module_name() is not _ABSENT:
        return _ABSENT  # found by name instead
    location = getattr(sys.modules['__main__'], '__file__', None)
    if location is None:
        return _ABSENT  # interactive, or -c: nothing to import
    if process.ORIGINAL_DIR is not None and not os.path.isabs(location):
        location = os.path.join(process.ORIGINAL_DIR, location)
    return os.path.normpath(location)


def get_preparation_data(name):
    """What a spawned child needs to look like its parent."""
    _check_not_importing_main()
    data = {'name': name}
    for key, read, _apply in _FIELDS + _MAIN_FIELDS:
        value = _ABSENT if read is None else read()
        if value is not _ABSENT:
            data[key] = value
    return data


old_main_modules = []


def prepare(data):
    """Make this fresh child look like the parent described by `data`."""
    for key, _read, apply in _FIELDS:
        if key in data:
            apply(data[key])
    # The main module last, once sys.path and the directory are the parent's;
    # by name if the parent ran one, else by path.
    for key, _read, apply in _MAIN_FIELDS:
        if key in data:
            apply(data[key])
            break


def _replace_main(already_loaded, load):
    """Install the parent's main module here as __mp_main__ (and __main__).

    `already_loaded(module)` says whether this process's __main__ is that
    module already; `load()` runs it and returns its namespace.
    """
    present = sys.modules['__main__']
    if already_loaded(present):
        return
    # Kept alive: objects of the replaced module may still be referenced.
    old_main_modules.append(present)
    module = types.ModuleType('__mp_main__')
    vars(module).update(load())
    sys.modules.update({'__main__': module, '__mp_main__': module})


def _fixup_main_from_name(mod_name):
    # `-m package` ran package.__main__, which is not importable again
    # without running the program a second time: the child does without.
    if mod_name.rpartition('.')[2] == '__main__':
        return
    _replace_main(
        lambda present: getattr(getattr(present, '__spec__', None), 'name', None) == mod_name,
        lambda: runpy.run_module(mod_name, run_name='__mp_main__', alter_sys=True))


def _fixup_main_from_path(main_path):
    # An IPython session's "main" is the ipython script itself.
    if os.path.splitext(os.path.basename(main_path))[0] == 'ipython':
        return
    _replace_main(
        lambda present: getattr(present, '__file__', None) == main_path,
        lambda: runpy.run_path(main_path, run_name='__mp_main__'))


_MAIN_FIELDS = (
    ('init_main_from_name', _main_module_name, _fixup_main_from_name),
    ('init_main_from_path', _main_module_file, _fixup_main_from_path),
)


def import_main_path(main_path):
    """Import the script at main_path as the __main__ of this child."""
    _fixup_main_from_path(main_path)
