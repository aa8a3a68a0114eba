"""The fork start method: a copy-on-write child of the running interpreter."""

import os
import signal

from . import util

__all__ = ['Popen']


class Popen(object):
    """A child created by fork; also the base of the other start methods."""

    method = 'fork'

    def __init__(self, process_obj):
        util._flush_std_streams()
        self.returncode = None
        self.finalizer = None
        self._launch(process_obj)

    def duplicate_for_child(self, fd):
        # A forked child inherits every descriptor as it is.
        return fd

    def poll(self, flag=os.WNOHANG):
        """The exit code, or None while the child runs (flag 0 blocks)."""
        if self.returncode is None:
            import _mphost
            try:
                code = _mphost.wait_for_exit(self.pid, flag != os.WNOHANG)
            except OSError:
                # Reaped elsewhere (e.g. os.waitpid(-1) in user code).
                return None
            if code is not None:
                self.returncode = code
        return self.returncode

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
            self.pid = _mphost.fork()
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
