"""The forkserver start method: children forked by the program's zygote.

The request to the zygote carries the child's descriptors: the read end of
a pipe on which the parent then writes the spawn message (preparation data
and process object, as for spawn), a pidfd of the parent (the child's
parent sentinel: its kernel parent is the zygote), then the descriptors the
process object needs. The zygote answers with the child's pid and a status
descriptor, which is the sentinel: readable once the child has ended, and
it carries the exit code, which the child table reads (255 when the zygote
went away first). The zygote keeps an ended child unreaped until its code
is read, so until then the pid is still this child's.
"""

import os

from . import forkserver
from . import popen_fork
from . import popen_spawn_posix

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
    _fd_transport = 'index'

    def _launch(self, process_obj):
        import _mphost
        message = popen_spawn_posix._pickle_for_child(self, process_obj)
        child_end, our_end = os.pipe()
        parent_pidfd = _mphost.open_sentinel(os.getpid())
        try:
            pid, status_fd = forkserver.connect_to_new_process(
                [child_end, parent_pidfd] + self._fds)
        except BaseException:
            os.close(our_end)
            raise
        finally:
            os.close(child_end)
            os.close(parent_pidfd)
        # The table owns the status descriptor from here: it reads the code
        # there, and signals the child by pid while the pid is still its.
        self._enter(_mphost.supervisor.admit(pid, self.method, bool(process_obj.daemon), status_fd))
        try:
            _mphost.write_message(our_end, message)
        except BrokenPipeError:
            pass  # the child died first; its exit code will say why
        finally:
            os.close(our_end)
