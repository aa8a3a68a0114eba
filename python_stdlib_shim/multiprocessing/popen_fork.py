"""The fork start method: a copy-on-write child of the running interpreter.

Its Popen is also the base of the other two start methods. A Popen is the
face of one row of the native child table (``_mphost.supervisor``, see
runtime/supervisor.hpp): `_launch` (one per start method) starts the child
and enters it in the table (`_enter`); the table collects the exit code
once for every asker in every thread, signals the child through its pidfd
(a forkserver child by pid, checked against its start time), and reaps it
once this Popen is dropped even if nobody joined it.
"""

import errno
import os
import signal

import _mphost
from _mphost import supervisor as _table

from . import util

__all__ = ['Popen']


class Popen(object):
    """A child created by fork; also the base of the other start methods."""

    method = 'fork'

    # How a descriptor that the process object needs reaches the child:
    # None, inherited as it is (fork); 'number', carried with the start
    # request to the same number (spawn); 'index', carried and found by its
    # position in the list the child receives (forkserver).
    _fd_transport = None

    finalizer = None
    _ticket = None       # the row in the child table, until close()
    _last_code = None    # what the row said when close() let it go

    def __init__(self, process_obj):
        # Whatever the parent buffered must not be written twice (fork) or
        # come out after the child's own output.
        util._flush_std_streams()
        self._fds = []
        self._launch(process_obj)

    def _enter(self, ticket):
        """Become the face of row `ticket`; dropping this Popen releases it."""
        self.pid, self.sentinel = _table.identity(ticket)
        self._ticket = ticket
        self.finalizer = util.Finalize(self, _table.release, (ticket,))

    # -- what every start method shares --

    def duplicate_for_child(self, fd):
        transport = self._fd_transport
        if transport is None:
            return fd
        self._fds.append(fd)
        return fd if transport == 'number' else len(self._fds) - 1

    def _ask(self, question, *args):
        """`question(ticket, *args)` of the table. A ticket the table does not
        know (this Popen was copied into a forked process) is no child of
        ours: None, as the stdlib's waitpid gives ECHILD there."""
        ticket = self._ticket
        if ticket is None:
            return self._last_code
        try:
            return question(ticket, *args)
        except ChildProcessError:
            return None

    @property
    def returncode(self):
        """The exit code once the child has ended, else None."""
        return self._ask(_table.poll)

    def poll(self, flag=os.WNOHANG):
        """The exit code, or None while the child runs (flag 0 blocks)."""
        return self.wait(None if flag != os.WNOHANG else 0)

    def wait(self, timeout=None):
        """Wait for the child to end; None if it still runs after timeout."""
        if timeout != 0:
            self._ask(_table.wait, timeout)
        return self._ask(_table.poll)

    def _send_signal(self, sig):
        try:
            self._ask(_table.signal, sig)
        except OSError:
            # Not ours to signal any more (EPERM): fine if it has ended.
            if self.wait(0.1) is None:
                raise

    def terminate(self):
        self._send_signal(signal.SIGTERM)

    def kill(self):
        self._send_signal(signal.SIGKILL)

    def close(self):
        """Let go of the row (its sentinel closes); the code stays known."""
        if self._ticket is not None:
            self._last_code = self.returncode
            self._ticket = None
            self.finalizer()

    # -- the fork start method --

    def _launch(self, process_obj):
        parent = os.getpid()
        # A daemon child dies with this process, however it ends.
        pid, ticket = _table.fork(bool(process_obj.daemon))
        if pid == 0:
            _run_in_child(process_obj, parent)
        self._enter(ticket)


def _parent_sentinel(parent):
    """In the child: a descriptor readable once the parent has ended. It is
    opened here rather than by the parent before the fork (a system call
    less on the parent's start path); a parent that ended before it was
    opened is seen as ended: the child then has another kernel parent."""
    try:
        fd = _mphost.open_sentinel(parent)
    except OSError as failure:
        if failure.errno != errno.ESRCH:   # EMFILE and such: a failed start
            raise
        fd = None
    if fd is not None and os.getppid() == parent:
        return fd
    if fd is not None:
        os.close(fd)
    readable, writable = os.pipe()   # no writer: reads EOF at once
    os.close(writable)
    return readable


def _run_in_child(process_obj, parent):
    # Never returns: the child must not unwind into the parent's frames.
    status = 1
    try:
        try:
            sentinel = _parent_sentinel(parent)
        except OSError:              # e.g. EMFILE: said, as a failed start
            import traceback
            traceback.print_exc()
            raise
        status = process_obj._bootstrap(parent_sentinel=sentinel)
    finally:
        os._exit(status)
