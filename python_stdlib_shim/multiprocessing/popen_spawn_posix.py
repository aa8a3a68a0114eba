"""The spawn start method: a fresh mphost process in child mode."""

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


def _pickle_for_child(popen, process_obj):
    """The handshake message: kind, preparation data, process object.

    Pickling happens here, in the parent, so that an unpicklable target or
    argument fails in start() with pickle's own error.
    """
    prep_data = spawn.get_preparation_data(process_obj._name)
    stream = io.BytesIO()
    set_spawning_popen(popen)
    try:
        reduction.dump('process', stream)
        reduction.dump(prep_data, stream)
        reduction.dump(process_obj, stream)
    finally:
        set_spawning_popen(None)
    return stream.getvalue()


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
        payload = _pickle_for_child(self, process_obj)
        read_end, write_end = os.pipe()
        try:
            self.pid = _mphost.launch(
                spawn.get_executable(),
                ['--mphost-child', str(read_end)] + util._args_from_interpreter_flags(),
                [read_end] + self._fds)
            self.sentinel = _mphost.open_sentinel(self.pid)
            self.finalizer = util.Finalize(self, util.close_fds, (self.sentinel,))
        finally:
            os.close(read_end)
        try:
            _mphost.write_message(write_end, payload)
        except BrokenPipeError:
            # The child died before reading; its exit code tells the story.
            pass
        finally:
            os.close(write_end)
