"""Handing descriptors to processes that unpickle them.

``DupFd(fd)`` duplicates fd and registers the copy with this process's
sharer: a background thread listening on a Unix socket in the process's
private 0700 directory, authenticated with the process authkey. Unpickled
in another process of the program, ``detach()`` connects to that socket,
names the registration, and receives its own duplicate over SCM_RIGHTS.
Each registration is handed out once. A forked child starts with an empty
sharer of its own.
"""

import os
import signal
import sys
import threading

from . import process
from . import reduction
from . import util

__all__ = ['stop']


class DupFd(object):
    """A descriptor that another process can take (once) by unpickling."""

    def __init__(self, fd):
        new_fd = os.dup(fd)

        def send(conn, pid):
            reduction.send_handle(conn, new_fd, pid)

        def close():
            os.close(new_fd)

        self._id = _resource_sharer.register(send, close)

    def detach(self):
        """Receive the descriptor from the process that registered it."""
        with _resource_sharer.get_connection(self._id) as conn:
            return reduction.recv_handle(conn)


class _ResourceSharer(object):
    """The per-process listener that serves registered descriptors."""

    def __init__(self):
        self._key = 0
        self._cache = {}
        self._lock = threading.Lock()
        self._listener = None
        self._address = None
        self._thread = None
        util.register_after_fork(self, _ResourceSharer._afterfork)

    def register(self, send, close):
        """Keep (send, close) for one taker; returns the identifier to pickle."""
        with self._lock:
            if self._address is None:
                self._start()
            self._key += 1
            self._cache[self._key] = (send, close)
            return (self._address, self._key)

    @staticmethod
    def get_connection(ident):
        """An authenticated connection to the sharer named in `ident`,
        with the request already sent."""
        from .connection import Client
        address, key = ident
        conn = Client(address, authkey=process.current_process().authkey)
        conn.send((key, os.getpid()))
        return conn

    def stop(self, timeout=None):
        """Stop the background thread and forget every registration."""
        from .connection import Client
        with self._lock:
            if self._address is not None:
                conn = Client(self._address, authkey=process.current_process().authkey)
                conn.send(None)
                conn.close()
                self._thread.join(timeout)
                if self._thread.is_alive():
                    util.sub_warning('_ResourceSharer thread did not stop when asked')
                self._listener.close()
                self._thread = None
                self._address = None
                self._listener = None
                for _key, (_send, close) in self._cache.items():
                    close()
                self._cache.clear()

    def _afterfork(self):
        # The parent's registrations and listener are the parent's: close
        # our copies of its descriptors and start afresh.
        for _key, (_send, close) in self._cache.items():
            try:
                close()
            except OSError:
                pass
        self._cache.clear()
        self._lock._at_fork_reinit()
        if self._listener is not None:
            # Close our copy of the socket without unlinking the parent's file.
            listener = self._listener._listener
            if listener is not None:
                if listener._unlink is not None:
                    listener._unlink.cancel()
                    listener._unlink = None
                listener._socket.close()
            self._listener._listener = None
        self._listener = None
        self._address = None
        self._thread = None

    def _start(self):
        from .connection import Listener
        assert self._listener is None, 'Already have Listener'
        util.debug('starting listener and thread for sending handles')
        self._listener = Listener(authkey=process.current_process().authkey, backlog=128)
        self._address = self._listener.address
        thread = threading.Thread(target=self._serve, name='resource_sharer', daemon=True)
        thread.start()
        self._thread = thread

    def _serve(self):
        if hasattr(signal, 'pthread_sigmask'):
            signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        while True:
            try:
                with self._listener.accept() as conn:
                    msg = conn.recv()
                    if msg is None:
                        break
                    key, destination_pid = msg
                    entry = self._cache.pop(key, None)
                    if entry is None:
                        # Taken already (a pickle unpickled twice): the
                        # taker sees the connection close.
                        util.info('resource_sharer: nothing registered under %r', key)
                        continue
                    send, close = entry
                    try:
                        send(conn, destination_pid)
                    finally:
                        close()
            except Exception:
                # A failed handover (wrong authkey, unknown key, a taker
                # that went away) must not stop the sharer.
                if not util.is_exiting():
                    sys.excepthook(*sys.exc_info())


_resource_sharer = _ResourceSharer()
stop = _resource_sharer.stop
