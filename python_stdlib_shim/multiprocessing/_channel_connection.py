"""The channel transport: Connections over mphost's shared-memory channels.

Every Pipe() end and a queue's two ends are a ``_ChannelConnection``: it
reads messages from one channel (`inbound`) and writes them to another
(`outbound`); a one-way end has only one of them. A channel carries whole
messages, so there is no framing: send(obj) gathers the chunks of
ForkingPickler.dumps(obj) into the channel (_message._dumps_for_channel),
and recv() unpickles a large message where it lies in shared memory.

Readiness. fileno() is a descriptor that polls readable while a message
waits (or the peer is gone), so select() and wait() work. For a Pipe end it
is one end of a Unix socket pair, as with the stdlib (so send_handle and
raw bytes written into one end arrive at the other): the channel's writers
ring the peer socket and its readers clear it (_attach_sockets). A queue's
ends have a doorbell instead.

Closing. close() wakes the threads blocked on the end with OSError('handle
is closed'). A channel's shared memory goes when its last end closes, so
every process closes the ends it still holds when it exits
(_close_open_channel_connections), last of its exit work.

Pickling. An end travels as its channels' names plus tickets that keep
its place while in transit; a Pipe end's socket travels as descriptors.
A dead peer reads as end of file.
"""

import os
import socket
import threading
import weakref

from . import util
from .connection import Connection, _copy_message, _directions
from .context import reduction
from ._message import _dumps_for_channel, _unpickle_message

__all__ = []  # private: reached through multiprocessing.connection


class _ChannelConnection(Connection):
    """A Connection over mphost channels: messages from `inbound`, to
    `outbound` (None for the direction an end does not have). `_handle` is
    the first of them (None once closed)."""

    def __init__(self, inbound, outbound, readable=True, writable=True):
        self._readable, self._writable = _directions(readable, writable)
        self._inbound = inbound if readable else None
        self._outbound = outbound if writable else None
        self._handle = self._inbound or self._outbound
        _open_channel_connections.add(self)

    def fileno(self):
        handle = self._handle
        if handle is None:
            self._refuse(True)
        return handle.fileno()

    def _close(self, _handle):
        # Threads blocked on this end (recv, poll, a send waiting for room)
        # wake with OSError('handle is closed'); at exit they are left
        # waiting, as the stdlib leaves a thread blocked on a closed pipe.
        channels = (self._inbound, self._outbound)
        self._inbound = self._outbound = None
        wake = not util.is_exiting()
        for channel in channels:
            if channel is not None:
                channel.close(wake)

    # send() and recv() are the hot path: the channel attribute is None
    # exactly when the end is closed or does not go that way.

    def send(self, obj):
        """Send a picklable object: ForkingPickler.dumps(obj), gathered
        into the channel."""
        outbound = self._outbound
        if outbound is None:
            self._refuse(False)
        outbound.send(_dumps_for_channel(obj))

    def recv(self):
        """Receive one pickled object; a large message is unpickled where
        it lies in shared memory (the unpickler copies what it keeps)."""
        inbound = self._inbound
        if inbound is None or not self._readable:
            self._refuse(True)
        return _unpickle_message(inbound.recv(None, True))

    def send_bytes(self, buf, offset=0, size=None):
        # A whole bytes object (an executor's wake-up, a pickle made by the
        # caller) goes as it is; slices and other buffers take the checks.
        outbound = self._outbound
        if outbound is not None and type(buf) is bytes and offset == 0 and size is None:
            outbound.send(buf)
        else:
            Connection.send_bytes(self, buf, offset, size)

    def recv_bytes(self, maxlength=None):
        inbound = self._inbound
        if inbound is None or maxlength is not None or not self._readable:
            return Connection.recv_bytes(self, maxlength)
        return inbound.recv()

    def _send_bytes(self, buf):
        self._outbound.send(buf)

    def _recv_bytes(self, maxsize=None):
        data = self._inbound.recv()
        return data if maxsize is None or len(data) <= maxsize else None

    def _recv_bytes_into(self, view, offset):
        return _copy_message(self._inbound.recv(), view, offset)

    def _poll(self, timeout):
        return self._inbound.poll(timeout)

    def __reduce__(self):
        # Here rather than only in ForkingPickler's table, so that any
        # pickler (cloudpickle, loky's) hands channel ends over correctly.
        return _reduce_channel_connection(self)


def _asked_directly(obj):
    """True for an end wait() must ask with poll(0): a channel end without a
    socket, whose doorbell follows other processes a wake-up late."""
    if not isinstance(obj, _ChannelConnection):
        return False
    inbound = obj._inbound
    return inbound is not None and inbound.socket_fds() is None


#
# Pipe
#

def _channel_pipe(duplex, keep_ring=True):
    """Pipe(duplex): one channel per direction, each end with a socket.

    keep_ring=False (a queue's one-way pair, whose two ends always travel
    together): the reading end keeps no duplicate of the writers' socket;
    when it arms its descriptor it rings through the writing end's socket,
    which its process holds too. Three descriptors become two, as a stock
    Queue's pipe."""
    import _mphost

    def channel_pair():
        reader = _mphost.Channel.create(unbounded=True, role='reader')
        return reader, _mphost.Channel.open(reader.name, 'writer', reader.hand_over('writer'))

    forward, forward_writer = channel_pair()
    if not duplex:
        reader, writer = _attach_sockets(forward, forward_writer, keep_ring)
        return (_ChannelConnection(reader, None, writable=False),
                _ChannelConnection(None, writer, readable=False))
    backward, backward_writer = channel_pair()
    first, second = _attach_sockets(forward, backward)
    return _ChannelConnection(first, backward_writer), _ChannelConnection(second, forward_writer)


def _attach_sockets(first, second, keep_ring=True):
    # `first` gets socket a, `second` socket b, of one socket pair. A
    # channel's writers ring its readers' socket by writing a marker into
    # the peer socket: first's channel through b, second's (when it reads)
    # through a. A reading end also keeps a duplicate of its peer until its
    # descriptor is first asked for (then it rings itself if a message is
    # already waiting, and lets the duplicate go, so that its socket reads
    # end of file once every copy of the peer is gone, as a stock Pipe's),
    # unless keep_ring is false (a queue's pair, see _channel_pipe).
    a, b = socket.socketpair()
    a, b = a.detach(), b.detach()
    second_reads = second.role != 'writer'
    owned = [a, b]
    try:
        first.ring_through(b)
        if second_reads:
            second.ring_through(a)
        ring_b = -1
        if keep_ring or second_reads:
            ring_b = os.dup(b)
            owned.append(ring_b)
        ring_a = -1
        if second_reads:
            ring_a = os.dup(a)
            owned.append(ring_a)
        first.use_socket(a, ring_b)
        owned = [fd for fd in owned if fd not in (a, ring_b)]
        second.use_socket(b, ring_a)
        owned = []
    finally:
        for fd in owned:
            os.close(fd)
    return first, second


#
# Closing what is still open when the process exits
#

# Channel ends still open in this process. A forked child, which inherits
# the parent's ends, registers the same clean-up for itself.
_open_channel_connections = weakref.WeakSet()


def _close_open_channel_connections():
    """Close every channel end still open here: at exit, after children
    are joined and queue feeders flushed."""
    # A process ends its multiprocessing work before it joins its non-daemon
    # threads (a child's _bootstrap, like the stdlib's), and those threads
    # may still use their connections: then the ends are closed by a last
    # non-daemon thread, once the others are done.
    me = threading.current_thread()
    busy = [t for t in threading.enumerate()
            if t is not me and not t.daemon and t.is_alive()]
    if not busy:
        _close_now()
        return
    threading.Thread(target=_close_after, args=(busy,),
                     name='mphost-close-connections').start()


def _close_after(threads):
    for t in threads:
        t.join()
    _close_now()


def _close_now():
    conns = list(_open_channel_connections)
    # Tickets this process handed out and nobody took (a child terminated
    # before it started) would keep their channels alive: withdraw them first.
    for conn in conns:
        for channel in (conn._inbound, conn._outbound):
            if channel is not None:
                channel.withdraw_hand_overs()
    for conn in conns:
        conn.close()


def _register_channel_cleanup(_obj=None):
    util.Finalize(None, _close_open_channel_connections, exitpriority=-1000)


class _ChannelCleanupOwner:
    pass


_channel_cleanup_owner = _ChannelCleanupOwner()
_register_channel_cleanup()
util.register_after_fork(_channel_cleanup_owner, _register_channel_cleanup)


#
# Pickling an end
#

def _reduce_channel_connection(conn):
    conn._check_closed()
    ends = tuple(None if channel is None else (channel.name, channel.hand_over(role))
                 for channel, role in ((conn._inbound, 'reader'), (conn._outbound, 'writer')))
    sockets = conn._handle.socket_fds()
    if sockets is not None:
        watch, ring = sockets
        sockets = (reduction.DupFd(watch), None if ring < 0 else reduction.DupFd(ring))
    return _rebuild_channel_connection, ends + (conn.readable, conn.writable, sockets)


def _rebuild_channel_connection(inbound, outbound, readable, writable, sockets=None):
    import _mphost
    inbound, outbound = (None if end is None else _mphost.Channel.open(end[0], role, end[1])
                         for end, role in ((inbound, 'reader'), (outbound, 'writer')))
    if sockets is not None:
        watch = sockets[0].detach()
        ring = -1 if sockets[1] is None else sockets[1].detach()
        try:
            (inbound or outbound).use_socket(watch, ring)
        except BaseException:
            os.close(watch)
            if ring >= 0:
                os.close(ring)
            raise
    return _ChannelConnection(inbound, outbound, readable, writable)
