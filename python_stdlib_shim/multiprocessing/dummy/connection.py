"""Connections between threads: Pipe, Listener and Client over queue.Queue.

Objects pass by reference (nothing is pickled); send_bytes and recv_bytes
are send and recv. A Listener's address is its queue of pending
connections.
"""

__all__ = ['Client', 'Listener', 'Pipe']

from queue import Queue

families = [None]


class Listener(object):
    """Accepts connections made by Client(listener.address)."""

    def __init__(self, address=None, family=None, backlog=1):
        self._backlog_queue = Queue(backlog)

    def accept(self):
        return Connection(*self._backlog_queue.get())

    def close(self):
        self._backlog_queue = None

    @property
    def address(self):
        return self._backlog_queue

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, exc_tb):
        self.close()


def Client(address):
    """A connection to the Listener whose address is `address`."""
    to_client, to_listener = Queue(), Queue()
    address.put((to_listener, to_client))
    return Connection(to_client, to_listener)


def Pipe(duplex=True):
    """Two connected ends (always duplex)."""
    a, b = Queue(), Queue()
    return Connection(a, b), Connection(b, a)


class Connection(object):
    """One end: reads from `_in`, writes to `_out`."""

    def __init__(self, _in, _out):
        self._out = _out
        self._in = _in
        self.send = self.send_bytes = _out.put
        self.recv = self.recv_bytes = _in.get

    def poll(self, timeout=0.0):
        """True if something is there to read (waits up to `timeout`
        seconds; None waits until something comes)."""
        if self._in.qsize() > 0:
            return True
        if timeout is not None and timeout <= 0.0:
            return False
        pending = self._in
        with pending.not_empty:
            # The queue's own lock is held here: look with _qsize().
            if timeout is None:
                while not pending._qsize():
                    pending.not_empty.wait()
            elif not pending._qsize():
                pending.not_empty.wait(timeout)
            return pending._qsize() > 0

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, exc_tb):
        self.close()
