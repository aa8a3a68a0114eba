"""The fork start method: a copy-on-write child of the running interpreter.

Its Popen is also the base of the other two start methods. A Popen is a
thin face over a child that the native runtime started: `_launch` (one per
start method) starts it and calls `_adopt` with its pid and sentinel; what
follows is shared. The sentinel is readable once the child has ended, so
`poll()` and `wait()` are one path (`_settle`): sleep on the sentinel for
as long as the caller allows, then collect the exit code, once, under a
lock, through `_exit_code_now` (by pid here; forkserver children report it
on their sentinel instead).
"""

import os
import select
import signal
import threading

from . import util

__all__ = ['Popen']


def _readable(fd, timeout):
    """Whether `fd` became readable within `timeout` seconds (None: no limit)."""
    watcher = select.poll()
    watcher.register(fd, select.POLLIN)
    millis = None if timeout is None else max(0, int(timeout * 1000 + 0.999))
    return bool(watcher.poll(millis))


class Popen(object):
    """A child created by fork; also the base of the other start methods."""

    method = 'fork'

    # How a descriptor that the process object needs reaches the child:
    # None, inherited as it is (fork); 'number', carried with the start
    # request to the same number (spawn); 'index', carried and found by its
    # position in the list the child receives (forkserver).
    _fd_transport = None

    # Until the child is started and has ended: the instance sets them.
    returncode = None
    finalizer = None

    def __init__(self, process_obj):
        # Whatever the parent buffered must not be written twice (fork) or
        # come out after the child's own output.
        util._flush_std_streams()
        self._fds = []
        # Threads that wait together (join() in several threads, and start()
        # of another process, which polls every child) collect in turn and
        # all see the same code.
        self._reap_lock = threading.Lock()
        self._launch(process_obj)

    def _adopt(self, pid, sentinel):
        """Take charge of a started child; its sentinel is closed with us."""
        self.pid = pid
        self.sentinel = sentinel
        self.finalizer = util.Finalize(self, util.close_fds, (sentinel,))

    # -- what every start method shares --

    def duplicate_for_child(self, fd):
        transport = self._fd_transport
        if transport is None:
            return fd
        self._fds.append(fd)
        return fd if transport == 'number' else len(self._fds) - 1

    def poll(self, flag=os.WNOHANG):
        """The exit code, or None while the child runs (flag 0 blocks)."""
        return self._settle(0 if flag == os.WNOHANG else None)

    def wait(self, timeout=None):
        """Wait for the child to end; None if it still runs after timeout."""
        return self._settle(timeout)

    def _settle(self, timeout):
        # timeout 0 only looks; None sleeps until the child has ended. The
        # sentinel is readable once the child has ended, so after a wake-up
        # the code is there to collect.
        code = self._collect()
        while code is None and timeout != 0 and _readable(self.sentinel, timeout):
            code = self._collect()
        return code

    def _collect(self):
        # One thread at a time asks; the first answer is everyone's.
        with self._reap_lock:
            code = self.returncode
            if code is None:
                code = self.returncode = self._exit_code_now()
        return code

    def _exit_code_now(self):
        """The code of an ended child, None while it runs; never blocks."""
        import _mphost
        try:
            return _mphost.wait_for_exit(self.pid, False)
        except ChildProcessError:
            # Reaped by os.waitpid(-1) in user code: the code is lost, as
            # with the stdlib; the child is gone all the same.
            return 255

    def _send_signal(self, sig):
        if self.returncode is not None:
            return  # collected: its pid may be someone else's by now
        try:
            self._deliver(sig)
        except ProcessLookupError:
            pass  # it ended on its own; poll() will say how
        except OSError:
            # Not ours to signal any more (EPERM): fine if it has ended.
            if self._settle(0.1) is None:
                raise

    def _deliver(self, sig):
        # Through the pidfd: it names this child, never a later process
        # that was given the same pid.
        signal.pidfd_send_signal(self.sentinel, sig)

    def terminate(self):
        self._send_signal(signal.SIGTERM)

    def kill(self):
        self._send_signal(signal.SIGKILL)

    def close(self):
        if self.finalizer is not None:
            self.finalizer()

    # -- the fork start method --

    def _launch(self, process_obj):
        import _mphost
        # Opened before the fork and inherited: the child cannot miss the
        # parent's end, however early it comes.
        parent_pidfd = _mphost.open_sentinel(os.getpid())
        try:
            # A daemon child dies with this process, however it ends.
            pid = _mphost.fork(die_with_parent=bool(process_obj.daemon))
            if pid == 0:
                _run_in_child(process_obj, parent_pidfd)
        finally:
            os.close(parent_pidfd)
        self._adopt(pid, _mphost.open_sentinel(pid))


def _run_in_child(process_obj, parent_pidfd):
    # Never returns: the child must not unwind into the parent's frames.
    status = 1
    try:
        status = process_obj._bootstrap(parent_sentinel=parent_pidfd)
    finally:
        os._exit(status)
