"""Connections, Listener/Client and waiting on several objects at once.

A Connection carries whole messages (byte strings, or pickled objects) in
both directions. The public methods live in ``_ConnectionBase`` and rest on
four transport methods a subclass provides:

    _send_bytes(view)         send one message (a byte memoryview)
    _recv_bytes(maxsize)      one whole message as a bytes-like object, or
                              None when it is longer than maxsize
    _poll(timeout)            True once a message (or end of file) is there
    _close()                  release the transport

and one it may refine: ``_recv_bytes_into(view, offset)`` (the generic one
receives, then copies). ``_handle`` is what fileno() returns: a descriptor
that select/poll see readable when a message is there (so that wait()
works on every transport).

``Connection`` is the transport over a descriptor (a socket or a pipe). Its
framing is the stdlib's, byte for byte, so a stock python3 process can be
the peer: a signed big-endian 32-bit length, then the payload; a payload of
2 GiB or more is announced by a length of -1 followed by an unsigned 64-bit
length.

Listener and Client connect processes over Unix or TCP sockets and, given an
authkey, run the stdlib's HMAC challenge in both directions before any
message is unpickled.
"""

import copyreg
import itertools
import math
import os
import pickle
import select
import selectors
import socket
import struct
import threading
import time
import weakref

from . import util
from .context import AuthenticationError, BufferTooShort, reduction

_ForkingPickler = reduction.ForkingPickler

__all__ = ['Client', 'Listener', 'Pipe', 'wait']

BUFSIZE = 8192
# Seconds a client keeps trying to reach a listener (kept for the API).
CONNECTION_TIMEOUT = 20.

families = ['AF_INET', 'AF_UNIX']
default_family = 'AF_UNIX'

_mmap_counter = itertools.count()

#
# Timeouts (kept for code that imports these helpers)
#


def _init_timeout(timeout=CONNECTION_TIMEOUT):
    return time.monotonic() + timeout


def _check_timeout(t):
    return time.monotonic() > t


#
# Addresses
#

def arbitrary_address(family):
    """A fresh address of the given family for a Listener.

    Unix socket files go in this process's private 0700 directory under a
    random name; they never use the abstract namespace.
    """
    if family == 'AF_INET':
        return ('localhost', 0)
    if family == 'AF_UNIX':
        return os.path.join(util.get_temp_dir(),
                            'listener-%d-%s' % (next(_mmap_counter), os.urandom(8).hex()))
    raise ValueError('unrecognized family')


def _validate_family(family):
    if family not in families:
        raise ValueError('Family %s is not recognized.' % family)


def address_type(address):
    """The family ('AF_INET', 'AF_UNIX') that an address belongs to."""
    if type(address) == tuple:
        return 'AF_INET'
    if type(address) is str and address.startswith('\\\\'):
        return 'AF_PIPE'
    if type(address) is str or util.is_abstract_socket_namespace(address):
        return 'AF_UNIX'
    raise ValueError('address type of %r unrecognized' % (address,))


#
# The public API, over a pluggable transport
#

class _ConnectionBase:
    _handle = None

    def __init__(self, handle, readable=True, writable=True):
        handle = handle.__index__()
        if handle < 0:
            raise ValueError('invalid handle')
        if not readable and not writable:
            raise ValueError('at least one of `readable` and `writable` must be True')
        self._handle = handle
        self._readable = readable
        self._writable = writable

    def __del__(self):
        if self._handle is not None:
            self._close()

    def _check_closed(self):
        if self._handle is None:
            raise OSError('handle is closed')

    def _check_readable(self):
        if not self._readable:
            raise OSError('connection is write-only')

    def _check_writable(self):
        if not self._writable:
            raise OSError('connection is read-only')

    def _bad_message_length(self):
        # The stream is out of step now: a duplex connection stops reading,
        # a read-only one is closed.
        if self._writable:
            self._readable = False
        else:
            self.close()
        raise OSError('bad message length')

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
        if self._handle is not None:
            try:
                self._close()
            finally:
                self._handle = None

    def send_bytes(self, buf, offset=0, size=None):
        """Send the bytes of a bytes-like object (optionally a slice of it)."""
        self._check_closed()
        self._check_writable()
        m = memoryview(buf)
        if m.itemsize > 1:
            m = m.cast('B')
        n = m.nbytes
        if offset < 0:
            raise ValueError('offset is negative')
        if n < offset:
            raise ValueError('buffer length < offset')
        if size is None:
            size = n - offset
        elif size < 0:
            raise ValueError('size is negative')
        elif offset + size > n:
            raise ValueError('buffer length < offset + size')
        self._send_bytes(m[offset:offset + size])

    def send(self, obj):
        """Send a picklable object."""
        self._check_closed()
        self._check_writable()
        self._send_bytes(_dumps(obj))

    def recv_bytes(self, maxlength=None):
        """Receive one message as bytes; OSError if longer than maxlength."""
        self._check_closed()
        self._check_readable()
        if maxlength is not None and maxlength < 0:
            raise ValueError('negative maxlength')
        buf = self._recv_bytes(maxlength)
        if buf is None:
            self._bad_message_length()
        return buf if type(buf) is bytes else bytes(buf)

    def recv_bytes_into(self, buf, offset=0):
        """Receive one message into a writable buffer at byte `offset`.

        Returns the message's length. A message that does not fit raises
        BufferTooShort, whose args[0] is the whole message.
        """
        self._check_closed()
        self._check_readable()
        with memoryview(buf) as m:
            bytesize = m.nbytes
            if offset < 0:
                raise ValueError('negative offset')
            if offset > bytesize:
                raise ValueError('offset too large')
            target = m.cast('B') if m.format != 'B' or m.ndim != 1 else m
            try:
                return self._recv_bytes_into(target, offset)
            finally:
                if target is not m:
                    target.release()

    def _recv_bytes_into(self, view, offset):
        # Generic version: receive, then copy. Transports may do better.
        data = self._recv_bytes()
        size = len(data)
        if view.nbytes < offset + size:
            raise BufferTooShort(bytes(data))
        view[offset:offset + size] = data
        return size

    def recv(self):
        """Receive one pickled object."""
        self._check_closed()
        self._check_readable()
        return _unpickle_message(self._recv_bytes())

    def poll(self, timeout=0.0):
        """True if there is something to read (waits up to `timeout`
        seconds; None waits forever)."""
        self._check_closed()
        self._check_readable()
        return self._poll(timeout)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, exc_tb):
        self.close()


class _Encoder:
    """The pickler `send()` and `put()` use: ForkingPickler's output, byte
    for byte (same protocol, same reducers), from a pickler kept per thread.

    Building a ForkingPickler copies the whole reducer table, which costs
    several times more than pickling a small message; this one is built
    once per thread and rebuilt when reducers are registered.

    The pickler writes into a list of chunks instead of one growing buffer:
    the C pickler hands a payload of 64 KiB or more (a bytes object, the
    bytes of a numpy array) to write() as it is, between two frames, so a
    large payload is referenced here, not copied. `parts(obj)` returns
    those chunks, and a channel copies them once, straight into shared
    memory; `dumps(obj)` joins them.
    """

    __slots__ = ('pickler', 'chunks', 'key', 'busy')

    def __init__(self):
        self.pickler = None
        self.chunks = []
        self.key = None
        self.busy = False

    def parts(self, obj):
        key = (len(copyreg.dispatch_table), len(_ForkingPickler._extra_reducers),
               _ForkingPickler._generation)
        if key != self.key or self.pickler is None:
            table = copyreg.dispatch_table.copy()
            table.update(_ForkingPickler._extra_reducers)
            sink = _Sink()
            sink.write = self.chunks.append
            self.pickler = pickle.Pickler(sink, _PROTOCOL)
            self.pickler.dispatch_table = table
            self.key = key
        chunks = self.chunks
        self.busy = True
        try:
            self.pickler.dump(obj)
            taken = chunks[:]
        finally:
            chunks.clear()
            self.pickler.clear_memo()
            self.busy = False
        return taken

    def dumps(self, obj):
        chunks = self.parts(obj)
        return chunks[0] if len(chunks) == 1 else b''.join(chunks)


class _Sink:
    __slots__ = ('write',)


# The protocol ForkingPickler.dumps uses by default.
_PROTOCOL = pickle.DEFAULT_PROTOCOL
_encoders = threading.local()


def _thread_encoder():
    """This thread's encoder, or None while it is busy (a finalizer that
    sends while the thread pickles)."""
    try:
        encoder = _encoders.encoder
    except AttributeError:
        encoder = _encoders.encoder = _Encoder()
    return None if encoder.busy else encoder


def _dumps(obj):
    """ForkingPickler.dumps(obj), with a per-thread reusable pickler."""
    encoder = _thread_encoder()
    if encoder is None:
        return _ForkingPickler.dumps(obj)
    return encoder.dumps(obj)


def _dumps_for_channel(obj):
    """The message `send(obj)` or `put(obj)` writes on a channel.

    The message is ForkingPickler.dumps(obj), exactly, so that every reader
    takes it: recv() or get(), and equally recv_bytes() followed by any
    unpickler, as on the stdlib, where send(obj) is
    send_bytes(ForkingPickler.dumps(obj)). Only its delivery differs: a
    pickle with large payloads is returned as the list of its chunks, which
    the channel gathers into one message without joining them first.
    """
    encoder = _thread_encoder()
    if encoder is None:
        return _ForkingPickler.dumps(obj)
    chunks = encoder.parts(obj)
    return chunks[0] if len(chunks) == 1 else chunks


def _unpickle_message(data):
    """Unpickle a received message; damaged data gives UnpicklingError.

    A truncated pickle would otherwise raise EOFError, which callers take
    for "the peer is gone"; garbage would raise whatever the unpickler
    tripped on. Errors raised by the objects' own reconstructors pass
    through unchanged.
    """
    try:
        return _ForkingPickler.loads(data)
    except (pickle.UnpicklingError, EOFError, IndexError, struct.error) as exc:
        head = bytes(memoryview(data)[:16])
        raise pickle.UnpicklingError(
            'received a message of %d bytes that is not a valid pickle '
            '(starts with %r): %s' % (len(data), head, exc)) from exc
    except ValueError as exc:
        if 'pickle protocol' not in str(exc) and 'opcode' not in str(exc):
            raise
        raise pickle.UnpicklingError(
            'received a message of %d bytes that is not a valid pickle: %s'
            % (len(data), exc)) from exc


_HEADER = struct.Struct('!i')
_LONG_HEADER = struct.Struct('!Q')
_LONG_MARK = _HEADER.pack(-1)
_MAX_SHORT = 0x7fffffff
# Messages up to this size are read in one go into a bytes object; above
# it, storage grows as the data actually arrives (a corrupt length must not
# reserve gigabytes).
_DIRECT_READ = 1 << 20
_CHUNK = 1 << 24

_POLLIN = select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLERR | select.POLLNVAL


class Connection(_ConnectionBase):
    """A connection over a socket or pipe descriptor, in the stdlib's framing."""

    _poller = None

    def _close(self, _close=os.close):
        _close(self._handle)

    def _write_all(self, parts):
        fd = self._handle
        total = 0
        for part in parts:
            total += len(part)
        written = os.writev(fd, parts)
        while written < total:
            # A partial write (a signal, or a very large message): go on
            # from where it stopped.
            total -= written
            rest = []
            for part in parts:
                n = len(part)
                if written >= n:
                    written -= n
                    continue
                rest.append(memoryview(part)[written:] if written else part)
                written = 0
            parts = rest
            written = os.writev(fd, parts)

    def _send_bytes(self, buf):
        n = len(buf)
        if n > _MAX_SHORT:
            header = _LONG_MARK + _LONG_HEADER.pack(n)
        else:
            header = _HEADER.pack(n)
        if n:
            self._write_all([header, buf])
        else:
            self._write_all([header])

    def _read_into(self, view):
        # Fill `view` completely; end of file here is inside a message.
        fd = self._handle
        pos = 0
        end = len(view)
        while pos < end:
            n = os.readv(fd, [view[pos:]])
            if n == 0:
                raise OSError('got end of file during message')
            pos += n

    def _read_exact(self, size):
        """Exactly `size` bytes of the message being received."""
        if size == 0:
            return b''
        fd = self._handle
        if size <= _DIRECT_READ:
            data = os.read(fd, size)
            got = len(data)
            if got == size:
                return data
            if got == 0:
                raise OSError('got end of file during message')
            buf = bytearray(size)
            buf[:got] = data
            with memoryview(buf) as view:
                self._read_into(view[got:])
            return buf
        # Large message: grow the storage with the data that arrived.
        buf = bytearray()
        remaining = size
        while remaining:
            chunk = os.read(fd, min(remaining, _CHUNK))
            if not chunk:
                raise OSError('got end of file during message')
            buf += chunk
            remaining -= len(chunk)
        return buf

    def _recv_header(self):
        """The next message's length; EOFError at a clean end of stream."""
        fd = self._handle
        head = os.read(fd, 4)
        if len(head) != 4:
            if not head:
                raise EOFError
            rest = bytearray(4 - len(head))
            with memoryview(rest) as view:
                self._read_into(view)
            head += rest
        size, = _HEADER.unpack(head)
        if size == -1:
            size, = _LONG_HEADER.unpack(self._read_exact(8))
        elif size < 0:
            self._bad_message_length()
        return size

    def _recv_bytes(self, maxsize=None):
        size = self._recv_header()
        if maxsize is not None and size > maxsize:
            return None
        return self._read_exact(size)

    def _recv_bytes_into(self, view, offset):
        size = self._recv_header()
        if view.nbytes < offset + size:
            raise BufferTooShort(bytes(self._read_exact(size)))
        if size:
            self._read_into(view[offset:offset + size])
        return size

    def _poll(self, timeout):
        poller = self._poller
        if poller is None:
            poller = self._poller = select.poll()
            poller.register(self._handle, _POLLIN)
        if timeout is None:
            ms = None
        elif timeout <= 0:
            ms = 0
        else:
            ms = math.ceil(timeout * 1000)
        return bool(poller.poll(ms))


#
# Pipe
#

def Pipe(duplex=True):
    """A pair (conn1, conn2) of connected Connections.

    duplex: both ends read and write. Otherwise conn1 only reads and conn2
    only writes. Messages travel through mphost's shared-memory channels (two
    for a duplex pipe), not through the kernel. Each end's fileno() is one end
    of a Unix socket pair, as with the stdlib, so descriptors (send_handle)
    and raw bytes written into one end arrive at the other; the socket is
    also readable exactly when poll(0) is True, in every process (the
    channel's send and recv ring and clear it, see _attach_sockets).
    """
    import _mphost
    forward = _mphost.Channel.create(unbounded=True, role='reader')
    forward_w = _mphost.Channel.open(forward.name, 'writer', forward.hand_over('writer'))
    if duplex:
        backward = _mphost.Channel.create(unbounded=True, role='reader')
        backward_w = _mphost.Channel.open(backward.name, 'writer', backward.hand_over('writer'))
        first, second = _attach_sockets(forward, backward)
        return _ChannelConnection(first, backward_w), _ChannelConnection(second, forward_w)
    reader, writer = _attach_sockets(forward, forward_w)
    return (_ChannelConnection(reader, None, writable=False),
            _ChannelConnection(None, writer, readable=False))


def _attach_sockets(first, second):
    # `first` gets socket a, `second` socket b, of one socket pair. A
    # channel's writers ring its readers' socket by writing a marker into
    # the peer socket: first's channel through b, second's (when it reads)
    # through a. A reading end also keeps a duplicate of its peer until its
    # descriptor is first asked for (then it rings itself if a message is
    # already waiting, and lets the duplicate go, so that its socket reads
    # end of file once every copy of the peer is gone, as a stock Pipe's).
    a, b = socket.socketpair()
    a, b = a.detach(), b.detach()
    fds = [a, b]
    try:
        first.ring_through(b)
        if second.role != 'writer':
            second.ring_through(a)
        ring_b = os.dup(b)
        fds.append(ring_b)
        ring_a = os.dup(a) if second.role != 'writer' else -1
        if ring_a >= 0:
            fds.append(ring_a)
        first.use_socket(a, ring_b)
        fds = [b] + ([ring_a] if ring_a >= 0 else [])
        second.use_socket(b, ring_a)
        fds = []
    finally:
        for fd in fds:
            os.close(fd)
    return first, second


# Channel ends still open in this process. A channel's shared memory is
# removed when its last end closes, so every process closes what it still
# holds when it exits: last of all its exit work (after children are joined
# and queue feeders flushed). A forked child, which inherits the parent's
# ends, registers the same clean-up for itself.
_open_channel_connections = weakref.WeakSet()


def _close_open_channel_connections():
    # A process ends its multiprocessing work before it joins its non-daemon
    # threads (a child's _bootstrap, like the stdlib's), and those threads may
    # still use their connections: then the ends are closed by a last
    # non-daemon thread, once the others are done.
    me = threading.current_thread()
    busy = [t for t in threading.enumerate()
            if t is not me and not t.daemon and t.is_alive()]
    if busy:
        threading.Thread(target=_close_after, args=(busy,),
                         name='mphost-close-connections').start()
        return
    _close_now()


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


class _ChannelConnection(Connection):
    """A Connection over mphost channels: messages from `inbound`, to
    `outbound` (either may be None for a one-way end).

    A channel carries whole messages, so there is no framing; fileno() is a
    descriptor that polls readable while a message waits (or the peer is
    gone), usable with select() and wait(): for a Pipe end, a socket
    connected to the other end's (see Pipe); for a queue's ends, a doorbell.
    A dead peer reads as end of file.
    """

    def __init__(self, inbound, outbound, readable=True, writable=True):
        if not readable and not writable:
            raise ValueError('at least one of `readable` and `writable` must be True')
        self._inbound = inbound if readable else None
        self._outbound = outbound if writable else None
        self._handle = self._inbound or self._outbound
        self._readable = readable
        self._writable = writable
        _open_channel_connections.add(self)

    def fileno(self):
        self._check_closed()
        return self._handle.fileno()

    def _close(self):
        # Threads blocked on this end (recv, poll, a send waiting for room)
        # wake with OSError('handle is closed'); at exit they are left
        # waiting, as the stdlib leaves a thread blocked on a closed pipe.
        wake = not util.is_exiting()
        for channel in (self._inbound, self._outbound):
            if channel is not None:
                channel.close(wake)
        self._inbound = self._outbound = None

    def send(self, obj):
        """Send a picklable object: ForkingPickler.dumps(obj), gathered
        into the channel (see _dumps_for_channel)."""
        self._check_closed()
        self._check_writable()
        self._outbound.send(_dumps_for_channel(obj))

    def recv(self):
        """Receive one pickled object; a large message is unpickled where
        it lies in shared memory (the unpickler copies what it keeps)."""
        self._check_closed()
        self._check_readable()
        return _unpickle_message(self._inbound.recv(None, True))

    def _send_bytes(self, buf):
        self._outbound.send(buf)

    def _recv_bytes(self, maxsize=None):
        data = self._inbound.recv()
        if maxsize is not None and len(data) > maxsize:
            return None
        return data

    def _recv_bytes_into(self, view, offset):
        data = self._inbound.recv()
        size = len(data)
        if view.nbytes < offset + size:
            raise BufferTooShort(data)
        view[offset:offset + size] = data
        return size

    def _poll(self, timeout):
        return self._inbound.poll(timeout)

    def __reduce__(self):
        # Here rather than only in ForkingPickler's table, so that any
        # pickler (cloudpickle, loky's) hands channel ends over correctly.
        return _reduce_channel_connection(self)


#
# Listener and Client
#

class SocketListener:
    """A listening socket whose accept() gives Connections."""

    def __init__(self, address, family, backlog=1):
        self._socket = socket.socket(getattr(socket, family))
        self._unlink = None
        try:
            # Lets a restarted server reuse its TCP port at once.
            if family != 'AF_UNIX':
                self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._socket.setblocking(True)
            self._socket.bind(address)
            self._socket.listen(backlog)
            self._address = self._socket.getsockname()
        except OSError:
            self._socket.close()
            raise
        self._family = family
        self._last_accepted = None
        if family == 'AF_UNIX' and not util.is_abstract_socket_namespace(address):
            # The socket file goes with the listener (or at exit).
            self._unlink = util.Finalize(self, os.unlink, args=(address,), exitpriority=0)

    def accept(self):
        s, self._last_accepted = self._socket.accept()
        s.setblocking(True)
        return Connection(s.detach())

    def close(self):
        try:
            self._socket.close()
        finally:
            unlink = self._unlink
            if unlink is not None:
                self._unlink = None
                try:
                    unlink()
                except FileNotFoundError:
                    pass


def SocketClient(address):
    """A Connection to the listener at `address`."""
    family = address_type(address)
    with socket.socket(getattr(socket, family)) as s:
        s.setblocking(True)
        s.connect(address)
        return Connection(s.detach())


class Listener:
    """A server socket that accepts Connections, optionally authenticated.

    With an authkey, each accepted connection must pass the challenge (in
    both directions) before accept() returns it.
    """

    def __init__(self, address=None, family=None, backlog=1, authkey=None):
        family = family or (address and address_type(address)) or default_family
        address = address or arbitrary_address(family)
        _validate_family(family)
        if authkey is not None and not isinstance(authkey, bytes):
            raise TypeError('authkey should be a byte string')
        self._listener = SocketListener(address, family, backlog)
        self._authkey = authkey

    def accept(self):
        """Wait for a connection and return it (authenticated if needed)."""
        if self._listener is None:
            raise OSError('listener is closed')
        c = self._listener.accept()
        if self._authkey is not None:
            try:
                deliver_challenge(c, self._authkey)
                answer_challenge(c, self._authkey)
            except BaseException:
                c.close()
                raise
        return c

    def close(self):
        """Stop listening (and remove a Unix socket file)."""
        listener = self._listener
        if listener is not None:
            self._listener = None
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
    family = family or address_type(address)
    _validate_family(family)
    if authkey is not None and not isinstance(authkey, bytes):
        raise TypeError('authkey should be a byte string')
    c = SocketClient(address)
    if authkey is not None:
        try:
            answer_challenge(c, authkey)
            deliver_challenge(c, authkey)
        except BaseException:
            c.close()
            raise
    return c


#
# Authentication: the stdlib's HMAC-MD5 challenge of Python 3.11. Only raw
# bytes cross before it succeeds; nothing is unpickled.
#

MESSAGE_LENGTH = 20

CHALLENGE = b'#CHALLENGE#'
WELCOME = b'#WELCOME#'
FAILURE = b'#FAILURE#'


def _check_authkey(authkey):
    if not isinstance(authkey, bytes):
        raise ValueError('Authkey must be bytes, not {0!s}'.format(type(authkey)))


def _digest(authkey, message):
    import hmac
    return hmac.new(authkey, message, 'md5').digest()


def deliver_challenge(connection, authkey):
    """Ask the peer to prove it knows authkey; AuthenticationError if not."""
    import hmac
    _check_authkey(authkey)
    message = os.urandom(MESSAGE_LENGTH)
    connection.send_bytes(CHALLENGE + message)
    expected = _digest(authkey, message)
    response = connection.recv_bytes(256)
    if hmac.compare_digest(response, expected):
        connection.send_bytes(WELCOME)
    else:
        connection.send_bytes(FAILURE)
        raise AuthenticationError('digest received was wrong')


def answer_challenge(connection, authkey):
    """Prove to the peer that we know authkey; AuthenticationError if the
    peer rejects the answer."""
    _check_authkey(authkey)
    message = connection.recv_bytes(256)
    if message[:len(CHALLENGE)] != CHALLENGE:
        raise AuthenticationError('expected an authentication challenge, got %r' % (message[:32],))
    connection.send_bytes(_digest(authkey, message[len(CHALLENGE):]))
    response = connection.recv_bytes(256)
    if response != WELCOME:
        raise AuthenticationError('digest sent was rejected')


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

if hasattr(selectors, 'PollSelector'):
    _WaitSelector = selectors.PollSelector
else:
    _WaitSelector = selectors.SelectSelector


def wait(object_list, timeout=None):
    """Wait until some objects in object_list are ready; return those.

    The objects are connections, queue readers, sockets, process sentinels
    (descriptors) or anything with fileno(). An empty list is returned
    when `timeout` seconds pass first.
    """
    # A Pipe end's descriptor (a queue's reader is one too) is readable
    # exactly when poll(0) is True (its channel rings and clears it
    # synchronously), so the selector answers for it as for any descriptor.
    # A channel end without a socket has a doorbell that follows other
    # processes a wake-up late: such ends are asked directly, and their
    # descriptors only wake the wait.
    asked = [obj for obj in object_list
             if isinstance(obj, _ChannelConnection) and obj._inbound is not None
             and obj._inbound.socket_fds() is None]
    with _WaitSelector() as selector:
        for obj in object_list:
            selector.register(obj, selectors.EVENT_READ)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            ready_asked = [obj for obj in asked if obj._inbound.poll(0)]
            events = selector.select(0 if ready_asked else timeout)
            ready = [key.fileobj for key, _events in events if key.fileobj not in asked]
            if events and not ready_asked:
                ready_asked = [obj for obj in asked if obj._inbound.poll(0)]
            ready += ready_asked
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
    df = reduction.DupFd(conn.fileno())
    return rebuild_connection, (df, conn.readable, conn.writable)


def rebuild_connection(df, readable, writable):
    fd = df.detach()
    return Connection(fd, readable, writable)


reduction.register(Connection, reduce_connection)


def _reduce_channel_connection(conn):
    # Each end travels as channel names plus tickets that keep its place
    # while it is in transit to the process that unpickles it; a Pipe end's
    # socket travels as descriptors.
    conn._check_closed()
    ends = []
    for channel, role in ((conn._inbound, 'reader'), (conn._outbound, 'writer')):
        ends.append(None if channel is None else (channel.name, channel.hand_over(role)))
    sockets = conn._handle.socket_fds()
    if sockets is not None:
        watch, ring = sockets
        sockets = (reduction.DupFd(watch), None if ring < 0 else reduction.DupFd(ring))
    return _rebuild_channel_connection, (ends[0], ends[1], conn.readable, conn.writable, sockets)


def _rebuild_channel_connection(inbound, outbound, readable, writable, sockets=None):
    import _mphost
    opened = [None if end is None else _mphost.Channel.open(end[0], role, end[1])
              for end, role in ((inbound, 'reader'), (outbound, 'writer'))]
    if sockets is not None:
        watch = sockets[0].detach()
        ring = -1 if sockets[1] is None else sockets[1].detach()
        handle = opened[0] or opened[1]
        try:
            handle.use_socket(watch, ring)
        except BaseException:
            os.close(watch)
            if ring >= 0:
                os.close(ring)
            raise
    return _ChannelConnection(opened[0], opened[1], readable, writable)

