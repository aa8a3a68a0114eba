"""The spawn start method: a fresh mphost process in child mode.

The child gets its work (preparation data, process object, descriptors)
over a socket once it has started. So a child can be started before it is
needed: after the first spawn, mphost keeps a spare child waiting (warm
spawn), which takes interpreter start-up off Process.start(); when children
are started in bursts (a Pool), up to MPHOST_WARM_SPARES of them (default:
twice the number of CPUs, at most 8), back to one after a few idle seconds.
A spare is
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

# Environment variables read by the interpreter as it starts: a spare child
# started under other values is not the child the parent would start now.
_STARTUP_VARIABLES = (b'PYTHON', b'LC_', b'LANG')


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
    from . import resource_tracker
    preparation = spawn.get_preparation_data(process_obj._name)
    # Unpickled with the rest of the preparation, before prepare() imports
    # the parent's main module: the child joins the program's tracker first.
    preparation['resource_tracker'] = resource_tracker._TrackerHandle()
    if environ:
        preparation['mphost_environ'] = dict(os.environb)
    out = io.BytesIO()
    # While set, objects that may only travel at start-up (locks, arenas,
    # descriptors) agree to be pickled, and put their descriptors in _fds.
    set_spawning_popen(popen)
    try:
        for part in ('process', preparation, process_obj):
            reduction.dump(part, out)
    finally:
        set_spawning_popen(None)
    return out.getvalue()


def _startup_key(executable, flags):
    """What a waiting child must have been started with to be usable."""
    shaping = sorted(item for item in os.environb.items()
                     if item[0].startswith(_STARTUP_VARIABLES))
    return repr((executable, flags, shaping))


def _warm_spawn_enabled():
    return os.environ.get('MPHOST_WARM_SPAWN', '1') != '0'


def _spare_limit():
    """How many spares a burst of starts may keep waiting."""
    text = os.environ.get('MPHOST_WARM_SPARES', '')
    if text.strip().isdigit():
        return max(int(text), 1)
    return min(2 * (os.cpu_count() or 1), 8)


def _burst_gap_ms():
    """Starts closer than this (MPHOST_WARM_BURST_MS) count as one burst."""
    text = os.environ.get('MPHOST_WARM_BURST_MS', '')
    return float(text) if text.strip().isdigit() else None



def _open_std_descriptors():
    """The standard descriptors of this process that are open now."""
    present = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            continue
        present.append(fd)
    return present


class Popen(popen_fork.Popen):
    method = 'spawn'
    DupFd = _DupFd
    _fd_transport = 'number'

    def _launch(self, process_obj):
        import _mphost
        payload = _pickle_for_child(self, process_obj, environ=True)
        executable = spawn.get_executable()
        flags = util._args_from_interpreter_flags()
        # The child's standard streams are the parent's as they are now, and
        # every carried descriptor keeps its number.
        placed = [(fd, fd) for fd in _open_std_descriptors() + self._fds]
        pid = _mphost.spawn_child(executable, flags, payload, placed,
                                  _startup_key(executable, flags), _warm_spawn_enabled(),
                                  _spare_limit(), _burst_gap_ms())
        self._enter(_mphost.supervisor.admit(pid, self.method, bool(process_obj.daemon)))
