"""Handing descriptors to processes that unpickle them.

``DupFd(fd)`` keeps a duplicate of fd in this process's sharer, under a key
of its own, and pickles as (sharer address, key). The process that
unpickles it calls ``detach()``: it connects to the sharer, names the key
and its pid, and receives its own duplicate over SCM_RIGHTS; the sharer
then closes its copy. Each key is handed out once.

The sharer is a daemon thread serving a Listener on a Unix socket in the
process's private 0700 directory, authenticated with the process authkey;
it starts with the first DupFd. A forked child starts with an empty sharer
of its own (the parent's keys and socket stay the parent's).
"""

import itertools
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
        self._id = _resource_sharer.keep(fd)

    def detach(self):
        """Receive the descriptor from the process that kept it."""
        with _resource_sharer.get_connection(self._id) as conn:
            return reduction.recv_handle(conn)


def _request(address, message):
    """An authenticated connection to the sharer at `address`, with
    `message` already sent on it."""
    from .connection import Client
    conn = Client(address, authkey=process.current_process().authkey)
    try:
        conn.send(message)
    except BaseException:
        conn.close()
        raise
    return conn


def _close_quietly(fd):
    try:
        os.close(fd)
    except OSError:
        pass


class _Service:
    """A running sharer: its listener, the thread serving it, its address."""

    __slots__ = ('listener', 'thread', 'address')

    def __init__(self, listener, thread):
        self.listener = listener
        self.thread = thread
        self.address = listener.address


class _ResourceSharer(object):
    """The per-process listener that serves the descriptors kept for others.

    `_cache` maps each key still to be taken to this process's duplicate;
    `_service` is the running listener and thread (None until needed).
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._forget_all()
        util.register_after_fork(self, _ResourceSharer._afterfork)

    def _forget_all(self):
        self._cache = {}
        self._keys = itertools.count(1)
        self._service = None

    def keep(self, fd):
        """Keep a duplicate of fd for one taker; returns the identifier to pickle."""
        with self._lock:
            service = self._service or self._start()
            key = next(self._keys)
            self._cache[key] = os.dup(fd)
        return service.address, key

    @staticmethod
    def get_connection(ident):
        """A connection to the sharer named in `ident`, asking for its key;
        the descriptor comes back on it."""
        return _request(ident[0], (ident[1], os.getpid()))

    def stop(self, timeout=None):
        """Stop the background thread and close every descriptor still kept."""
        with self._lock:
            service = self._service
            if service is None:
                return
            _request(service.address, None).close()
            service.thread.join(timeout)
            if service.thread.is_alive():
                util.sub_warning('_ResourceSharer thread did not stop when asked')
            service.listener.close()
            for fd in self._cache.values():
                _close_quietly(fd)
            self._forget_all()

    def _afterfork(self):
        # The parent's keys and listener are the parent's: close our copies
        # (the socket file stays, it is the parent's) and start afresh.
        self._lock._at_fork_reinit()
        for fd in self._cache.values():
            _close_quietly(fd)
        listener = self._service.listener if self._service is not None else None
        inherited = listener._listener if listener is not None else None
        if inherited is not None:
            listener._listener = None
            if inherited._unlink is not None:
                inherited._unlink.cancel()
            inherited._socket.close()
        self._forget_all()

    def _start(self):
        from .connection import Listener
        listener = Listener(authkey=process.current_process().authkey, backlog=128)
        util.debug('resource_sharer: serving descriptors at %r', listener.address)
        thread = threading.Thread(target=self._serve, args=(listener,),
                                  name='resource_sharer', daemon=True)
        thread.start()
        self._service = _Service(listener, thread)
        return self._service

    def _serve(self, listener):
        # Signals are the main thread's business.
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        while self._answer(listener):
            pass

    def _answer(self, listener):
        """Serve one request; False once asked to stop.

        A failed handover (wrong authkey, unknown key, a taker that went
        away) is reported and does not stop the sharer.
        """
        try:
            with listener.accept() as conn:
                request = conn.recv()
                if request is None:
                    return False
                key, taker_pid = request
                fd = self._cache.pop(key, None)
                if fd is None:
                    # Taken already (a pickle unpickled twice): the taker
                    # sees the connection close.
                    util.info('resource_sharer: nothing kept under %r', key)
                    return True
                try:
                    reduction.send_handle(conn, fd, taker_pid)
                finally:
                    os.close(fd)
        except Exception as exc:
            if not util.is_exiting():
                sys.excepthook(type(exc), exc, exc.__traceback__)
        return True


_resource_sharer = _ResourceSharer()
stop = _resource_sharer.stop
