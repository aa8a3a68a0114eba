"""The spawn start method: a fresh mphost process in child mode.

The child gets its work (preparation data, process object, descriptors)
over a socket once it has started. So a child can be started before it is
needed: after the first spawn, mphost keeps one spare child waiting (warm
spawn), which takes interpreter start-up off Process.start(). A spare is
used only if the executable, the interpreter flags, the environment
variables that shape interpreter start-up (PYTHON*, LC_*, LANG) and the
state a child inherits at exec (umask, signal mask and ignored signals,
resource limits) are what they were when it started; the rest of the
environment is applied in the child. MPHOST_WARM_SPAWN=0 turns it off.
"""

import io
import os

from .context import reduction, set_spawning_popen
from . import popen_fork
from . import spawn
from . import util

__all__ = ['Popen']


class _DupFd(object):
    """A descriptor inherited by a spawned child at the same number."""

    def __init__(self, fd):
        self.fd = fd

    def detach(self):
        return self.fd


def _pickle_for_child(popen, process_obj, environ=False):
    """The handshake message: kind, preparation data, process object.

    Pickling happens here, in the parent, so that an unpicklable target or
    argument fails in start() with pickle's own error. With `environ`, the
    parent's environment travels too (a spawned child sees the environment
    of the moment it was started, even if it was started ahead of time).
    """
    prep_data = spawn.get_preparation_data(process_obj._name)
    # Unpickled first in the child, so that it joins the program's resource
    # tracker before it imports the parent's main module.
    from . import resource_tracker
    prep_data['resource_tracker'] = resource_tracker._TrackerHandle()
    if environ:
        prep_data['mphost_environ'] = dict(os.environb)
    stream = io.BytesIO()
    set_spawning_popen(popen)
    try:
        reduction.dump('process', stream)
        reduction.dump(prep_data, stream)
        reduction.dump(process_obj, stream)
    finally:
        set_spawning_popen(None)
    return stream.getvalue()


def _startup_key(executable, flags):
    """What a waiting child must have been started with to be usable."""
    shaping = sorted((k, v) for k, v in os.environb.items()
                     if k.startswith((b'PYTHON', b'LC_', b'LANG')))
    return repr((executable, flags, shaping))


def _warm_spawn_enabled():
    return os.environ.get('MPHOST_WARM_SPAWN', '1') != '0'


def _forget_spare_after_fork():
    import _mphost
    _mphost.warm_pool_forget()


os.register_at_fork(after_in_child=_forget_spare_after_fork)


class Popen(popen_fork.Popen):
    method = 'spawn'
    DupFd = _DupFd

    def __init__(self, process_obj):
        self._fds = []
        super().__init__(process_obj)

    def duplicate_for_child(self, fd):
        self._fds.append(fd)
        return fd

    def _launch(self, process_obj):
        import _mphost
        payload = _pickle_for_child(self, process_obj, environ=True)
        executable = spawn.get_executable()
        flags = util._args_from_interpreter_flags()
        # The child's standard streams are the parent's as they are now.
        fds = [(fd, fd) for fd in (0, 1, 2) if _is_open(fd)] + [(fd, fd) for fd in self._fds]
        self.pid = _mphost.spawn_child(executable, flags, payload, fds,
                                       _startup_key(executable, flags), _warm_spawn_enabled())
        self.sentinel = _mphost.open_sentinel(self.pid)
        self.finalizer = util.Finalize(self, util.close_fds, (self.sentinel,))


def _is_open(fd):
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True
