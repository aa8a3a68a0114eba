"""The manager protocol's vocabulary and the client's link to a server.

Wire format (the stdlib's, so that stock python3 peers interoperate in both
directions):

    request   (ident, method_name, args, kwds)
              ident None names a function of the Server itself ('create',
              'incref', 'shutdown', ...), otherwise a shared object
    reply     (tag, payload), tag one of
              '#RETURN'          payload is the result
              '#ERROR'           payload is the exception the method raised
              '#TRACEBACK'       payload is the text of a server-side failure
              '#UNSERIALIZABLE'  the result could not be pickled; payload is why
              '#PROXY'           payload is (exposed, Token) of a new shared object

Each message is one frame of the Connection format: a signed big-endian
32-bit length (or -1 and an unsigned 64-bit length) and a pickle.

A client thread keeps one `_Link` per manager address: an authenticated
connection that the server serves in a thread of its own after
'accept_connection'. An mphost server answers that request with
`CONTROL_OFFER`, which means "Server functions may travel on this
connection too"; a stock server answers None, and Server functions then go
over a connection opened for each, as the stdlib's client does.

Where the server is on this machine (a Unix socket address) and is
mphost's, a link that keeps being used (see _CHANNELS_AFTER) asks for
CHANNELS_REQUEST: the server's native dispatcher (_mphost.ManagerDispatch)
makes two shared-memory channels (requests, replies) and serves them from
a thread of its own, and from then on the link's calls travel through them
in the dispatcher's frames (see _Channels); the server's Python thread for
the socket ends there. The requests channel is marked prompt_peer: the two
sides answer each other within microseconds, so a recv spins a little
longer before it yields the core. A side that dies is seen as end of file
by the other, as with the socket.

Socket links read through `_Frames`: a buffer that usually takes a whole
reply in one read(), and a short adaptive spin before a read that would
sleep (a peer on the other core answers within microseconds, waking a
sleeping process costs tens of them).
"""

# Private: the public names are multiprocessing.managers'.
__all__ = []

import os
import select
import threading
import time

from _mphost import manager_reply as _read_reply, manager_request as _request_frame
from _mphost import stream_prefix, stream_prefix_at

from . import connection
from . import process
from . import util
from .context import ProcessError

RETURN = '#RETURN'
ERROR = '#ERROR'
TRACEBACK = '#TRACEBACK'
UNSERIALIZABLE = '#UNSERIALIZABLE'
PROXY = '#PROXY'
GETVALUE = '#GETVALUE'

# What an mphost server answers to 'accept_connection' (stock servers: None).
CONTROL_OFFER = 'mphost:control-on-connection'
# The Server function (mphost servers, on a served connection) that moves
# the connection's requests and replies onto a pair of channels.
CHANNELS_REQUEST = 'mphost:channels'

class State(object):
    """A manager's state: INITIAL, then STARTED, then SHUTDOWN."""

    __slots__ = ['value']
    INITIAL = 0
    STARTED = 1
    SHUTDOWN = 2

    def __init__(self, value=INITIAL):
        self.value = value

    def require(self, wanted, texts):
        """ProcessError (with texts[current state]) unless in state `wanted`."""
        if self.value != wanted:
            raise ProcessError(texts.get(self.value) or 'Unknown state {!r}'.format(self.value))


listener_client = {
    'pickle': (connection.Listener, connection.Client),
    'xmlrpclib': (connection.XmlListener, connection.XmlClient),
}


class Token(object):
    """Names a shared object: its typeid, its server's address, its id."""

    __slots__ = ('typeid', 'address', 'id')

    def __init__(self, typeid, address, id):
        self.typeid = typeid
        self.address = address
        self.id = id

    def __getstate__(self):
        return self.typeid, self.address, self.id

    def __setstate__(self, state):
        (self.typeid, self.address, self.id) = state

    def __repr__(self):
        fields = ', '.join('%s=%r' % (f, getattr(self, f)) for f in Token.__slots__)
        return '%s(%s)' % (type(self).__name__, fields)


class RemoteError(Exception):
    """A failure inside the manager process; str() shows its traceback."""

    def __str__(self):
        rule = '-' * 75
        return '\n%s\n%s%s' % (rule, self.args[0], rule)


# Tags whose payload is server-side text, and how that text is presented.
_TEXT_REPLIES = {
    TRACEBACK: '%s',
    UNSERIALIZABLE: 'Unserializable message: %s\n',
}


def convert_to_error(kind, result):
    """The exception that a reply other than '#RETURN' stands for."""
    if kind == ERROR:
        return result
    template = _TEXT_REPLIES.get(kind)
    if template is None:
        return ValueError('Unrecognized message type {!r}'.format(kind))
    if not isinstance(result, str):
        raise TypeError("Result {0!r} (kind '{1}') type is {2}, not str".format(
            result, kind, type(result)))
    return RemoteError(template % result)


def _result_of(reply):
    kind, payload = reply
    if kind != RETURN:
        raise convert_to_error(kind, payload)
    return payload


def dispatch(c, id, methodname, args=(), kwds={}):
    """Send one request over connection `c` and return its result."""
    c.send((id, methodname, args, kwds))
    return _result_of(c.recv())


#
# Framing over a socket
#

_BUFFER_BYTES = 1 << 16
# A message up to this size leaves as one write (length and body together).
_ONE_WRITE = 1 << 14
_READABLE = select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLERR | select.POLLNVAL

# Spin budgets (seconds) before a read sleeps, and the longest run of reads
# that skip the spin after spins that found nothing.
CLIENT_SPIN = 50e-6
SERVER_SPIN = 50e-6
_MAX_SKIPPED = 256


class _Spinner:
    """Waits briefly and busily for a descriptor to become readable.

    A spin that ends empty-handed makes the next `skip` waits go straight
    to sleep, `skip` doubling each time (up to _MAX_SKIPPED) and falling
    back to 1 on the first spin that finds data: a slow or idle peer costs
    next to nothing, a fast one is answered without a wake-up.
    """

    __slots__ = ('poll', 'budget', 'skip', 'penalty')

    def __init__(self, fd, budget):
        poller = select.poll()
        poller.register(fd, _READABLE)
        self.poll = poller.poll
        self.budget = budget
        self.skip = 0
        self.penalty = 1

    def __call__(self):
        if self.skip:
            self.skip -= 1
            return
        poll, now, yield_cpu = self.poll, time.monotonic, os.sched_yield
        give_up = now() + self.budget
        while now() <= give_up:
            # The peer needs the CPU to answer: let it run first.
            yield_cpu()
            if poll(0):
                self.penalty = 1
                return
        self.skip = self.penalty
        self.penalty = min(2 * self.penalty, _MAX_SKIPPED)


class _Frames:
    """Connection-format messages over a socket that one thread owns.

    Reads go into one buffer; `next()` returns a view of the next message
    in place (valid until the following call). `encode()` pickles without
    writing, so that an unpicklable object leaves the stream in step.
    """

    __slots__ = ('fd', 'store', 'view', 'head', 'tail', 'wait')

    def __init__(self, conn, spin):
        self.fd = conn.fileno()
        self.store = bytearray(_BUFFER_BYTES)
        self.view = memoryview(self.store)
        self.head = self.tail = 0
        self.wait = _Spinner(self.fd, spin)

    @staticmethod
    def encode(obj):
        body = connection._dumps(obj)
        head = stream_prefix(len(body))
        return [head, body] if len(body) > _ONE_WRITE else [head + body]

    def write(self, parts):
        fd = self.fd
        if len(parts) == 1:
            block = parts[0]
            done = os.write(fd, block)
            if done == len(block):
                return
            parts = [memoryview(block)[done:]]
        pending = [memoryview(p).cast('B') for p in parts]
        while pending:
            done = os.writev(fd, pending)
            while pending and done >= len(pending[0]):
                done -= len(pending.pop(0))
            if done:
                pending[0] = pending[0][done:]

    def send(self, obj):
        self.write(self.encode(obj))

    def _have(self, count):
        # Make `count` bytes from `head` available; returns head.
        if self.tail - self.head >= count:
            return self.head
        if self.head + count > len(self.store):
            kept = self.tail - self.head
            self.store[:kept] = self.view[self.head:self.tail]
            self.head, self.tail = 0, kept
        while self.tail - self.head < count:
            if self.tail == self.head:
                self.wait()
            got = os.readv(self.fd, [self.view[self.tail:]])
            if not got:
                if self.tail == self.head:
                    raise EOFError
                raise OSError('got end of file during message')
            self.tail += got
        return self.head

    def next(self):
        at = self._have(4)
        prefix, size = stream_prefix_at(self.store, at, self.tail)
        if size is None:  # the long form: 8 more bytes
            at = self._have(prefix)
            prefix, size = stream_prefix_at(self.store, at, self.tail)
        end = prefix + size
        if end <= len(self.store):
            at = self._have(end)
            self.head = at + end
            return self.view[at + prefix:at + end]
        # Longer than the buffer: a buffer of its own, filled from the socket.
        message = bytearray(size)
        buffered = self.tail - at - prefix
        message[:buffered] = self.view[at + prefix:self.tail]
        self.head = self.tail = 0
        with memoryview(message) as rest:
            filled = buffered
            while filled < size:
                got = os.readv(self.fd, [rest[filled:]])
                if not got:
                    raise OSError('got end of file during message')
                filled += got
        return message

    @staticmethod
    def decode(data):
        return connection._unpickle_message(data)

    def recv(self):
        return connection._unpickle_message(self.next())


class _Wrapped:
    """A connection that frames its own messages (xmlrpclib's): send/recv
    whole objects."""

    __slots__ = ('conn',)

    def __init__(self, conn):
        self.conn = conn

    @staticmethod
    def encode(obj):
        return obj

    def write(self, obj):
        self.conn.send(obj)

    def send(self, obj):
        self.conn.send(obj)

    def next(self):
        return self.conn.recv()

    recv = next

    @staticmethod
    def decode(obj):
        return obj


# A link moves onto channels at its this-many-th call: making the channels
# costs about as much as a few hundred calls save, which a short-lived link
# (a thread that makes one call) would never win back.
_CHANNELS_AFTER = 16


_loads = connection._unpickle_message


class _Channels:
    """A link's calls over two channels (see CHANNELS_REQUEST), in the
    frames of runtime/manager_dispatch.hpp: a request is a small header
    (ident, method name) and the pickle of its arguments, a reply a tag
    byte and the pickle of its payload (none for a method that returned
    None). The server answers them natively; each frame is made and read
    by _mphost, which pickles builtin values itself and hands anything else
    to this side's encoder (the connection's reusable pickler, one per side:
    one thread owns it).
    """

    __slots__ = ('inbound', 'outbound', 'encoder', 'take')

    def __init__(self, inbound, outbound):
        self.inbound = inbound
        self.outbound = outbound
        self.encoder = connection._Encoder()
        self.take = inbound.recv

    def dump(self, obj):
        """ForkingPickler.dumps(obj) as a channel takes it; a dump started
        inside another (a __reduce__ that calls a manager on this thread)
        gets a pickler of its own."""
        if self.encoder.busy:
            return connection._dumps_for_channel(obj)
        return self.encoder.message(obj)

    def next(self):
        # The channel's wait runs a signal's handler at once, whenever the
        # signal lands: no slices needed.
        return self.take(None, True)

    def exchange(self, link, request):
        """_Link.exchange on channels, each step inline (see there)."""
        out = _request_frame(*request, self.dump)
        link.busy = True
        try:
            self.outbound.send(out)
            data = self.next()
        except BaseException:
            link.close()
            raise
        link.busy = False
        return _read_reply(data, _loads)

    def close(self):
        for channel in (self.inbound, self.outbound):
            if not channel.closed:
                channel.close()

    @classmethod
    def calling(cls, handed):
        """The client's side of the pair the server handed over (names and
        tickets: ManagerDispatch.open_link)."""
        import _mphost
        requests, request_ticket, replies, reply_ticket = handed
        inbound = _mphost.Channel.open(replies, 'reader', reply_ticket)
        inbound.prompt_peer(True)
        try:
            return cls(inbound, _mphost.Channel.open(requests, 'writer', request_ticket))
        except BaseException:
            inbound.close()
            raise


# The code of each reply tag in a channel link's reply frame.
REPLY_CODES = {tag: code for code, tag in enumerate((RETURN, ERROR, TRACEBACK, UNSERIALIZABLE, PROXY))}


def _is_local(address):
    # A Unix socket (a path, or a name in the abstract namespace).
    return isinstance(address, (str, bytes))


def message_stream(conn, spin):
    """The reader/writer for a served or serving connection."""
    if type(conn) is connection.Connection:
        return _Frames(conn, spin)
    return _Wrapped(conn)


#
# The client's links
#

class _Link:
    """One thread's served connection to one manager.

    `busy` is True between sending a request and reading its reply: a call
    made meanwhile on the same thread (a signal handler, a __reduce__ run by
    the pickler) must not use this link, whose stream would fall out of step.
    """

    __slots__ = ('conn', 'stream', 'busy', 'control', 'countdown')

    def __init__(self, conn, stream, control):
        self.conn = conn
        self.stream = stream
        self.control = control
        self.busy = False
        # Calls left before the link moves onto channels (0: it does not).
        self.countdown = 0

    @classmethod
    def open(cls, address, authkey, Client):
        util.debug('making connection to manager')
        name = process.current_process().name
        thread_name = threading.current_thread().name
        if thread_name != 'MainThread':
            name = '%s|%s' % (name, thread_name)
        conn = Client(address, authkey=authkey)
        try:
            offer = dispatch(conn, None, 'accept_connection', (name,))
        except BaseException:
            conn.close()
            raise
        link = cls(conn, message_stream(conn, CLIENT_SPIN), offer == CONTROL_OFFER)
        if link.control and _is_local(address) and type(link.stream) is _Frames:
            link.countdown = _CHANNELS_AFTER
        return link

    def _move_to_channels(self):
        try:
            handed = _result_of(self.exchange((None, CHANNELS_REQUEST, (), {})))
        except RemoteError as exc:
            # The server could not make channels: the socket serves on.
            util.info('manager link stays on its socket: %s', exc)
            return
        try:
            self.stream = _Channels.calling(handed)
        except BaseException:
            # The server moved already: this link cannot go on.
            self.close()
            raise

    def exchange(self, request):
        """Send `request`, return its reply (tag, payload)."""
        if self.countdown:
            self.countdown -= 1
            if not self.countdown:
                self._move_to_channels()
        stream = self.stream
        if type(stream) is _Channels:
            return stream.exchange(self, request)
        out = stream.encode(request)      # before anything is written
        self.busy = True
        try:
            stream.write(out)
            data = stream.next()
        except BaseException:
            self.close()
            raise
        self.busy = False
        # Unpickling may build proxies, which may call through this link.
        return stream.decode(data)

    def close(self):
        self.busy = False
        conn, self.conn = self.conn, None
        if conn is not None:
            if type(self.stream) is _Channels:
                self.stream.close()
            conn.close()


def link_of(tls, address, authkey, Client, open_missing=True):
    """This thread's link to the manager at `address` (opened on demand),
    or None when there is none and `open_missing` is false."""
    link = tls.__dict__.get('link')
    if link is not None and link.conn is not None:
        return link
    if not open_missing:
        return None
    link = tls.link = _Link.open(address, authkey, Client)
    return link


def forget_link(tls):
    link = tls.__dict__.pop('link', None)
    if link is not None:
        link.close()


def call_aside(address, authkey, Client, request):
    """A request on a link opened for it alone (the thread's own is busy)."""
    link = _Link.open(address, authkey, Client)
    try:
        return link.exchange(request)
    finally:
        link.close()


def server_call(address, authkey, serializer, Client, funcname, args=(), kwds={},
                connect=False, tls=None):
    """Run a function of the Server at `address` and return its result.

    It rides on this thread's link when the server takes Server functions
    there (opening the link first if `connect`); otherwise it gets a
    connection of its own, as with the stdlib's client.
    """
    if serializer == 'pickle':
        if tls is None:
            tls = client_state(address)[0]
        link = link_of(tls, address, authkey, Client, connect)
        if link is not None and link.control and not link.busy:
            return _result_of(link.exchange((None, funcname, args, kwds)))
    conn = Client(address, authkey=authkey)
    try:
        return dispatch(conn, None, funcname, args, kwds)
    finally:
        conn.close()


#
# Per-process client state, per manager address
#

class ProcessLocalSet(set):
    """A set that a forked child starts with empty."""

    def __init__(self):
        util.register_after_fork(self, set.clear)

    def __reduce__(self):
        return type(self), ()


# address -> (per-thread holder of links, ids of that manager's objects this
# process holds references to). BaseProxy._address_to_local is this dict.
address_to_local = {}
address_to_local_lock = util.ForkAwareThreadLock()


def client_state(address):
    """(per-thread link holder, referenced ids) for a manager address."""
    # Read without the lock first: a finalizer can get here on a thread that
    # already holds it.
    state = address_to_local.get(address)
    if state is None:
        with address_to_local_lock:
            state = address_to_local.setdefault(
                address, (util.ForkAwareLocal(), ProcessLocalSet()))
    return state
