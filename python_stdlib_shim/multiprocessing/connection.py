"""Connections, Listener/Client and waiting on several objects at once.

A Connection carries whole messages (byte strings, or pickled objects) in
both directions. The public methods live in ``_ConnectionBase`` and rest on
four transport methods a subclass provides:

    _send_bytes(view)         send one message (a byte memoryview)
    _recv_bytes(maxsize)      one whole message as a bytes-like object, or
                              None when it cannot be taken: longer than
                              maxsize, or announced by a corrupt length
    _poll(timeout)            True once a message (or end of file) is there
    _close()                  release the transport

and one it may refine: ``_recv_bytes_into(view, offset)``, the message's
length once it is in view[offset:], the message itself when it does not
fit, or None as above (the generic one receives, then copies). The base
class turns those outcomes into the stdlib's errors in one place. ``_handle`` is None once the connection is closed;
fileno() is a descriptor that select/poll see readable when a message is
there (so that wait() works on every transport).

The transports:

    Connection            here: a socket or pipe descriptor, in the stdlib's
                          framing, byte for byte, so that a stock python3
                          process can be the peer. The framing is the core's
                          (ipc/stream_frame.hpp, through _mphost.stream_*).
    _ChannelConnection    _channel_connection.py: mphost's shared-memory
                          channels (every Pipe, a queue's ends).

What a message holds (ForkingPickler.dumps(obj)) is made and read back in
_message.py. Listener and Client connect processes over Unix or TCP
sockets and, given an authkey, run the stdlib's HMAC handshake
(_challenge.py) in both directions before any message is unpickled.
"""

import math
import os
import select
import socket
import time

from _mphost import stream_recv as _stream_recv, stream_recv_into as _stream_recv_into
from _mphost import stream_send as _stream_send

from . import util
from .context import AuthenticationError, BufferTooShort, reduction  # noqa: F401 (API)
from ._challenge import (  # noqa: F401 (API)
    CHALLENGE, FAILURE, MESSAGE_LENGTH, WELCOME, _authenticated, answer_challenge,
    deliver_challenge)
from ._message import _dumps, _dumps_for_channel, _Encoder, _unpickle_message  # noqa: F401

__all__ = ['Client', 'Listener', 'Pipe', 'wait']

BUFSIZE = 8192
# Seconds a client keeps trying to reach a listener (kept for the API).
CONNECTION_TIMEOUT = 20.

default_family = 'AF_UNIX'


def _init_timeout(timeout=CONNECTION_TIMEOUT):
    return time.monotonic() + timeout


def _check_timeout(t):
    return time.monotonic() > t


#
# Addresses: one table of the families a Listener or Client can use
#

def _fresh_unix_path():
    # In this process's private 0700 directory, under a name nobody can
    # guess; never in the abstract namespace.
    return os.path.join(util.get_temp_dir(), 'listener-%s' % os.urandom(10).hex())


# family name -> (socket family, maker of an address to listen on)
_FAMILIES = {
    'AF_INET': (socket.AF_INET, lambda: ('localhost', 0)),
    'AF_UNIX': (socket.AF_UNIX, _fresh_unix_path),
}
families = list(_FAMILIES)


def arbitrary_address(family):
    """A fresh address of the given family for a Listener."""
    entry = _FAMILIES.get(family)
    if entry is None:
        raise ValueError('unrecognized family')
    return entry[1]()


def address_type(address):
    """The family ('AF_INET', 'AF_UNIX') that an address belongs to."""
    kind = type(address)
    if kind is tuple:
        return 'AF_INET'
    if kind is str:
        # A Windows named pipe is recognised, and then refused by the caller.
        return 'AF_PIPE' if address.startswith('\\\\') else 'AF_UNIX'
    if util.is_abstract_socket_namespace(address):
        return 'AF_UNIX'
    raise ValueError('address type of %r unrecognized' % (address,))


def _family_for(address, family):
    """The family to use: the one asked for, else the address's, else the
    default (no address given); ValueError for one this platform lacks."""
    if not family:
        family = address_type(address) if address else default_family
    if family not in _FAMILIES:
        raise ValueError('Family %s is not recognized.' % family)
    return family


def _blocking_socket(family):
    # Blocking whatever socket.setdefaulttimeout() says.
    sock = socket.socket(_FAMILIES[family][0])
    sock.setblocking(True)
    return sock


def _checked_authkey(authkey):
    if authkey is None or isinstance(authkey, bytes):
        return authkey
    raise TypeError('authkey should be a byte string')


#
# The public API, over a pluggable transport
#

def _directions(readable, writable):
    """(readable, writable) as booleans; a connection goes at least one way."""
    if readable or writable:
        return bool(readable), bool(writable)
    raise ValueError('at least one of `readable` and `writable` must be True')


def _byte_slice(buf, offset, size):
    """buf[offset:offset + size] counted in bytes, as a flat byte view
    (send_bytes' arguments, checked the way the stdlib checks them)."""
    view = memoryview(buf)
    if view.itemsize != 1 or view.ndim != 1:
        view = view.cast('B')
    if offset == 0 and size is None:
        return view
    total = view.nbytes
    if offset < 0:
        raise ValueError('offset is negative')
    if offset > total:
        raise ValueError('buffer length < offset')
    if size is None:
        return view[offset:]
    if size < 0:
        raise ValueError('size is negative')
    if offset + size > total:
        raise ValueError('buffer length < offset + size')
    return view[offset:offset + size]


class _ConnectionBase:
    _handle = None

    def __init__(self, handle, readable=True, writable=True):
        fd = handle.__index__()  # AttributeError without one, as the stdlib
        if fd < 0:
            raise ValueError('invalid handle')
        self._readable, self._writable = _directions(readable, writable)
        self._handle = fd

    def __del__(self):
        self.close()

    def _refuse(self, reading):
        """Raise the OSError of a call this connection cannot serve."""
        if self._handle is None:
            raise OSError('handle is closed')
        raise OSError('connection is write-only' if reading else 'connection is read-only')

    def _open_for(self, reading):
        """Check that the connection is open and goes that way."""
        if self._handle is None or not (self._readable if reading else self._writable):
            self._refuse(reading)

    def _check_closed(self):
        if self._handle is None:
            self._refuse(True)

    def _taken(self, outcome):
        """What a receive gave (see the transport methods above), or the
        stdlib's error for a message that was not taken."""
        if outcome is None:
            # Where the next message starts is lost: the end keeps only its
            # sending half, and an end with no half left is closed.
            self._readable = False
            if not (self._readable or self._writable):
                self.close()
            raise OSError('bad message length')
        return outcome

    @property
    def closed(self):
        """True if the connection is closed."""
        return self._handle is None

    @property
    def readable(self):
        """True if the connection is readable."""
        return self._readable

    @property
    def writable(self):
        """True if the connection is writable."""
        return self._writable

    def fileno(self):
        """The descriptor (or doorbell) that becomes readable with a message."""
        self._check_closed()
        return self._handle

    def close(self):
        """Close the connection."""
        handle, self._handle = self._handle, None
        if handle is not None:
            self._close(handle)

    def send_bytes(self, buf, offset=0, size=None):
        """Send the bytes of a bytes-like object (optionally a slice of it)."""
        self._open_for(False)
        self._send_bytes(_byte_slice(buf, offset, size))

    def send(self, obj):
        """Send a picklable object."""
        self._open_for(False)
        self._send_bytes(_dumps(obj))

    def recv_bytes(self, maxlength=None):
        """Receive one message as bytes; OSError if longer than maxlength."""
        self._open_for(True)
        if (maxlength or 0) < 0:
            raise ValueError('negative maxlength')
        data = self._taken(self._recv_bytes(maxlength))
        return data if type(data) is bytes else bytes(data)

    def recv_bytes_into(self, buf, offset=0):
        """Receive one message into a writable buffer at byte `offset`.

        Returns the message's length. A message that does not fit raises
        BufferTooShort, whose args[0] is the whole message.
        """
        self._open_for(True)
        with memoryview(buf) as view:
            if not 0 <= offset <= view.nbytes:
                raise ValueError('negative offset' if offset < 0 else 'offset too large')
            if view.format == 'B' and view.ndim == 1:
                got = self._recv_bytes_into(view, offset)
            else:
                with view.cast('B') as flat:
                    got = self._recv_bytes_into(flat, offset)
        if type(self._taken(got)) is int:
            return got
        raise BufferTooShort(got)

    def _recv_bytes_into(self, view, offset):
        # Generic version: receive, then copy. Transports may do better.
        data = self._recv_bytes()
        return None if data is None else _copy_message(data, view, offset)

    def recv(self):
        """Receive one pickled object."""
        self._open_for(True)
        return _unpickle_message(self._taken(self._recv_bytes()))

    def poll(self, timeout=0.0):
        """True if there is something to read (waits up to `timeout`
        seconds; None waits forever)."""
        self._open_for(True)
        return self._poll(timeout)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, exc_tb):
        self.close()


def _copy_message(data, view, offset):
    """Put a received message into view[offset:] and return its length; the
    message, as bytes, when it does not fit (for BufferTooShort)."""
    end = offset + len(data)
    if end > view.nbytes:
        return data if type(data) is bytes else bytes(data)
    view[offset:end] = data
    return end - offset


def _poll_ms(timeout):
    """A timeout in seconds (None: forever) as poll() takes it."""
    if timeout is None:
        return None
    return math.ceil(timeout * 1000) if timeout > 0 else 0


#
# The socket (or pipe) transport. Its framing is the core's stream codec
# (ipc/stream_frame.hpp), which reads and writes whole messages with the
# GIL released: this class only says which descriptor and what to do with
# the outcome.
#

# Longest message announced by the short (4-byte) prefix. The stdlib's
# limit; a test may lower it to see the long form.
_MAX_SHORT = 0x7fffffff

_POLLIN = select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLERR | select.POLLNVAL


class Connection(_ConnectionBase):
    """A connection over a socket or pipe descriptor, in the stdlib's framing."""

    _poller = None

    def _close(self, fd, _os_close=os.close):
        _os_close(fd)

    def _send_bytes(self, buf):
        _stream_send(self._handle, buf, _MAX_SHORT)

    def send(self, obj):
        """Send a picklable object."""
        self._open_for(False)
        # The pickle's large payloads go out from where they lie, unjoined.
        _stream_send(self._handle, _dumps_for_channel(obj), _MAX_SHORT)

    def _recv_bytes(self, maxsize=None):
        return _stream_recv(self._handle, maxsize)

    def _recv_bytes_into(self, view, offset):
        return _stream_recv_into(self._handle, view, offset)

    def _poll(self, timeout):
        if self._poller is None:
            self._poller = select.poll()
            self._poller.register(self._handle, _POLLIN)
        return bool(self._poller.poll(_poll_ms(timeout)))


def Pipe(duplex=True):
    """A pair (conn1, conn2) of connected Connections.

    duplex: both ends read and write. Otherwise conn1 only reads and conn2
    only writes. Messages travel through mphost's shared-memory channels
    (see _channel_connection), not through the kernel; each end's fileno()
    is one end of a Unix socket pair, as with the stdlib.
    """
    ends = _channel._channel_pipe(duplex)
    _label_channels(ends, 'Pipe')
    return ends


def _label_channels(conns, label):
    """Say what the channels behind `conns` are, for mphost.state() and the
    inspector (a few bytes in each channel's header)."""
    import _mphost
    for conn in conns:
        inbound = getattr(conn, '_inbound', None)
        if inbound is not None:
            _mphost.state_label_channel(inbound.name, label)


#
# Listener and Client
#

class SocketListener:
    """A listening socket whose accept() gives Connections."""

    def __init__(self, address, family, backlog=1):
        sock = _blocking_socket(family)
        try:
            if family == 'AF_INET':
                # Lets a restarted server reuse its TCP port at once.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(backlog)
            self._address = sock.getsockname()
        except BaseException:
            sock.close()
            raise
        self._socket = sock
        self._last_accepted = None
        self._unlink = None
        if _leaves_a_file(address, family):
            # The socket file goes with the listener (or at exit).
            self._unlink = util.Finalize(self, os.unlink, args=(address,), exitpriority=0)

    def accept(self):
        sock, peer = self._socket.accept()
        self._last_accepted = peer
        sock.setblocking(True)
        return Connection(sock.detach())

    def close(self):
        try:
            self._socket.close()
        finally:
            unlink, self._unlink = self._unlink, None
            if unlink is not None:
                try:
                    unlink()
                except FileNotFoundError:
                    pass


def _leaves_a_file(address, family):
    # A Unix socket bound outside the abstract namespace is a file.
    return family == 'AF_UNIX' and not util.is_abstract_socket_namespace(address)


def SocketClient(address):
    """A Connection to the listener at `address`."""
    sock = _blocking_socket(address_type(address))
    try:
        sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return Connection(sock.detach())


class Listener:
    """A server socket that accepts Connections, optionally authenticated.

    With an authkey, each accepted connection must pass the challenge (in
    both directions) before accept() returns it.
    """

    def __init__(self, address=None, family=None, backlog=1, authkey=None):
        family = _family_for(address, family)
        self._authkey = _checked_authkey(authkey)
        self._listener = SocketListener(address or arbitrary_address(family), family, backlog)

    def accept(self):
        """Wait for a connection and return it (authenticated if needed)."""
        listener = self._listener
        if listener is None:
            raise OSError('listener is closed')
        conn = listener.accept()
        if self._authkey is None:
            return conn
        return _authenticated(conn, self._authkey, challenger_first=True)

    def close(self):
        """Stop listening (and remove a Unix socket file)."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()

    @property
    def address(self):
        return self._listener._address

    @property
    def last_accepted(self):
        return self._listener._last_accepted

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, exc_tb):
        self.close()


def Client(address, family=None, authkey=None):
    """A Connection to the Listener at `address` (authenticated if authkey)."""
    _family_for(address, family)
    authkey = _checked_authkey(authkey)
    conn = SocketClient(address)
    if authkey is None:
        return conn
    return _authenticated(conn, authkey, challenger_first=False)


#
# xmlrpc serialization (managers' serializer='xmlrpclib')
#

class ConnectionWrapper:
    """A connection that serializes messages with given dumps/loads."""

    def __init__(self, conn, dumps, loads):
        self._conn = conn
        self._dumps = dumps
        self._loads = loads
        for name in ('fileno', 'close', 'poll', 'recv_bytes', 'send_bytes'):
            setattr(self, name, getattr(conn, name))

    def send(self, obj):
        self._conn.send_bytes(self._dumps(obj))

    def recv(self):
        return self._loads(self._conn.recv_bytes())

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, exc_tb):
        self._conn.close()


def _xml_dumps(obj):
    import xmlrpc.client
    return xmlrpc.client.dumps((obj,), None, None, None, 1).encode('utf-8')


def _xml_loads(data):
    import xmlrpc.client
    (obj,), _method = xmlrpc.client.loads(data.decode('utf-8'))
    return obj


class XmlListener(Listener):
    def accept(self):
        return ConnectionWrapper(Listener.accept(self), _xml_dumps, _xml_loads)


def XmlClient(*args, **kwds):
    return ConnectionWrapper(Client(*args, **kwds), _xml_dumps, _xml_loads)


#
# Waiting on several objects
#

def _descriptor(obj):
    """The descriptor wait() watches for obj (an int, or anything with fileno())."""
    if isinstance(obj, int):
        fd = obj
    else:
        try:
            fd = int(obj.fileno())
        except (AttributeError, TypeError, ValueError):
            raise ValueError('Invalid file object: {!r}'.format(obj)) from None
    if fd < 0:
        raise ValueError('Invalid file descriptor: {}'.format(fd))
    return fd


def _split_ready_ends(entries):
    """(channel ends among entries with a message, or end of file, waiting;
    the other entries), or (None, entries) when no end is ready. Asked in
    shared memory: no system call, nothing registered (a dead peer is left
    to the descriptors)."""
    end_type = _channel._ChannelConnection
    found = None
    for index, obj in enumerate(entries):
        inbound = getattr(obj, '_inbound', None)
        if inbound is not None and type(obj) is end_type and inbound.ready():
            if found is None:
                found, rest = [], entries[:index]
            found.append(obj)
        elif found is not None:
            rest.append(obj)
    return (None, entries) if found is None else (found, rest)


def wait(object_list, timeout=None):
    """Wait until some objects in object_list are ready; return those.

    The objects are connections, queue readers, sockets, process sentinels
    (descriptors) or anything with fileno(). An empty list is returned
    when `timeout` seconds pass first.
    """
    entries = object_list if type(object_list) is list else list(object_list)
    # A busy process (an executor's manager thread with a result waiting)
    # finds a channel end ready in shared memory; the other objects are
    # then only looked at, never waited for.
    found, rest = _split_ready_ends(entries)
    if found is None:
        return _watch(entries, timeout)
    if rest:
        found.extend(_watch(rest, 0))
    return found


def _watch(entries, timeout):
    # A Pipe end's descriptor (a queue's reader is one too) is readable
    # exactly when poll(0) is True (its channel rings and clears it
    # synchronously), so poll() answers for it as for any descriptor. A
    # channel end without a socket has a doorbell that follows other
    # processes a wake-up late: such ends are asked directly, and their
    # descriptors only wake the wait.
    poller = select.poll()
    watchers = {}
    asked = []
    for obj in entries:
        fd = _descriptor(obj)
        if _channel._asked_directly(obj):
            asked.append(obj)
        elif fd in watchers:
            watchers[fd].append(obj)
            continue
        else:
            watchers[fd] = [obj]
        poller.register(fd, _POLLIN)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        ready = [obj for obj in asked if obj._inbound.poll(0)]
        events = poller.poll(0 if ready else _poll_ms(timeout))
        if events and asked and not ready:
            ready = [obj for obj in asked if obj._inbound.poll(0)]
        for fd, _mask in events:
            ready.extend(watchers.get(fd, ()))
        if ready:
            return ready
        if deadline is not None:
            timeout = deadline - time.monotonic()
            if timeout <= 0:
                return []


#
# Pickling connections: the receiving process gets a duplicate descriptor
# (inherited when it is a child being started, else through resource_sharer).
#

def reduce_connection(conn):
    return rebuild_connection, (reduction.DupFd(conn.fileno()), conn.readable, conn.writable)


def rebuild_connection(df, readable, writable):
    return Connection(df.detach(), readable, writable)


reduction.register(Connection, reduce_connection)


#
# The channel transport. Its module subclasses Connection, so it comes
# last; its names stay reachable here, where they always were.
#

from . import _channel_connection as _channel  # noqa: E402

_CHANNEL_NAMES = frozenset({
    '_ChannelConnection', '_open_channel_connections', '_close_open_channel_connections',
    '_reduce_channel_connection', '_rebuild_channel_connection', '_attach_sockets',
})


def __getattr__(name):
    if name in _CHANNEL_NAMES:
        return getattr(_channel, name)
    raise AttributeError('module %r has no attribute %r' % (__name__, name))
