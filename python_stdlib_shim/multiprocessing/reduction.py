"""Pickling for multiprocessing: ForkingPickler and descriptor passing.

ForkingPickler is a Pickler whose dispatch table is copyreg's overlaid with
the reducers registered through ``register`` (methods, partials, sockets,
connections... registered by the modules that define those types).

Descriptors cross processes three ways:

    a child being started   DupFd(fd) asks the Popen to pass fd along
    a Unix socket           send_handle/recv_handle over SCM_RIGHTS: a
                            socket Connection's descriptor, or a Pipe end's
                            socket (mphost channel ends carry one)
    anything else           a resource_sharer ticket, which the receiver
                            redeems with this process for a duplicate (a
                            queue's ends, or DupFd outside a start)
"""

from abc import ABCMeta
import copyreg
import functools
import io
import os
import pickle
import socket
import types

from . import context

__all__ = ['send_handle', 'recv_handle', 'ForkingPickler', 'register', 'dump']

HAVE_SEND_HANDLE = True
# Only macOS needs a byte back after each descriptor; mphost runs on Linux.
ACKNOWLEDGE = False


class ForkingPickler(pickle.Pickler):
    """Pickler that knows the reducers registered with ``register``."""

    _extra_reducers = {}
    _copyreg_dispatch_table = copyreg.dispatch_table
    # Counts registrations, so that picklers kept for reuse (_message.py)
    # notice a reducer replaced for a type that already had one.
    _generation = 0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.dispatch_table = self._reducer_table()

    @classmethod
    def _reducer_table(cls):
        """A new dict: copyreg's reducers, overridden by the registered ones."""
        return {**cls._copyreg_dispatch_table, **cls._extra_reducers}

    @classmethod
    def register(cls, type, reduce):
        """Pickle objects of `type` with `reduce(obj)`."""
        cls._extra_reducers[type] = reduce
        ForkingPickler._generation += 1

    @classmethod
    def dumps(cls, obj, protocol=None):
        """obj pickled with this class (a memoryview of the bytes)."""
        out = io.BytesIO()
        cls(out, protocol).dump(obj)
        return out.getbuffer()

    loads = pickle.loads


register = ForkingPickler.register


def dump(obj, file, protocol=None):
    """Pickle obj to file with ForkingPickler."""
    ForkingPickler(file, protocol).dump(obj)


#
# Descriptors over Unix sockets
#

def sendfds(sock, fds):
    """Send a list of descriptors over a connected Unix socket."""
    fds = list(fds)
    # The byte tells the receiver how many descriptors to expect.
    socket.send_fds(sock, [bytes([len(fds) % 256])], fds)


def recvfds(sock, size):
    """Receive `size` descriptors from a Unix socket."""
    msg, fds, _flags, _addr = socket.recv_fds(sock, 1, size)
    return _checked_fds(msg, fds, size)


def _checked_fds(msg, fds, size):
    # The byte sent with the descriptors must announce as many as came.
    if not msg and not fds:
        raise EOFError
    problem = None
    if len(fds) != size:
        problem = RuntimeError('received %d items of ancdata, expected %d' % (len(fds), size))
    elif msg[0] != size % 256:
        problem = AssertionError('Len is {0:n} but msg[0] is {1!r}'.format(size, msg[0]))
    if problem is None:
        return list(fds)
    for fd in fds:
        os.close(fd)
    raise problem


def _channel_of(conn):
    """The channel under an mphost channel end (None for a descriptor
    Connection); its socket_fds() is None when it has no socket."""
    from ._channel_connection import _ChannelConnection
    if not isinstance(conn, _ChannelConnection):
        return None
    conn._check_closed()
    return conn._handle


def send_handle(conn, handle, destination_pid):
    """Send descriptor `handle` over connection `conn`.

    The descriptor itself travels over the connection's Unix socket
    (SCM_RIGHTS). An mphost connection without a socket (a queue's ends)
    carries a resource_sharer ticket instead, with which the receiver
    fetches a duplicate from this process.
    """
    channel = _channel_of(conn)
    if channel is None:
        fd = conn.fileno()
    else:
        sockets = channel.socket_fds()
        if sockets is None:
            from . import resource_sharer
            conn.send(resource_sharer.DupFd(handle))
            return
        fd = sockets[0]
    with socket.fromfd(fd, socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sendfds(sock, [handle])


def recv_handle(conn):
    """Receive a descriptor sent with send_handle."""
    channel = _channel_of(conn)
    if channel is None:
        with socket.fromfd(conn.fileno(), socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            return recvfds(sock, 1)[0]
    if channel.socket_fds() is None:
        ticket = conn.recv()
        return ticket.detach()
    # The channel reads past the doorbell marks on its socket.
    msg, fds = channel.receive_fds(1, 1)
    return _checked_fds(msg, fds, 1)[0]


def DupFd(fd):
    """An object that, unpickled in another process, gives a duplicate of fd."""
    popen = context.get_spawning_popen()
    if popen is None:
        from . import resource_sharer
        return resource_sharer.DupFd(fd)
    return popen.DupFd(popen.duplicate_for_child(fd))


#
# Reducers for objects the default pickler refuses
#

def _reduce_method(m):
    # A bound method: its object (or class) and the function's name.
    return getattr, (m.__self__, m.__func__.__name__)


def _reduce_method_descriptor(m):
    return getattr, (m.__objclass__, m.__name__)


def _reduce_partial(p):
    return _rebuild_partial, (p.func, p.args, p.keywords or {})


def _rebuild_partial(func, args, keywords):
    return functools.partial(func, *args, **keywords)


def _reduce_socket(s):
    return _rebuild_socket, (DupFd(s.fileno()), s.family, s.type, s.proto)


def _rebuild_socket(df, family, type, proto):
    return socket.socket(family, type, proto, fileno=df.detach())


def _builtin_reducers():
    return {
        types.MethodType: _reduce_method,                     # obj.method
        types.MethodDescriptorType: _reduce_method_descriptor,  # list.append
        types.WrapperDescriptorType: _reduce_method_descriptor,  # int.__add__
        functools.partial: _reduce_partial,
        socket.socket: _reduce_socket,
    }


def _register_builtin_reducers():
    for kind, reduce in _builtin_reducers().items():
        register(kind, reduce)


_register_builtin_reducers()


class AbstractReducer(metaclass=ABCMeta):
    """Base class for a custom reducer assigned to ``context.reducer``;
    creating one (re)registers the built-in reducers."""

    ForkingPickler = ForkingPickler
    register = register
    dump = dump
    send_handle = send_handle
    recv_handle = recv_handle
    sendfds = sendfds
    recvfds = recvfds
    DupFd = DupFd
    _reduce_method = _reduce_method
    _reduce_method_descriptor = _reduce_method_descriptor
    _rebuild_partial = _rebuild_partial
    _reduce_socket = _reduce_socket
    _rebuild_socket = _rebuild_socket

    def __init__(self, *args):
        _register_builtin_reducers()
