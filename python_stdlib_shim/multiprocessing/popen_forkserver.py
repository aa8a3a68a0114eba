"""The forkserver start method: children forked by the program's zygote."""

import os

from . import forkserver
from . import popen_fork
from . import popen_spawn_posix
from . import util

__all__ = ['Popen']


class _DupFd(object):
    """A descriptor sent to the zygote with the request; `ind` indexes the
    list the child receives."""

    def __init__(self, ind):
        self.ind = ind

    def detach(self):
        return forkserver.get_inherited_fds()[self.ind]


class Popen(popen_fork.Popen):
    method = 'forkserver'
    DupFd = _DupFd

    def __init__(self, process_obj):
        self._fds = []
        super().__init__(process_obj)

    def duplicate_for_child(self, fd):
        self._fds.append(fd)
        return len(self._fds) - 1

    def _launch(self, process_obj):
        import _mphost
        payload = popen_spawn_posix._pickle_for_child(self, process_obj)
        read_end, write_end = os.pipe()
        # The child's parent is this process, not the zygote that forks it: a
        # pidfd of ours goes along as the child's parent sentinel.
        parent_pidfd = _mphost.open_sentinel(os.getpid())
        try:
            self.pid, self.sentinel = forkserver.connect_to_new_process(
                [read_end, parent_pidfd] + self._fds)
        finally:
            os.close(read_end)
            os.close(parent_pidfd)
        self.finalizer = util.Finalize(self, util.close_fds, (self.sentinel,))
        try:
            _mphost.write_message(write_end, payload)
        except BrokenPipeError:
            pass
        finally:
            os.close(write_end)

    def _collect_exit_code(self):
        # The zygote sends the code when the child ends, then lets it go.
        from .connection import wait
        if not wait([self.sentinel], 0):
            return None
        import _mphost
        code = _mphost.forkserver_read_exit_code(self.sentinel)
        # No code means the zygote itself went away.
        return 255 if code is None else code
