"""Pickling for multiprocessing: ForkingPickler and descriptor passing.

ForkingPickler is a Pickler with extra reducers (methods, partials, sockets,
connections...) registered by the modules that define those types.
Descriptors cross processes over Unix sockets (SCM_RIGHTS), or ride along
with a child being started (DupFd).
"""

from abc import ABCMeta
import copyreg
import functools
import io
import os
import pickle
import socket

from . import context

__all__ = ['send_handle', 'recv_handle', 'ForkingPickler', 'register', 'dump']

HAVE_SEND_HANDLE = True


class ForkingPickler(pickle.Pickler):
    """Pickler that knows the reducers registered with ``register``."""

    _extra_reducers = {}
    _copyreg_dispatch_table = copyreg.dispatch_table
    # Bumped by register(), so that picklers kept for reuse notice a reducer
    # replaced for a type that already had one.
    _generation = 0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.dispatch_table = self._copyreg_dispatch_table.copy()
        self.dispatch_table.update(self._extra_reducers)

    @classmethod
    def register(cls, type, reduce):
        """Pickle objects of `type` with `reduce(obj)`."""
        cls._extra_reducers[type] = reduce
        ForkingPickler._generation += 1

    @classmethod
    def dumps(cls, obj, protocol=None):
        buffer = io.BytesIO()
        cls(buffer, protocol).dump(obj)
        return buffer.getbuffer()

    loads = pickle.loads


register = ForkingPickler.register


def dump(obj, file, protocol=None):
    """Pickle obj to file with ForkingPickler."""
    ForkingPickler(file, protocol).dump(obj)


#
# Descriptor passing over Unix sockets
#

ACKNOWLEDGE = False


def sendfds(sock, fds):
    """Send a list of descriptors over a connected Unix socket."""
    fds = list(fds)
    # The byte tells the receiver how many descriptors to expect.
    socket.send_fds(sock, [bytes([len(fds) % 256])], fds)
    if ACKNOWLEDGE and sock.recv(1) != b'A':
        raise RuntimeError('did not receive acknowledgement of fd')


def recvfds(sock, size):
    """Receive `size` descriptors from a Unix socket."""
    msg, fds, _flags, _addr = socket.recv_fds(sock, 1, size)
    fds = _checked_fds(msg, fds, size)
    if ACKNOWLEDGE:
        sock.send(b'A')
    return fds


def _checked_fds(msg, fds, size):
    # The byte sent with the descriptors must announce as many as came.
    if not msg and not fds:
        raise EOFError
    if len(fds) != size:
        for fd in fds:
            os.close(fd)
        raise RuntimeError('received %d items of ancdata, expected %d' % (len(fds), size))
    if msg[0] != size % 256:
        for fd in fds:
            os.close(fd)
        raise AssertionError('Len is {0:n} but msg[0] is {1!r}'.format(size, msg[0]))
    return list(fds)


def _channel_socket(conn):
    # A Pipe end's channel with its socket (fileno), or None for a channel
    # end without one (a queue's) or a descriptor-based connection.
    from .connection import _ChannelConnection
    if not isinstance(conn, _ChannelConnection):
        return None
    conn._check_closed()
    channel = conn._handle
    return channel if channel.socket_fds() is not None else None


def send_handle(conn, handle, destination_pid):
    """Send descriptor `handle` over connection `conn`.

    The descriptor itself travels over the connection's Unix socket
    (SCM_RIGHTS): a Pipe end's fileno() is one. A shared-memory connection
    without a socket (a queue's ends) carries a resource_sharer ticket
    instead, with which the receiver fetches a duplicate from this process.
    """
    from .connection import _ChannelConnection
    if isinstance(conn, _ChannelConnection):
        channel = _channel_socket(conn)
        if channel is None:
            from . import resource_sharer
            conn.send(resource_sharer.DupFd(handle))
            return
        fd = channel.socket_fds()[0]
    else:
        fd = conn.fileno()
    with socket.fromfd(fd, socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sendfds(sock, [handle])


def recv_handle(conn):
    """Receive a descriptor sent with send_handle."""
    from .connection import _ChannelConnection
    if isinstance(conn, _ChannelConnection):
        channel = _channel_socket(conn)
        if channel is None:
            return conn.recv().detach()
        msg, fds = channel.receive_fds(1, 1)
        return _checked_fds(msg, fds, 1)[0]
    with socket.fromfd(conn.fileno(), socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        return recvfds(sock, 1)[0]


def DupFd(fd):
    """An object that, unpickled in another process, gives a duplicate of fd."""
    popen = context.get_spawning_popen()
    if popen is not None:
        return popen.DupFd(popen.duplicate_for_child(fd))
    if HAVE_SEND_HANDLE:
        from . import resource_sharer
        return resource_sharer.DupFd(fd)
    raise ValueError('SCM_RIGHTS appears not to be available')


#
# Reducers for objects the default pickler refuses
#

def _reduce_method(m):
    if m.__self__ is None:
        return getattr, (m.__class__, m.__func__.__name__)
    return getattr, (m.__self__, m.__func__.__name__)


class _C:
    def f(self):
        pass


register(type(_C().f), _reduce_method)


def _reduce_method_descriptor(m):
    return getattr, (m.__objclass__, m.__name__)


register(type(list.append), _reduce_method_descriptor)
register(type(int.__add__), _reduce_method_descriptor)


def _reduce_partial(p):
    return _rebuild_partial, (p.func, p.args, p.keywords or {})


def _rebuild_partial(func, args, keywords):
    return functools.partial(func, *args, **keywords)


register(functools.partial, _reduce_partial)


def _reduce_socket(s):
    df = DupFd(s.fileno())
    return _rebuild_socket, (df, s.family, s.type, s.proto)


def _rebuild_socket(df, family, type, proto):
    fd = df.detach()
    return socket.socket(family, type, proto, fileno=fd)


register(socket.socket, _reduce_socket)


class AbstractReducer(metaclass=ABCMeta):
    """Base class for a custom reducer assigned to ``context.reducer``."""

    ForkingPickler = ForkingPickler
    register = register
    dump = dump
    send_handle = send_handle
    recv_handle = recv_handle
    _reduce_socket = _reduce_socket
    _rebuild_socket = _rebuild_socket
    sendfds = sendfds
    recvfds = recvfds
    DupFd = DupFd

    def __init__(self, *args):
        register(type(_C().f), _reduce_method)
        register(type(list.append), _reduce_method_descriptor)
        register(type(int.__add__), _reduce_method_descriptor)
        register(functools.partial, _reduce_partial)
        register(socket.socket, _reduce_socket)
