"""The manager's server: accepts connections, owns the shared objects,
answers requests.

    main thread       waits for the stop event, then exits the process
    accepter thread   listener.accept() -> one thread per connection
    connection thread authenticate; first request names a Server function
                      ('accept_connection' turns the thread into the server
                      of that client's requests until end of file, or until
                      the link moves onto channels)
    link threads      native (_mphost.ManagerDispatch), one per link moved
                      onto channels; each enters Python only through
                      `_reply`, to run the method and make its reply

Objects live in one `_ObjectTable` (ident -> object, exposed names, result
typeids; ident -> reference count). A request for an object is answered by
`_reply`, a request for the Server (ident None) by `_run_function`; each
returns the reply, which the connection's loop (or the native link
thread) sends. The wire format is
the stdlib's (see _manager_transport).
"""

# Private: the public names are multiprocessing.managers'.
__all__ = []

import functools
import os
import signal
import sys
import threading
import time
import traceback

from . import connection
from . import process
from . import util
from ._manager_transport import (ERROR, GETVALUE, PROXY, RETURN, SERVER_SPIN, TRACEBACK,
                                 UNSERIALIZABLE, CHANNELS_REQUEST, CONTROL_OFFER, REPLY_CODES,
                                 Token, listener_client, message_stream, _loads)


def all_methods(obj):
    """Names of the callable attributes of obj."""
    return [name for name in dir(obj) if callable(getattr(obj, name))]


def public_methods(obj):
    """Names of the callable attributes of obj that do not start with '_'."""
    return [name for name in all_methods(obj) if not name.startswith('_')]


class _Entry:
    __slots__ = ('obj', 'exposed', 'result_types')

    def __init__(self, obj, exposed, result_types):
        self.obj = obj
        self.exposed = frozenset(exposed)
        self.result_types = result_types or None


class _ObjectTable:
    """The shared objects of one server and their reference counts.

    An object leaves the table when its count falls to zero, except that an
    object a proxy inside the server process still refers to (a proxy kept
    in a shared container) is remembered in `kept` and comes back when some
    client takes a reference to it again.
    """

    def __init__(self):
        self.entries = {}
        self.counts = {}
        self.kept = {}
        self.lock = threading.Lock()

    def find(self, ident):
        entry = self.entries.get(ident)
        if entry is None:
            entry = self.kept.get(ident)
            if entry is None:
                raise KeyError(ident)
        return entry

    def insert(self, obj, exposed, result_types):
        """Add obj with one reference (or one more); returns its ident."""
        ident = '%x' % id(obj)
        entry = _Entry(obj, exposed, result_types)
        with self.lock:
            self.entries[ident] = entry
            self.counts[ident] = self.counts.get(ident, 0) + 1
        return ident

    def keep(self, ident):
        """Remember ident's object for a proxy living in the server."""
        with self.lock:
            if ident not in self.kept:
                self.kept[ident] = self.entries[ident]

    def incref(self, ident):
        with self.lock:
            if ident in self.counts:
                self.counts[ident] += 1
            elif ident in self.kept:
                self.counts[ident] = 1
                self.entries[ident] = self.kept[ident]
                util.debug('Server re-enabled tracking & INCREF %r', ident)
            else:
                raise KeyError(ident)

    def decref(self, ident):
        """Drop a reference; returns the entry that left the table (to be
        released by the caller, outside the lock), or None."""
        with self.lock:
            count = self.counts.get(ident)
            if count is None and ident in self.kept:
                util.debug('Server DECREF skipping %r', ident)
                return None
            if count is None:
                raise KeyError(ident)
            if count < 1:
                raise AssertionError('Id {0!s} ({1!r}) has refcount {2:n}, not 1+'.format(
                    ident, self.entries.get(ident), count))
            if count > 1:
                self.counts[ident] = count - 1
                return None
            del self.counts[ident]
            return self.entries.pop(ident, None)

    def describe(self):
        with self.lock:
            shown = [(ident, n, self.entries[ident].obj) for ident, n in sorted(self.counts.items())]
        return '\n'.join('  %s:       refcount=%s\n    %s' % (ident, n, str(obj)[:75])
                         for ident, n, obj in shown)


# A Server function that sent its own reply returns this.
_ANSWERED = object()


class _Handover:
    """What CHANNELS_REQUEST asks of the connection's thread: serve the
    link through `dispatch` from now on."""

    __slots__ = ('dispatch',)

    def __init__(self, dispatch):
        self.dispatch = dispatch


def _reply_frame(tag, payload):
    """A channel link's reply frame, for payloads the native codec leaves
    to the pickler (see ManagerDispatch)."""
    try:
        return bytes((REPLY_CODES[tag],)) + connection._dumps(payload)
    except Exception:
        text = traceback.format_exc()
    return bytes((REPLY_CODES[UNSERIALIZABLE],)) + connection._dumps(text)


def _failure_text(exc):
    return ''.join(traceback.format_exception(exc))

# Server functions a client may call on its served connection (mphost
# clients only: stock ones open a connection per call).
_ON_CONNECTION = frozenset(('create', 'get_methods', 'debug_info', 'number_of_objects',
                            'dummy', 'incref', 'decref'))


class Server(object):
    """Owns the shared objects of a manager and serves requests for them."""

    public = ['shutdown', 'create', 'accept_connection', 'get_methods',
              'debug_info', 'number_of_objects', 'dummy', 'incref', 'decref']

    # Answers for method names an object does not expose:
    # name -> function(server, conn, ident, obj, *args, **kwds).
    fallback_mapping = {
        GETVALUE: lambda server, conn, ident, obj: obj,
        '__str__': lambda server, conn, ident, obj: str(obj),
        '__repr__': lambda server, conn, ident, obj: repr(obj),
    }

    def __init__(self, registry, address, authkey, serializer):
        if not isinstance(authkey, bytes):
            raise TypeError('Authkey {0!r} is type {1!s}, not bytes'.format(
                authkey, type(authkey)))
        self.registry = registry
        self.authkey = process.AuthenticationString(authkey)
        self._serializer = serializer
        # Connections are authenticated by their own threads, so a slow or
        # hostile peer cannot hold up the accepter.
        self.listener = listener_client[serializer][0](address=address, backlog=16)
        self.address = self.listener.address
        self._table = _ObjectTable()
        self.mutex = self._table.lock
        self.stop_event = threading.Event()
        # Serves the links moved onto channels; made with the first.
        self._dispatch = None

    #
    # Threads
    #

    def serve_forever(self):
        """Serve until a client asks for shutdown, then exit the process."""
        process.current_process()._manager_server = self
        threading.Thread(target=self.accepter, name='manager-accepter', daemon=True).start()
        try:
            self.stop_event.wait()
        except KeyboardInterrupt:
            util.info('manager interrupted')
        finally:
            dispatch = getattr(self, '_dispatch', None)
            if dispatch is not None:
                # Clients on channels see end of file, as on a socket.
                dispatch.stop(0.05)
            # The process ends here, with the standard streams it began with.
            sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
            sys.exit(0)

    def accepter(self):
        listener = self.listener
        while True:
            try:
                conn = listener.accept()
            except OSError:
                if getattr(listener, '_listener', True) is None:
                    return
                time.sleep(0.01)  # e.g. out of descriptors: do not spin
                continue
            threading.Thread(target=self.handle_request, args=(conn,), daemon=True).start()

    def handle_request(self, conn):
        """Authenticate a new connection and run the Server function its
        first request names."""
        try:
            if self._authenticate(conn):
                self._first_request(conn)
        except SystemExit:
            pass
        finally:
            conn.close()

    def _authenticate(self, conn):
        try:
            connection.deliver_challenge(conn, self.authkey)
            connection.answer_challenge(conn, self.authkey)
        except Exception as exc:
            # A peer that failed is told nothing more.
            util.info('manager refused a connection: %r', exc)
            return False
        return True

    def _first_request(self, conn):
        request = None
        try:
            request = conn.recv()
            name = request[1]
            if name not in self.public:
                raise AttributeError('%r unrecognized' % (name,))
            reply = (RETURN, getattr(self, name)(conn, *request[2], **request[3]))
        except Exception:
            reply = (TRACEBACK, traceback.format_exc())
        if reply[1] is _ANSWERED:
            return
        try:
            conn.send(reply)
        except Exception as exc:
            util.info('could not send %r, the reply to %r: %r', reply, request, exc)
            try:
                conn.send((TRACEBACK, traceback.format_exc()))
            except Exception:
                pass

    def serve_client(self, conn):
        """Answer the requests arriving on conn until its peer goes away
        (or its link moves onto channels)."""
        me = threading.current_thread().name
        util.debug('starting server thread to service %r', me)
        stream = message_stream(conn, SERVER_SPIN)
        answer = self._answer
        stopping = self.stop_event.is_set
        while not stopping():
            try:
                request = stream.recv()
            except EOFError:
                util.debug('got EOF -- exiting thread serving %r', me)
                return
            except OSError as exc:
                # Cut inside a message or a bad length: out of step for good.
                util.info('connection of %r broken: %r', me, exc)
                return
            except Exception:
                reply = (TRACEBACK, traceback.format_exc())
            else:
                reply = answer(conn, request)
            if type(reply) is _Handover:
                # This thread goes on serving the link natively: what the
                # link's calls did so far (a lock taken) stays this thread's.
                util.debug('the link of %r moves onto channels', me)
                moved = []
                try:
                    reply.dispatch.serve_here(functools.partial(self._hand_over, stream, moved))
                except Exception:
                    if moved:
                        return
                    # No channels: the socket serves on.
                    reply = (TRACEBACK, traceback.format_exc())
                else:
                    util.debug('got EOF -- exiting thread serving %r', me)
                    return
            if not self._send_reply(stream, reply):
                return

    @classmethod
    def _send_reply(cls, stream, reply):
        try:
            stream.send(reply)
            return True
        except Exception:
            return cls._send_failed(stream, reply)

    @staticmethod
    def _send_failed(stream, reply):
        # Called while the failure to send `reply` is being handled.
        try:
            stream.send((UNSERIALIZABLE, traceback.format_exc()))
            return True
        except Exception as exc:
            util.info('exception in thread serving %r', threading.current_thread().name)
            util.info(' ... message was %r', reply)
            util.info(' ... exception was %r', exc)
            return False

    #
    # Requests on a served connection
    #

    def _answer(self, conn, request):
        """The reply to one request read from a served connection."""
        try:
            ident, name, args, kwds = request
        except Exception:
            return (TRACEBACK, traceback.format_exc())
        return self._reply(conn, ident, name, args, kwds)

    def _reply(self, conn, ident, name, args, kwds):
        """The reply to a call of `name` on the object `ident` (None: a
        Server function)."""
        try:
            if ident is None:
                return self._run_function(conn, name, args, kwds)
            entry = self._table.find(ident)
        except Exception:
            return (TRACEBACK, traceback.format_exc())
        try:
            if name not in entry.exposed:
                raise AttributeError('method %r of %r object is not in exposed=%r'
                                     % (name, type(entry.obj), entry.exposed))
            method = getattr(entry.obj, name)
        except AttributeError:
            return self._fall_back(conn, ident, entry.obj, name, args, kwds)
        try:
            result = method(*args, **kwds)
        except Exception as exc:
            return (ERROR, exc)
        typeid = entry.result_types and entry.result_types.get(name)
        if not typeid:
            return (RETURN, result)
        try:
            new_ident, exposed = self.create(conn, typeid, result)
        except Exception:
            return (TRACEBACK, traceback.format_exc())
        return (PROXY, (exposed, Token(typeid, self.address, new_ident)))

    def _fall_back(self, conn, ident, obj, name, args, kwds):
        # Runs while the AttributeError of a missing method is handled, so
        # that its traceback is what the client sees when nothing answers.
        handler = self.fallback_mapping.get(name)
        try:
            if handler is None:
                raise
            return (RETURN, handler(self, conn, ident, obj, *args, **kwds))
        except Exception:
            return (TRACEBACK, traceback.format_exc())

    def _run_function(self, conn, name, args, kwds):
        if name == CHANNELS_REQUEST:
            return self._channels_for(conn)
        try:
            if name not in _ON_CONNECTION or name not in self.public:
                raise AttributeError('%r is not a control request' % (name,))
            return (RETURN, getattr(self, name)(conn, *args, **kwds))
        except Exception:
            return (TRACEBACK, traceback.format_exc())

    def _channels_for(self, conn):
        if type(conn) is not connection.Connection or self._serializer != 'pickle':
            return (TRACEBACK, 'channels are for pickle connections over sockets\n')
        try:
            return _Handover(self._link_dispatch())
        except Exception:
            return (TRACEBACK, traceback.format_exc())

    @staticmethod
    def _hand_over(stream, moved, handed):
        # The last reply on the socket: the link's channels.
        stream.send((RETURN, handed))
        moved.append(True)

    def _link_dispatch(self):
        with self._table.lock:
            dispatch = getattr(self, '_dispatch', None)
            if dispatch is None:
                import _mphost
                dispatch = _mphost.ManagerDispatch(functools.partial(self._reply, None),
                                                   _reply_frame, _loads, _failure_text)
                # A child forked by a method has none of its threads.
                os.register_at_fork(after_in_child=dispatch.forget)
                self._dispatch = dispatch
        return dispatch

    #
    # Server functions: (conn, *args) -> result
    #

    def create(self, c, typeid, /, *args, **kwds):
        """Make a shared object of `typeid`; returns (ident, exposed)."""
        maker, exposed, result_types, _proxytype = self.registry[typeid]
        if maker is not None:
            obj = maker(*args, **kwds)
        elif len(args) == 1 and not kwds:
            obj = args[0]
        else:
            raise ValueError('Without callable, must have one non-keyword argument')
        names = list(public_methods(obj) if exposed is None else exposed)
        if result_types is not None:
            if not isinstance(result_types, dict):
                raise TypeError('Method_to_typeid {0!r}: type {1!s}, not dict'.format(
                    result_types, type(result_types)))
            names += list(result_types)
        ident = self._table.insert(obj, names, result_types)
        util.debug('shared %r object %r made', typeid, ident)
        return ident, tuple(names)

    def get_methods(self, c, token):
        """The names exposed by the object that token names."""
        return tuple(self._table.find(token.id).exposed)

    def accept_connection(self, c, name):
        """Serve this connection's requests from this thread on."""
        threading.current_thread().name = name
        c.send((RETURN, CONTROL_OFFER if self._serializer == 'pickle' else None))
        self.serve_client(c)
        return _ANSWERED

    def incref(self, c, ident):
        self._table.incref(ident)

    def decref(self, c, ident):
        # The entry that left the table is released here, outside the
        # table's lock: the object's finalizers may come back to the server.
        self._table.decref(ident)

    def debug_info(self, c):
        """The objects with their reference counts, as text."""
        return self._table.describe()

    def number_of_objects(self, c):
        """How many shared objects are referenced."""
        return len(self._table.counts)

    def dummy(self, c):
        pass

    def shutdown(self, c):
        """Acknowledge, then stop (the main thread exits the process)."""
        try:
            c.send((RETURN, None))
        finally:
            self.stop_event.set()
        return _ANSWERED


def run_server_process(server_class, registry, address, authkey, serializer, report,
                       initializer, initargs):
    """Body of a manager's server process: make the server, send its
    address through `report` (a Connection, closed after), serve."""
    # Ctrl-C is for the program, which shuts its manager down itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if initializer is not None:
        initializer(*initargs)
    server = server_class(registry, address, authkey, serializer)
    with report:
        report.send(server.address)
    util.info('manager serving at %r', server.address)
    server.serve_forever()
