"""Connections between threads: Pipe, Listener and Client over queue.Queue.

Objects pass by reference (nothing is pickled); send_bytes and recv_bytes
are send and recv. Every connection is duplex: two queues, one per
direction. A Listener's address is its queue of pending connections: a
Client puts there the end that accept() returns.
"""

__all__ = ['Client', 'Listener', 'Pipe']

from queue import Queue

families = [None]


class Listener(object):
    """Accepts connections made by Client(listener.address)."""

    def __init__(self, address=None, family=None, backlog=1):
        self._backlog_queue = Queue(backlog)

    def accept(self):
        return self._backlog_queue.get()

    def close(self):
        self._backlog_queue = None

    @property
    def address(self):
        return self._backlog_queue

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, exc_tb):
        self.close()


def _linked_ends():
    """Two connections, each reading what the other writes."""
    one_way, other_way = Queue(), Queue()
    return Connection(one_way, other_way), Connection(other_way, one_way)


def Client(address):
    """A connection to the Listener whose address is `address`."""
    ours, theirs = _linked_ends()
    address.put(theirs)
    return ours


def Pipe(duplex=True):
    """Two connected ends (always duplex)."""
    return _linked_ends()


class Connection(object):
    """One end: reads from `_in`, writes to `_out`."""

    def __init__(self, _in, _out):
        self._in, self._out = _in, _out

    def send(self, obj, *args, **kwargs):
        """Put obj (the object itself) for the other end."""
        self._out.put(obj, *args, **kwargs)

    send_bytes = send

    def recv(self, *args, **kwargs):
        """The next object the other end sent (waits for it)."""
        return self._in.get(*args, **kwargs)

    recv_bytes = recv

    def poll(self, timeout=0.0):
        """True if something is there to read (waits up to `timeout`
        seconds; None waits until something comes)."""
        pending = self._in
        with pending.not_empty:
            # The queue's own lock is held here: look with _qsize().
            if timeout is not None and timeout <= 0:
                return pending._qsize() > 0
            return bool(pending.not_empty.wait_for(pending._qsize, timeout))

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, exc_tb):
        self.close()
