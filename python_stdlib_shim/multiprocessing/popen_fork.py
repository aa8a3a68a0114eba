"""The fork start method: a copy-on-write child of the running interpreter."""

import os
import signal
import threading

from . import util

__all__ = ['Popen']


class Popen(object):
    """A child created by fork; also the base of the other start methods."""

    method = 'fork'

    def __init__(self, process_obj):
        util._flush_std_streams()
        self.returncode = None
        self.finalizer = None
        # The exit status can be collected once: threads that poll together
        # (join() in several threads, and start() of another process, which
        # polls every child) take turns, and all see the same code.
        self._poll_lock = threading.Lock()
        self._launch(process_obj)

    def duplicate_for_child(self, fd):
        # A forked child inherits every descriptor as it is.
        return fd

    def poll(self, flag=os.WNOHANG):
        """The exit code, or None while the child runs (flag 0 blocks)."""
        while self.returncode is None:
            if flag != os.WNOHANG:
                # Sleep on the sentinel, not under the lock.
                from .connection import wait
                wait([self.sentinel])
            with self._poll_lock:
                if self.returncode is None:
                    code = self._collect_exit_code()
                    if code is not None:
                        self.returncode = code
            if flag == os.WNOHANG:
                break
        return self.returncode

    def _collect_exit_code(self):
        # The code of an ended child, None while it runs; called once the
        # sentinel is readable or to look without waiting.
        import _mphost
        try:
            return _mphost.wait_for_exit(self.pid, False)
        except ChildProcessError:
            # Reaped by os.waitpid(-1) in user code: the code is lost, as
            # with the stdlib; the child is gone all the same.
            return 255

    def wait(self, timeout=None):
        """Wait for the child to end; None if it still runs after timeout."""
        if self.returncode is None:
            if timeout is not None:
                from .connection import wait
                if not wait([self.sentinel], timeout):
                    return None
            return self.poll(0)
        return self.returncode

    def _send_signal(self, sig):
        if self.returncode is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass
            except OSError:
                if self.wait(timeout=0.1) is None:
                    raise

    def terminate(self):
        self._send_signal(signal.SIGTERM)

    def kill(self):
        self._send_signal(signal.SIGKILL)

    def _launch(self, process_obj):
        import _mphost
        # Opened before the fork, inherited by the child: no race with the
        # parent ending before the child looks.
        parent_sentinel = _mphost.open_sentinel(os.getpid())
        try:
            # A daemon child dies with this process, however it ends.
            self.pid = _mphost.fork(die_with_parent=bool(process_obj.daemon))
            if self.pid == 0:
                code = 1
                try:
                    code = process_obj._bootstrap(parent_sentinel=parent_sentinel)
                finally:
                    os._exit(code)
        finally:
            if self.pid != 0:
                os.close(parent_sentinel)
        self.sentinel = _mphost.open_sentinel(self.pid)
        self.finalizer = util.Finalize(self, util.close_fds, (self.sentinel,))

    def close(self):
        if self.finalizer is not None:
            self.finalizer()
