"""BaseProcess and the process tree as each process sees it.

A process object lives in its parent; ``start()`` hands it to a Popen of the
chosen start method (fork, spawn or forkserver), which creates the child and
runs ``_bootstrap()`` there.

Each process knows three things about the tree, kept in module globals that
a child replaces as it starts (``_adopt``):
- ``_current_process``: its own process object (``_MainProcess`` in the
  process the launcher started);
- ``_parent_process``: what it knows of its parent (name, pid, sentinel);
- ``_children``: the process objects it started that may still run; an
  ended child leaves it the first time it is seen ended. Whether a child
  runs is the native child table's answer (``_mphost.supervisor``, which
  the popen_* modules fill): this module only maps its rows back to
  process objects.

A process object has four states: initial (no Popen), started, ended (the
Popen has an exit code) and closed (``close()`` let go of the Popen). What
an operation needs of the state is checked the way the stdlib checks it:
ValueError on a closed object, AssertionError (with the stdlib's message)
for misuse.
"""

__all__ = ['BaseProcess', 'current_process', 'active_children', 'parent_process']

import functools
import itertools
import os
import signal
import sys
import threading
from _weakrefset import WeakSet

# The native module (_mphost) is loaded when the first child is started, not
# by `import multiprocessing`: most programs that import it start no
# process. Until then there is no child table to ask.

try:
    ORIGINAL_DIR = os.path.abspath(os.getcwd())
except OSError:
    ORIGINAL_DIR = None


def current_process():
    """The process object of the calling process."""
    return _current_process


def active_children():
    """The children of this process still running (reaping finished ones)."""
    return _cleanup()


def parent_process():
    """The parent's process object, or None in the main process."""
    return _parent_process


def _cleanup():
    """Forget the children that ended; return those still running."""
    return _children.settle()


def _end_orphans():
    """The exit path's last step, once the children were joined: daemon
    children whose process objects were dropped are terminated, and the
    dropped children that ended are reaped."""
    native = sys.modules.get('_mphost')
    if native is not None:  # else this process never started a child
        native.supervisor.end_children()


def _child_running(proc):
    """Whether the started child of `proc` runs; it leaves ``_children``
    the first time it is seen ended."""
    if proc._popen.poll() is None:
        return True
    _children.drop(proc)
    return False


class _ChildRows:
    """The started process objects of this process, each with its row in
    the child table (None for a Popen that is not ours, such as loky's,
    which is asked itself). Iterates in start order."""

    def __init__(self):
        self._rows = {}

    def enter(self, proc):
        self._rows[proc] = getattr(proc._popen, '_ticket', None)

    def drop(self, proc):
        self._rows.pop(proc, None)

    def settle(self):
        """Drop the children that ended; return those still running."""
        # Asking the table also reaps the dropped children that ended; a
        # process that never loaded the native module has none.
        native = sys.modules.get('_mphost')
        live = set(native.supervisor.running()) if native is not None else ()
        ended = [proc for proc, ticket in list(self._rows.items())
                 if (ticket not in live if ticket is not None else proc._popen.poll() is not None)]
        for proc in ended:
            self.drop(proc)
        return list(self._rows)

    def __contains__(self, proc):
        return proc in self._rows

    def __iter__(self):
        return iter(list(self._rows))

    def __len__(self):
        return len(self._rows)


# The work a process object carries until start() hands it to the child.
_WORK = ('_target', '_args', '_kwargs')


class _Setting:
    """A settable public attribute of a process object: kept under `key` in
    the record `record(proc)` returns; a new value is first shown to
    `refusal(proc, value)`, which gives the stdlib's AssertionError message
    for a value it refuses (None to accept), and stored as `convert(value)`."""

    def __init__(self, record, key, default, refusal=None, convert=None, doc=None):
        self._record, self._key, self._default = record, key, default
        self._refusal, self._convert = refusal, convert
        self.__doc__ = doc

    def __get__(self, proc, owner=None):
        if proc is None:
            return self
        record = self._record(proc)
        if self._default is _REQUIRED:
            return record[self._key]
        return record.get(self._key, self._default)

    def __set__(self, proc, value):
        if self._refusal is not None:
            refused = self._refusal(proc, value)
            assert refused is None, refused
        self._record(proc)[self._key] = value if self._convert is None else self._convert(value)


_REQUIRED = object()


def _own_attrs(proc):
    return proc.__dict__


def _config(proc):
    return proc._config


def _sentinel_ready(fd, timeout):
    """Wait until descriptor fd is readable; False on timeout."""
    import selectors
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        return bool(selector.select(timeout))


def _open_only(method):
    """`method`, refused with ValueError once the process object is closed."""
    @functools.wraps(method)
    def checked(proc, *args, **kwargs):
        proc._check_closed()
        return method(proc, *args, **kwargs)
    return checked


def _exit_status(code):
    """The exit status a child reports for ``sys.exit(code)``: None is 0, an
    int is itself, anything else is printed to stderr and gives 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    sys.stderr.write(f'{code}\n')
    return 1


class BaseProcess(object):
    """A unit of work run in a separate process; subclasses choose how it
    starts (``_Popen``)."""

    def _Popen(self):
        raise NotImplementedError

    def __init__(self, group=None, target=None, name=None, args=(), kwargs={},
                 *, daemon=None):
        assert group is None, 'group argument must be None for now'
        creator = _current_process
        self._identity = (*creator._identity, next(_process_counter))
        # authkey, semprefix, ... inherited; the daemon flag unless given
        self._config = dict(creator._config, daemon=creator.daemon if daemon is None else daemon)
        self._parent_pid, self._parent_name = os.getpid(), creator.name
        self._popen, self._closed = None, False
        self.__dict__.update(zip(_WORK, (target, tuple(args), dict(kwargs))))
        self._name = name or f"{type(self).__name__}-{':'.join(map(str, self._identity))}"
        _dangling.add(self)

    # -- state ------------------------------------------------------------

    def _check_closed(self):
        if self._closed:
            raise ValueError("process object is closed")

    def _relation(self):
        """How the calling process relates to this object: 'creator' (it
        made the object, so it starts and waits for the child), 'self' (it is
        the process the object stands for) or 'other' (a copy that went to
        another process)."""
        if os.getpid() == self._parent_pid:
            return 'creator'
        return 'self' if self is _current_process else 'other'

    # -- the child's life -------------------------------------------------

    def run(self):
        """The child's work; by default calls target(*args, **kwargs)."""
        if self._target:
            self._target(*self._args, **self._kwargs)

    @_open_only
    def start(self):
        """Start the child process."""
        assert self._popen is None, 'cannot start a process twice'
        assert self._relation() == 'creator', 'can only start a process object created by current process'
        assert not _current_process.daemon, 'daemonic processes are not allowed to have children'
        _cleanup()
        popen = self._Popen(self)
        self._popen, self._sentinel = popen, popen.sentinel
        _note_in_tree(popen.pid, self._name)
        # The child has its own copy now; drop ours so that the target and
        # its arguments can be collected.
        for attr in _WORK:
            self.__dict__.pop(attr)
        _children.enter(self)

    @_open_only
    def terminate(self):
        """Send SIGTERM to the child."""
        self._popen.terminate()

    @_open_only
    def kill(self):
        """Send SIGKILL to the child."""
        self._popen.kill()

    @_open_only
    def join(self, timeout=None):
        """Wait until the child ends, or `timeout` seconds pass."""
        assert self._relation() == 'creator', 'can only join a child process'
        popen = self._popen
        assert popen is not None, 'can only join a started process'
        if popen.wait(timeout) is not None:
            _children.drop(self)

    @_open_only
    def is_alive(self):
        """True while the child runs."""
        relation = self._relation()
        if relation == 'self':
            return True
        assert relation == 'creator', 'can only test a child process'
        return self._popen is not None and _child_running(self)

    def close(self):
        """Release the resources of a finished process object."""
        popen = self._popen
        if popen is not None:
            if _child_running(self):
                raise ValueError('Cannot close a process while it is still running. '
                                 'You should first call join() or terminate().')
            popen.close()
            self._popen = None
            del self._sentinel
        self._closed = True

    # -- attributes -------------------------------------------------------

    name = _Setting(_own_attrs, '_name', _REQUIRED,
                    lambda proc, value: None if isinstance(value, str) else 'name must be a string')
    daemon = _Setting(_config, 'daemon', False,
                      lambda proc, value:
                          None if proc._popen is None else 'process has already started',
                      doc='Daemonic children are terminated when their parent exits.')
    authkey = _Setting(_config, 'authkey', _REQUIRED, convert=lambda key: AuthenticationString(key))

    @property
    @_open_only
    def exitcode(self):
        """None while running; 0, n (sys.exit(n)) or -signum once ended."""
        return None if self._popen is None else self._popen.poll()

    @property
    @_open_only
    def ident(self):
        """The process id, None before start."""
        return os.getpid() if self is _current_process else (self._popen and self._popen.pid)

    pid = ident

    @property
    @_open_only
    def sentinel(self):
        """A descriptor that becomes readable when the process ends."""
        try:
            return self._sentinel
        except AttributeError:
            raise ValueError("process not started") from None

    def _state_words(self, popen):
        """The state for repr: one word, and the exit code once ended."""
        relation = self._relation()
        if relation == 'self':
            return ['started']
        if self._closed:
            return ['closed']
        if relation == 'other':
            return ['unknown']
        if popen is None:
            return ['initial']
        code = popen.poll()
        if code is None:
            return ['started']
        return ['stopped', f'exitcode={_exitcode_to_name.get(code, code)}']

    def __repr__(self):
        popen = self._popen
        words = [type(self).__name__, f'name={self._name!r}']
        if popen is not None:
            words.append(f'pid={popen.pid}')
        words.append(f'parent={self._parent_pid}')
        words += self._state_words(popen)
        if self.daemon:
            words.append('daemon')
        return f"<{' '.join(words)}>"

    # -- in the child -----------------------------------------------------

    def _bootstrap(self, parent_sentinel=None):
        """Run in the child: become the current process, run(), and return
        the exit code."""
        from . import util
        try:
            _adopt(self, parent_sentinel)
            util.info(f'{self.name}: running')
            try:
                self.run()
            finally:
                util._exit_function()   # the atexit work of a multiprocessing child
            status = 0
        except SystemExit as request:
            status = _exit_status(request.code)
        except BaseException as failure:
            # Any other failure of the child: its traceback, exit code 1.
            import traceback
            status = 1
            sys.stderr.write(f'Process {self.name}:\n')
            traceback.print_exception(failure)
        finally:
            # Non-daemon threads are joined, then the exit code is logged and
            # the standard streams flushed before the caller's os._exit().
            for step in (threading._shutdown,
                         lambda: util.info(f'process exiting with exitcode {status:d}'),
                         util._flush_std_streams):
                step()
        return status

    @staticmethod
    def _after_fork():
        """What a forked child resets (a spawned one has nothing to): the
        thread's native id, which threading's own after-fork hook leaves at
        the parent's (mphost runs on Linux, which has one); the parent's
        finalizers; then the hooks registered with util.register_after_fork."""
        from . import util
        for step in (threading.current_thread()._set_native_id,
                     util._finalizer_registry.clear, util._run_after_forkers):
            step()


def _adopt(proc, parent_sentinel):
    """Make `proc` the current process of this (new) child: its own start
    method, a fresh counter and children set, its parent, after-fork hooks."""
    from . import util, context
    global _process_counter, _children, _current_process, _parent_process
    method = proc._start_method
    if method is not None:
        context._force_start_method(method)
    # The native table of a forked child is empty already.
    _process_counter, _children = itertools.count(1), _ChildRows()
    util._close_stdin()
    # The parent's process object stays referenced until the after-fork
    # hooks have cleared the finalizer registry, so none of its finalizers
    # runs here.
    inherited = _current_process
    _current_process = proc
    _parent_process = _ParentProcess(proc._parent_name, proc._parent_pid, parent_sentinel)
    proc._after_fork()
    del inherited
    import _mphost
    _mphost.state_note_self('child', name=proc._name, ppid=proc._parent_pid, method=method)


def _note_in_tree(pid, name):
    """The child's Python name, for the tree's process table (mphost.state(),
    the inspector): the runtime noted the rest as it started the child."""
    import _mphost
    _mphost.state_note(pid, name=name)


class AuthenticationString(bytes):
    """The authkey: bytes that refuse to be pickled except to start a child."""

    def __reduce__(self):
        from .context import get_spawning_popen
        if get_spawning_popen() is not None:
            return AuthenticationString, (bytes(self),)
        raise TypeError('Pickling an AuthenticationString object is '
                        'disallowed for security reasons')


def _known_process(proc, name, config, **more):
    """The state of a process object for a process this one did not start
    (itself as the main process, or its parent)."""
    proc.__dict__.update(_identity=(), _name=name, _parent_pid=None, _popen=None,
                         _closed=False, _config=config, **more)


class _ParentProcess(BaseProcess):
    """What a child knows of its parent: name, pid and a sentinel."""

    def __init__(self, name, pid, sentinel):
        _known_process(self, name, {}, _pid=pid, _sentinel=sentinel)

    def is_alive(self):
        return self._sentinel is None or not _sentinel_ready(self._sentinel, 0)

    @property
    def ident(self):
        return self._pid

    def join(self, timeout=None):
        """Wait until the parent ends, or `timeout` seconds pass."""
        if self._sentinel is not None:
            _sentinel_ready(self._sentinel, timeout)

    pid = ident


class _MainProcess(BaseProcess):
    """The process that the launcher started."""

    def __init__(self):
        _known_process(self, 'MainProcess',
                       {'authkey': AuthenticationString(os.urandom(32)), 'semprefix': '/mp'})

    def close(self):
        pass


_parent_process = None
_current_process = _MainProcess()
_process_counter = itertools.count(1)
_children = _ChildRows()
del _MainProcess

# Exit codes of children killed by a signal, named for repr().
_exitcode_to_name = {
    -signum: f'-{name}' for name, signum in signal.__dict__.items()
    if name.startswith('SIG') and '_' not in name
}

# Every process object created, for tests that look for leaks.
_dangling = WeakSet()
