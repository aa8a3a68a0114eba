"""Managers: objects that live in a server process, used through proxies.

    client process                              manager process (Server)
    --------------                              ------------------------
    BaseManager.start() ---- ctx.Process ---->  _run_server(): Listener(address)
         <-------- server address (Pipe) -----  serve_forever(): accepter thread,
                                                one thread per connection
    manager.dict()
      Client(address) + challenge ----------->  'accept_connection': this thread's
      (kept per thread and per manager)         connection is now served by
                                                serve_client()
      (None, 'create', (typeid,...)) -------->  Server.create(): id_to_obj[ident]
      <------------- ('#RETURN', (ident, exposed))
    proxy._callmethod(name, args, kwds)
      (ident, name, args, kwds) ------------->  getattr(obj, name)(*args, **kwds)
      <-- ('#RETURN', value) | ('#ERROR', exception) | ('#PROXY', (exposed, token))
          | ('#TRACEBACK', text) | ('#UNSERIALIZABLE', text)
    proxy collected: 'decref' ------------->  id_to_refcount[ident] -= 1; freed at 0

Every connection is authenticated with the manager's authkey before a
message is unpickled. The messages are the stdlib's, so a stock python3
client can use an mphost manager. Where both sides are mphost, reference
counting and creation ride on the calling thread's connection (control
requests with ident None) instead of a new connection per operation; the
server says so in its reply to 'accept_connection'. A call is one send and
one receive on that connection.

Errors: a method's exception comes back as itself ('#ERROR'); a failure of
the machinery comes back as RemoteError carrying the server's traceback.
"""

__all__ = ['BaseManager', 'SyncManager', 'BaseProxy', 'Token']

import array
import importlib.util
import os
import queue
import select
import signal
import sys
import threading
import time
import types
from traceback import format_exc

from . import connection
from .context import ProcessError, get_spawning_popen, reduction
from . import process
from . import util
from . import get_context

if importlib.util.find_spec(__package__ + '.shared_memory') is not None:
    __all__.append('SharedMemoryManager')

# Names the stdlib defines here and mphost keeps in shared_memory.py.
_SHARED_MEMORY_NAMES = ('SharedMemoryManager', 'SharedMemoryServer', '_SharedMemoryTracker')


def __getattr__(name):
    if name in _SHARED_MEMORY_NAMES:
        from . import shared_memory
        return getattr(shared_memory, name)
    if name == 'HAS_SHMEM':
        return importlib.util.find_spec(__package__ + '.shared_memory') is not None
    raise AttributeError('module %r has no attribute %r' % (__name__, name))


#
# Pickling of types that managers hand back
#

def reduce_array(a):
    return array.array, (a.typecode, a.tobytes())


reduction.register(array.array, reduce_array)


def rebuild_as_list(obj):
    return list, (list(obj),)


for _view_type in (type({}.items()), type({}.keys()), type({}.values())):
    reduction.register(_view_type, rebuild_as_list)
del _view_type


#
# Identity of a shared object
#

class Token(object):
    """Names a shared object: its typeid, its server's address, its id."""

    __slots__ = ('typeid', 'address', 'id')

    def __init__(self, typeid, address, id):
        self.typeid = typeid
        self.address = address
        self.id = id

    def __getstate__(self):
        return (self.typeid, self.address, self.id)

    def __setstate__(self, state):
        self.typeid, self.address, self.id = state

    def __repr__(self):
        return '%s(typeid=%r, address=%r, id=%r)' % (
            type(self).__name__, self.typeid, self.address, self.id)


#
# Requests and replies
#

def dispatch(c, id, methodname, args=(), kwds={}):
    """Send one request over connection c and return its result."""
    c.send((id, methodname, args, kwds))
    kind, result = c.recv()
    if kind == '#RETURN':
        return result
    raise convert_to_error(kind, result)


def convert_to_error(kind, result):
    """The exception a non-'#RETURN' reply stands for."""
    if kind == '#ERROR':
        return result
    if kind in ('#TRACEBACK', '#UNSERIALIZABLE'):
        if not isinstance(result, str):
            raise TypeError("Result {0!r} (kind '{1}') type is {2}, not str".format(
                result, kind, type(result)))
        if kind == '#UNSERIALIZABLE':
            return RemoteError('Unserializable message: %s\n' % result)
        return RemoteError(result)
    return ValueError('Unrecognized message type {!r}'.format(kind))


class RemoteError(Exception):
    """An error in the manager process; str() shows its traceback."""

    def __str__(self):
        return '\n' + '-' * 75 + '\n' + str(self.args[0]) + '-' * 75


def all_methods(obj):
    """Names of the callable attributes of obj."""
    return [name for name in dir(obj) if callable(getattr(obj, name))]


def public_methods(obj):
    """Names of the callable attributes of obj not starting with '_'."""
    return [name for name in all_methods(obj) if name[0] != '_']


# The reply to 'accept_connection' by which an mphost server offers control
# requests (ident None) on the served connection. Stock clients ignore it.
_CONTROL_ON_CONNECTION = 'mphost:control-on-connection'
# Control requests a served connection accepts (the others need their own).
_CONNECTION_CONTROLS = frozenset(['create', 'get_methods', 'debug_info', 'number_of_objects',
                                  'dummy', 'incref', 'decref'])


#
# The server, run in the manager's process
#

class Server(object):
    """Owns the shared objects and serves requests for them."""

    public = ['shutdown', 'create', 'accept_connection', 'get_methods',
              'debug_info', 'number_of_objects', 'dummy', 'incref', 'decref']

    def __init__(self, registry, address, authkey, serializer):
        if not isinstance(authkey, bytes):
            raise TypeError('Authkey {0!r} is type {1!s}, not bytes'.format(authkey, type(authkey)))
        self.registry = registry
        self.authkey = process.AuthenticationString(authkey)
        Listener, Client = listener_client[serializer]
        self._serializer = serializer
        # Authentication happens in the connection's own thread, so that a
        # slow or hostile client cannot hold up the others.
        self.listener = Listener(address=address, backlog=16)
        self.address = self.listener.address
        self.id_to_obj = {'0': (None, ())}
        self.id_to_refcount = {}
        self.id_to_local_proxy_obj = {}
        self.mutex = threading.Lock()

    def serve_forever(self):
        """Serve until a client asks for shutdown; then exit the process."""
        self.stop_event = threading.Event()
        process.current_process()._manager_server = self
        try:
            accepter = threading.Thread(target=self.accepter, name='manager-accepter', daemon=True)
            accepter.start()
            try:
                while not self.stop_event.is_set():
                    self.stop_event.wait(1)
            except (KeyboardInterrupt, SystemExit):
                pass
        finally:
            if sys.stdout != sys.__stdout__:
                util.debug('resetting stdout, stderr')
                sys.stdout = sys.__stdout__
                sys.stderr = sys.__stderr__
            sys.exit(0)

    def accepter(self):
        while True:
            try:
                c = self.listener.accept()
            except OSError:
                if getattr(self.listener, '_listener', True) is None:
                    return  # the listener was closed
                # Out of descriptors or the like: do not spin on it.
                time.sleep(0.01)
                continue
            t = threading.Thread(target=self.handle_request, args=(c,), daemon=True)
            t.start()

    def _handle_request(self, c):
        try:
            connection.deliver_challenge(c, self.authkey)
            connection.answer_challenge(c, self.authkey)
        except Exception as e:
            # Nothing is told to a peer that failed to authenticate.
            util.info('manager refused a connection: %r', e)
            return
        request = None
        try:
            request = c.recv()
            _ignore, funcname, args, kwds = request
            if funcname not in self.public:
                raise AttributeError('%r unrecognized' % (funcname,))
            func = getattr(self, funcname)
        except Exception:
            msg = ('#TRACEBACK', format_exc())
        else:
            try:
                result = func(c, *args, **kwds)
            except Exception:
                msg = ('#TRACEBACK', format_exc())
            else:
                msg = ('#RETURN', result)
        try:
            c.send(msg)
        except Exception as e:
            try:
                c.send(('#TRACEBACK', format_exc()))
            except Exception:
                pass
            util.info('Failure to send message: %r', msg)
            util.info(' ... request was %r', request)
            util.info(' ... exception was %r', e)

    def handle_request(self, conn):
        """Authenticate a new connection and serve its first request."""
        try:
            self._handle_request(conn)
        except SystemExit:
            # serve_client() ends its thread this way at end of file.
            pass
        finally:
            conn.close()

    def serve_client(self, conn):
        """Serve the requests of one client thread until it goes away."""
        util.debug('starting server thread to service %r', threading.current_thread().name)
        if type(conn) is connection.Connection:
            stream = _Stream(conn, _SERVER_SPIN)
            recv = stream.recv
            send = stream.send
        else:
            recv = conn.recv
            send = conn.send
        id_to_obj = self.id_to_obj
        is_stopping = self.stop_event.is_set

        while not is_stopping():
            methodname = obj = ident = None
            try:
                request = recv()
            except EOFError:
                util.debug('got EOF -- exiting thread serving %r', threading.current_thread().name)
                sys.exit(0)
            except OSError as e:
                # The stream is broken (cut inside a message, bad length):
                # nothing more can be read from it.
                util.info('connection of %r broken: %r', threading.current_thread().name, e)
                conn.close()
                sys.exit(1)
            except Exception:
                msg = ('#TRACEBACK', format_exc())
            else:
                try:
                    ident, methodname, args, kwds = request
                    if ident is None:
                        msg = self._serve_control(conn, methodname, args, kwds)
                    else:
                        try:
                            obj, exposed, gettypeid = id_to_obj[ident]
                        except KeyError as ke:
                            try:
                                obj, exposed, gettypeid = self.id_to_local_proxy_obj[ident]
                            except KeyError:
                                raise ke
                        if methodname not in exposed:
                            raise AttributeError('method %r of %r object is not in exposed=%r'
                                                 % (methodname, type(obj), exposed))
                        function = getattr(obj, methodname)
                        try:
                            res = function(*args, **kwds)
                        except Exception as e:
                            msg = ('#ERROR', e)
                        else:
                            typeid = gettypeid and gettypeid.get(methodname, None)
                            if typeid:
                                rident, rexposed = self.create(conn, typeid, res)
                                token = Token(typeid, self.address, rident)
                                msg = ('#PROXY', (rexposed, token))
                            else:
                                msg = ('#RETURN', res)
                except AttributeError:
                    if methodname is None:
                        msg = ('#TRACEBACK', format_exc())
                    else:
                        try:
                            fallback_func = self.fallback_mapping[methodname]
                            result = fallback_func(self, conn, ident, obj, *args, **kwds)
                            msg = ('#RETURN', result)
                        except Exception:
                            msg = ('#TRACEBACK', format_exc())
                except Exception:
                    msg = ('#TRACEBACK', format_exc())
            try:
                try:
                    send(msg)
                except Exception:
                    send(('#UNSERIALIZABLE', format_exc()))
            except Exception as e:
                util.info('exception in thread serving %r', threading.current_thread().name)
                util.info(' ... message was %r', msg)
                util.info(' ... exception was %r', e)
                conn.close()
                sys.exit(1)

    def _serve_control(self, conn, funcname, args, kwds):
        # A control request on a served connection (mphost clients only).
        try:
            if funcname not in _CONNECTION_CONTROLS or funcname not in self.public:
                raise AttributeError('%r is not a control request' % (funcname,))
            return ('#RETURN', getattr(self, funcname)(conn, *args, **kwds))
        except Exception:
            return ('#TRACEBACK', format_exc())

    def fallback_getvalue(self, conn, ident, obj):
        return obj

    def fallback_str(self, conn, ident, obj):
        return str(obj)

    def fallback_repr(self, conn, ident, obj):
        return repr(obj)

    fallback_mapping = {
        '__str__': fallback_str,
        '__repr__': fallback_repr,
        '#GETVALUE': fallback_getvalue,
    }

    def dummy(self, c):
        pass

    def debug_info(self, c):
        """The live objects with their reference counts, as text."""
        with self.mutex:
            lines = []
            for ident in sorted(self.id_to_refcount):
                if ident != '0':
                    lines.append('  %s:       refcount=%s\n    %s' % (
                        ident, self.id_to_refcount[ident], str(self.id_to_obj[ident][0])[:75]))
            return '\n'.join(lines)

    def number_of_objects(self, c):
        """How many shared objects are referenced."""
        return len(self.id_to_refcount)

    def shutdown(self, c):
        """Reply, then stop serving (the process exits)."""
        try:
            util.debug('manager received shutdown message')
            c.send(('#RETURN', None))
        except:  # noqa: E722 -- whatever happens, stop
            import traceback
            traceback.print_exc()
        finally:
            self.stop_event.set()

    def create(self, c, typeid, /, *args, **kwds):
        """Create a shared object of `typeid`; returns (ident, exposed)."""
        with self.mutex:
            callable, exposed, method_to_typeid, proxytype = self.registry[typeid]
            if callable is None:
                if kwds or len(args) != 1:
                    raise ValueError('Without callable, must have one non-keyword argument')
                obj = args[0]
            else:
                obj = callable(*args, **kwds)
            if exposed is None:
                exposed = public_methods(obj)
            if method_to_typeid is not None:
                if not isinstance(method_to_typeid, dict):
                    raise TypeError('Method_to_typeid {0!r}: type {1!s}, not dict'.format(
                        method_to_typeid, type(method_to_typeid)))
                exposed = list(exposed) + list(method_to_typeid)
            ident = '%x' % id(obj)
            util.debug('%r callable returned object with id %r', typeid, ident)
            self.id_to_obj[ident] = (obj, set(exposed), method_to_typeid)
            if ident not in self.id_to_refcount:
                self.id_to_refcount[ident] = 0
        self.incref(c, ident)
        return ident, tuple(exposed)

    def get_methods(self, c, token):
        """The exposed methods of the object named by token."""
        return tuple(self.id_to_obj[token.id][1])

    def accept_connection(self, c, name):
        """Serve this connection's requests in this thread from now on."""
        threading.current_thread().name = name
        offer = _CONTROL_ON_CONNECTION if self._serializer == 'pickle' else None
        c.send(('#RETURN', offer))
        self.serve_client(c)

    def incref(self, c, ident):
        with self.mutex:
            try:
                self.id_to_refcount[ident] += 1
            except KeyError as ke:
                # An object the manager itself still references (through a
                # proxy it holds) gets an outside reference again.
                if ident in self.id_to_local_proxy_obj:
                    self.id_to_refcount[ident] = 1
                    self.id_to_obj[ident] = self.id_to_local_proxy_obj[ident]
                    util.debug('Server re-enabled tracking & INCREF %r', ident)
                else:
                    raise ke

    def decref(self, c, ident):
        if ident not in self.id_to_refcount and ident in self.id_to_local_proxy_obj:
            util.debug('Server DECREF skipping %r', ident)
            return
        with self.mutex:
            if self.id_to_refcount[ident] <= 0:
                raise AssertionError('Id {0!s} ({1!r}) has refcount {2:n}, not 1+'.format(
                    ident, self.id_to_obj[ident], self.id_to_refcount[ident]))
            self.id_to_refcount[ident] -= 1
            if self.id_to_refcount[ident] == 0:
                del self.id_to_refcount[ident]
        if ident not in self.id_to_refcount:
            # Drop the object outside the mutex: it may hold proxies whose
            # finalizers come back here.
            self.id_to_obj[ident] = (None, (), None)
            util.debug('disposing of obj with id %r', ident)
            with self.mutex:
                del self.id_to_obj[ident]


#
# Manager state
#

class State(object):
    __slots__ = ['value']
    INITIAL = 0
    STARTED = 1
    SHUTDOWN = 2


listener_client = {
    'pickle': (connection.Listener, connection.Client),
    'xmlrpclib': (connection.XmlListener, connection.XmlClient),
}


def _state_error(state, started_message='Already started server',
                 shutdown_message='Manager has shut down'):
    if state.value == State.STARTED:
        return ProcessError(started_message)
    if state.value == State.SHUTDOWN:
        return ProcessError(shutdown_message)
    return ProcessError('Unknown state {!r}'.format(state.value))


#
# The manager, in the client process
#

class BaseManager(object):
    """Starts (or connects to) a server process and creates shared objects
    in it; subclasses register the types with ``register()``."""

    _registry = {}
    _Server = Server

    def __init__(self, address=None, authkey=None, serializer='pickle', ctx=None, *,
                 shutdown_timeout=1.0):
        if authkey is None:
            authkey = process.current_process().authkey
        self._address = address
        self._authkey = process.AuthenticationString(authkey)
        self._state = State()
        self._state.value = State.INITIAL
        self._serializer = serializer
        self._Listener, self._Client = listener_client[serializer]
        self._ctx = ctx or get_context()
        self._shutdown_timeout = shutdown_timeout
        self._process = None

    def get_server(self):
        """A Server for this manager, to run with serve_forever()."""
        if self._state.value != State.INITIAL:
            raise _state_error(self._state)
        return self._Server(self._registry, self._address, self._authkey, self._serializer)

    def connect(self):
        """Use the server already running at self.address."""
        conn = self._Client(self._address, authkey=self._authkey)
        try:
            dispatch(conn, None, 'dummy')
        finally:
            conn.close()
        self._state.value = State.STARTED

    def start(self, initializer=None, initargs=()):
        """Start the server process (with the context's start method)."""
        if self._state.value != State.INITIAL:
            raise _state_error(self._state)
        if initializer is not None and not callable(initializer):
            raise TypeError('initializer must be a callable')
        reader, writer = connection.Pipe(duplex=False)
        self._process = self._ctx.Process(
            target=type(self)._run_server,
            args=(self._registry, self._address, self._authkey, self._serializer,
                  writer, initializer, initargs))
        ident = ':'.join(str(i) for i in self._process._identity)
        self._process.name = type(self).__name__ + '-' + ident
        self._process.start()
        writer.close()
        try:
            self._address = reader.recv()
        finally:
            reader.close()
        self._state.value = State.STARTED
        self.shutdown = util.Finalize(
            self, type(self)._finalize_manager,
            args=(self._process, self._address, self._authkey, self._state,
                  self._Client, self._shutdown_timeout),
            exitpriority=0)

    @classmethod
    def _run_server(cls, registry, address, authkey, serializer, writer,
                    initializer=None, initargs=()):
        """Entry of the manager process: create the server, report its
        address, serve."""
        # Ctrl-C is for the program, which shuts the manager down itself.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if initializer is not None:
            initializer(*initargs)
        server = cls._Server(registry, address, authkey, serializer)
        writer.send(server.address)
        writer.close()
        util.info('manager serving at %r', server.address)
        server.serve_forever()

    def _control(self, funcname, args=(), kwds={}, connect=False):
        return _control(self._address, self._authkey, self._serializer, self._Client,
                        funcname, args, kwds, connect)

    def _create(self, typeid, /, *args, **kwds):
        """Create a shared object; returns (token, exposed)."""
        assert self._state.value == State.STARTED, 'server not yet started'
        ident, exposed = self._control('create', (typeid,) + args, kwds, connect=True)
        return Token(typeid, self._address, ident), exposed

    def join(self, timeout=None):
        """Wait for the server process (if this manager started one)."""
        if self._process is not None:
            self._process.join(timeout)
            if not self._process.is_alive():
                self._process = None

    def _debug_info(self):
        return self._control('debug_info')

    def _number_of_objects(self):
        return self._control('number_of_objects')

    def __enter__(self):
        if self._state.value == State.INITIAL:
            self.start()
        if self._state.value != State.STARTED:
            if self._state.value == State.INITIAL:
                raise ProcessError('Unable to start server')
            raise _state_error(self._state)
        return self

    def __exit__(self, exc_type, exc_val, exc_tb):
        self.shutdown()

    @staticmethod
    def _finalize_manager(process, address, authkey, state, _Client, shutdown_timeout):
        """Stop the server process: ask, then terminate, then kill."""
        if process.is_alive():
            util.info('sending shutdown message to manager')
            try:
                conn = _Client(address, authkey=authkey)
                try:
                    dispatch(conn, None, 'shutdown')
                finally:
                    conn.close()
            except Exception:
                pass
            process.join(timeout=shutdown_timeout)
            if process.is_alive():
                util.info('manager still alive')
                if hasattr(process, 'terminate'):
                    util.info('trying to `terminate()` manager process')
                    process.terminate()
                    process.join(timeout=shutdown_timeout)
                    if process.is_alive():
                        util.info('manager still alive after terminate')
                        process.kill()
                        process.join()
        state.value = State.SHUTDOWN
        try:
            del BaseProxy._address_to_local[address]
        except KeyError:
            pass

    @property
    def address(self):
        return self._address

    @classmethod
    def register(cls, typeid, callable=None, proxytype=None, exposed=None,
                 method_to_typeid=None, create_method=True):
        """Register a type: `callable` makes the object in the server,
        `proxytype` wraps it in clients; `create_method` adds a method
        named typeid to the manager."""
        if '_registry' not in cls.__dict__:
            cls._registry = cls._registry.copy()
        if proxytype is None:
            proxytype = AutoProxy
        exposed = exposed or getattr(proxytype, '_exposed_', None)
        method_to_typeid = method_to_typeid or getattr(proxytype, '_method_to_typeid_', None)
        if method_to_typeid:
            for key, value in list(method_to_typeid.items()):
                assert type(key) is str, '%r is not a string' % key
                assert type(value) is str, '%r is not a string' % value
        cls._registry[typeid] = (callable, exposed, method_to_typeid, proxytype)
        if create_method:
            def create(self, /, *args, **kwds):
                util.debug('requesting creation of a shared %r object', typeid)
                token, exp = self._create(typeid, *args, **kwds)
                proxy = proxytype(token, self._serializer, manager=self,
                                  authkey=self._authkey, exposed=exp)
                # The proxy holds its own reference now.
                self._control('decref', (token.id,))
                return proxy
            create.__name__ = typeid
            create.__qualname__ = cls.__qualname__ + '.' + typeid
            setattr(cls, typeid, create)


#
# Per-thread connections of the client side
#

class ProcessLocalSet(set):
    """A set emptied in a forked child."""

    def __init__(self):
        util.register_after_fork(self, lambda obj: obj.clear())

    def __reduce__(self):
        return type(self), ()


def _local_state(address):
    """(thread-local connection holder, ids referenced) for a manager address."""
    # Lock-free when it exists: a finalizer may get here while this thread
    # holds the mutex below.
    local = BaseProxy._address_to_local.get(address)
    if local is not None:
        return local
    with BaseProxy._mutex:
        local = BaseProxy._address_to_local.get(address)
        if local is None:
            local = util.ForkAwareLocal(), ProcessLocalSet()
            BaseProxy._address_to_local[address] = local
    return local


def _open_connection(tls, address, authkey, Client):
    """Open this thread's served connection to the manager at address."""
    util.debug('making connection to manager')
    name = process.current_process().name
    if threading.current_thread().name != 'MainThread':
        name += '|' + threading.current_thread().name
    conn = Client(address, authkey=authkey)
    try:
        offer = dispatch(conn, None, 'accept_connection', (name,))
    except BaseException:
        conn.close()
        raise
    tls.control = offer == _CONTROL_ON_CONNECTION
    tls.busy = False
    tls.stream = _Stream(conn, _CLIENT_SPIN) if type(conn) is connection.Connection else None
    tls.connection = conn
    return conn


# Seconds a client spins for a reply, and a served connection for the next
# request, before sleeping in read(); after a wait that the spin did not
# cover, that many waits (doubling up to the maximum) go straight to sleep.
_CLIENT_SPIN = 50e-6
_SERVER_SPIN = 50e-6
_MAX_SPIN_BACKOFF = 256
_STREAM_BUFFER = 1 << 16
# Messages up to this size go out as one buffer (header and payload joined).
_JOIN_LIMIT = 1 << 14


class _Stream:
    """Request/reply messages over a manager connection that one thread owns.

    The framing is the Connection's (so either side may be a stock python3
    process). Reading is buffered, so that a message usually takes one
    read(): only the owning thread reads the descriptor. Before a read
    would sleep, the stream spins briefly (polling, yielding the CPU
    between polls): a peer on another core answers within microseconds,
    while waking a sleeping process costs tens of them. Spinning adapts:
    after waits it did not cover, it is skipped for a growing number of
    waits, so an idle or slow peer costs next to nothing.
    """

    __slots__ = ('_conn', '_fd', '_buf', '_view', '_start', '_end', '_poll',
                 '_budget', '_skip', '_backoff', '_encoder')

    def __init__(self, conn, spin_budget):
        self._conn = conn
        self._fd = conn.fileno()
        self._buf = bytearray(_STREAM_BUFFER)
        self._view = memoryview(self._buf)
        self._start = 0
        self._end = 0
        poller = select.poll()
        poller.register(self._fd, connection._POLLIN)
        self._poll = poller.poll
        self._budget = spin_budget
        self._skip = 0
        self._backoff = 1
        self._encoder = connection._Encoder()

    def encode(self, obj):
        """The frame(s) carrying obj; nothing is written yet (so that a
        pickling error leaves the stream in step)."""
        encoder = self._encoder
        data = encoder.dumps(obj) if not encoder.busy else connection._dumps(obj)
        n = len(data)
        if n <= _JOIN_LIMIT:
            return [connection._HEADER.pack(n) + data]
        if n > connection._MAX_SHORT:
            return [connection._LONG_MARK + connection._LONG_HEADER.pack(n), data]
        return [connection._HEADER.pack(n), data]

    def write(self, parts):
        if len(parts) == 1:
            frame = parts[0]
            written = os.write(self._fd, frame)
            if written != len(frame):
                self._conn._write_all([memoryview(frame)[written:]])
        else:
            self._conn._write_all(parts)

    def send(self, obj):
        self.write(self.encode(obj))

    def recv(self):
        """The next message, unpickled (from the buffer, without a copy)."""
        return connection._unpickle_message(self._next_message())

    def recv_bytes(self):
        """The next message, as an object of its own."""
        data = self._next_message()
        return data.tobytes() if type(data) is memoryview else data

    def _spin(self):
        # Wait (briefly, busily) for something to read; see the class doc.
        if self._skip:
            self._skip -= 1
            return
        # The peer needs a few microseconds to answer: yield before the
        # first look.
        poll = self._poll
        clock = time.monotonic
        pause = os.sched_yield
        deadline = clock() + self._budget
        while True:
            pause()
            if poll(0):
                self._backoff = 1
                return
            if clock() > deadline:
                break
        self._skip = self._backoff
        self._backoff = min(self._backoff * 2, _MAX_SPIN_BACKOFF)

    def _fill(self, need):
        """Read until `need` bytes from the start of the buffer are there."""
        start = self._start
        end = self._end
        if start:
            # Move the partial message to the front.
            self._buf[:end - start] = self._view[start:end]
            end -= start
            self._start = 0
            self._end = end
        view = self._view
        fd = self._fd
        while end < need:
            if end == 0:
                self._spin()
            n = os.readv(fd, [view[end:]])
            if n == 0:
                if end == 0:
                    raise EOFError
                raise OSError('got end of file during message')
            end += n
            self._end = end
        return end

    def _next_message(self):
        # A memoryview into the buffer (valid until the next read), or a
        # bytearray for a message larger than the buffer.
        start = self._start
        end = self._end
        if end - start < 4:
            end = self._fill(4)
            start = 0
        size, = connection._HEADER.unpack_from(self._buf, start)
        header = 4
        if size < 0:
            if size != -1:
                raise OSError('bad message length')
            if end - start < 12:
                end = self._fill(12)
                start = 0
            size, = connection._LONG_HEADER.unpack_from(self._buf, start + 4)
            header = 12
        total = header + size
        if end - start >= total:
            self._start = start + total
            return self._view[start + header:start + total]
        if total <= len(self._buf):
            self._fill(total)
            self._start = total
            return self._view[header:total]
        # Larger than the buffer: take what is buffered, read the rest directly.
        payload = bytearray(size)
        have = end - start - header
        payload[:have] = self._view[start + header:end]
        self._start = self._end = 0
        with memoryview(payload) as rest:
            self._conn._read_into(rest[have:])
        return payload


def _drop_connection(tls):
    # A call was interrupted between request and reply: the stream is out
    # of step, start afresh next time.
    conn = tls.__dict__.pop('connection', None)
    tls.__dict__.pop('stream', None)
    if conn is not None:
        conn.close()
    tls.busy = False


def _call(tls, conn, request):
    """One request and its reply over this thread's connection; returns
    (kind, result)."""
    tls.busy = True
    stream = tls.stream
    try:
        # A pickling error here leaves the connection in step.
        frames = stream.encode(request) if stream is not None else connection._dumps(request)
    except BaseException:
        tls.busy = False
        raise
    try:
        if stream is not None:
            stream.write(frames)
            data = stream.recv_bytes()
        else:
            conn.send_bytes(frames)
            data = conn.recv_bytes()
    except BaseException:
        _drop_connection(tls)
        raise
    tls.busy = False
    # Unpickling may build proxies, which may use this connection again.
    return connection._unpickle_message(data)


def _call_aside(address, authkey, Client, request):
    """One request on a served connection opened for it alone."""
    holder = types.SimpleNamespace()
    conn = _open_connection(holder, address, authkey, Client)
    try:
        if holder.stream is None:
            conn.send(request)
            return conn.recv()
        return _call(holder, conn, request)
    finally:
        conn.close()


def _control(address, authkey, serializer, Client, funcname, args=(), kwds={}, connect=False,
             tls=None):
    """Run a Server function: on this thread's connection when it can take
    control requests (opening one first if `connect`), else on a connection
    of its own as the stdlib does."""
    if serializer == 'pickle':
        if tls is None:
            tls = _local_state(address)[0]
        conn = getattr(tls, 'connection', None)
        if conn is None and connect:
            conn = _open_connection(tls, address, authkey, Client)
        if conn is not None and getattr(tls, 'control', False) and not tls.busy:
            kind, result = _call(tls, conn, (None, funcname, args, kwds))
            if kind == '#RETURN':
                return result
            raise convert_to_error(kind, result)
    conn = Client(address, authkey=authkey)
    try:
        return dispatch(conn, None, funcname, args, kwds)
    finally:
        conn.close()


def _registry_for(typeid):
    """The registry of some manager class that knows typeid (for proxies
    that came without their manager, e.g. in a child process)."""
    pending = [BaseManager]
    while pending:
        cls = pending.pop()
        if typeid in cls.__dict__.get('_registry', {}):
            return cls._registry
        pending.extend(cls.__subclasses__())
    return None


#
# Proxies
#

class BaseProxy(object):
    """Base of the proxies of shared objects."""

    _address_to_local = {}
    _mutex = util.ForkAwareThreadLock()

    def __init__(self, token, serializer, manager=None, authkey=None, exposed=None,
                 incref=True, manager_owned=False):
        tls, idset = _local_state(token.address)
        # The connection this thread uses for the manager at token.address.
        self._tls = tls
        # Ids of the objects of that manager this process holds references to.
        self._idset = idset
        self._token = token
        self._id = token.id
        self._manager = manager
        self._serializer = serializer
        self._Client = listener_client[serializer][1]
        # True for a proxy rebuilt inside the manager's own process.
        self._owned_by_manager = manager_owned
        if authkey is not None:
            self._authkey = process.AuthenticationString(authkey)
        elif self._manager is not None:
            self._authkey = self._manager._authkey
        else:
            self._authkey = process.current_process().authkey
        if incref:
            self._incref()
        util.register_after_fork(self, BaseProxy._after_fork)

    def _connect(self):
        _open_connection(self._tls, self._token.address, self._authkey, self._Client)

    def _callmethod(self, methodname, args=(), kwds={}):
        """Call a method of the referent; return a copy of the result (or
        a proxy, for methods registered in method_to_typeid)."""
        tls = self._tls
        try:
            conn = tls.connection
        except AttributeError:
            util.debug('thread %r does not own a connection', threading.current_thread().name)
            self._connect()
            conn = tls.connection
        if tls.busy:
            # Called while this thread's connection waits for a reply (from
            # a signal handler, or while pickling the arguments of a call):
            # use a connection of its own.
            kind, result = _call_aside(self._token.address, self._authkey, self._Client,
                                       (self._id, methodname, args, kwds))
        elif self._serializer == 'pickle':
            kind, result = _call(tls, conn, (self._id, methodname, args, kwds))
        else:
            try:
                conn.send((self._id, methodname, args, kwds))
                kind, result = conn.recv()
            except BaseException:
                _drop_connection(tls)
                raise
        if kind == '#RETURN':
            return result
        if kind == '#PROXY':
            exposed, token = result
            registry = self._manager._registry if self._manager is not None \
                else _registry_for(token.typeid)
            proxytype = registry[token.typeid][-1] if registry else AutoProxy
            token.address = self._token.address
            proxy = proxytype(token, self._serializer, manager=self._manager,
                              authkey=self._authkey, exposed=exposed)
            _control(token.address, self._authkey, self._serializer, self._Client,
                     'decref', (token.id,))
            return proxy
        raise convert_to_error(kind, result)

    def _getvalue(self):
        """A copy of the referent."""
        return self._callmethod('#GETVALUE')

    def _incref(self):
        if self._owned_by_manager:
            util.debug('owned_by_manager skipped INCREF of %r', self._token.id)
            return
        _control(self._token.address, self._authkey, self._serializer, self._Client,
                 'incref', (self._id,))
        util.debug('INCREF %r', self._token.id)
        self._idset.add(self._id)
        state = self._manager and self._manager._state
        self._close = util.Finalize(
            self, BaseProxy._decref,
            args=(self._token, self._authkey, state, self._tls, self._idset,
                  self._Client, self._serializer),
            exitpriority=10)

    @staticmethod
    def _decref(token, authkey, state, tls, idset, _Client, serializer='pickle'):
        idset.discard(token.id)
        if state is None or state.value == State.STARTED:
            try:
                util.debug('DECREF %r', token.id)
                _control(token.address, authkey, serializer, _Client, 'decref', (token.id,),
                         tls=tls)
            except Exception as e:
                util.debug('... decref failed %s', e)
        else:
            util.debug('DECREF %r -- manager already shutdown', token.id)
        # No more references to this manager's objects in this process:
        # this thread's connection can go (unless it is in the middle of a call).
        if not idset and hasattr(tls, 'connection') and not getattr(tls, 'busy', False):
            util.debug('thread %r has no more proxies so closing conn',
                       threading.current_thread().name)
            tls.connection.close()
            del tls.connection
            tls.__dict__.pop('stream', None)

    def _after_fork(self):
        self._manager = None
        try:
            self._incref()
        except Exception as e:
            # The manager may have shut down.
            util.info('incref failed: %s' % e)

    def __reduce__(self):
        kwds = {}
        if get_spawning_popen() is not None:
            kwds['authkey'] = self._authkey
        if getattr(self, '_isauto', False):
            kwds['exposed'] = self._exposed_
            return (RebuildProxy, (AutoProxy, self._token, self._serializer, kwds))
        return (RebuildProxy, (type(self), self._token, self._serializer, kwds))

    def __deepcopy__(self, memo):
        return self._getvalue()

    def __repr__(self):
        return '<%s object, typeid %r at %#x>' % (type(self).__name__, self._token.typeid, id(self))

    def __str__(self):
        """The referent's repr (or a fall-back if the call fails)."""
        try:
            return self._callmethod('__repr__')
        except Exception:
            return repr(self)[:-1] + "; '__str__()' failed>"


def RebuildProxy(func, token, serializer, kwds):
    """Unpickle a proxy (inside the manager process it is marked as owned
    by the manager, and takes no reference)."""
    server = getattr(process.current_process(), '_manager_server', None)
    if server and server.address == token.address:
        util.debug('Rebuild a proxy owned by manager, token=%r', token)
        kwds['manager_owned'] = True
        if token.id not in server.id_to_local_proxy_obj:
            server.id_to_local_proxy_obj[token.id] = server.id_to_obj[token.id]
    incref = kwds.pop('incref', True) and \
        not getattr(process.current_process(), '_inheriting', False)
    return func(token, serializer, incref=incref, **kwds)


def _proxy_method(name):
    def method(self, /, *args, **kwds):
        return self._callmethod(name, args, kwds)
    method.__name__ = name
    return method


def MakeProxyType(name, exposed, _cache={}):
    """A proxy class (cached) with one method per name in `exposed`."""
    exposed = tuple(exposed)
    try:
        return _cache[(name, exposed)]
    except KeyError:
        pass
    namespace = {meth: _proxy_method(meth) for meth in exposed}
    proxy_type = type(name, (BaseProxy,), namespace)
    proxy_type._exposed_ = exposed
    _cache[(name, exposed)] = proxy_type
    return proxy_type


def AutoProxy(token, serializer, manager=None, authkey=None, exposed=None, incref=True,
              manager_owned=False):
    """A proxy whose methods are those the server exposes for token."""
    _Client = listener_client[serializer][1]
    if exposed is None:
        exposed = _control(token.address, authkey if authkey is not None else
                           (manager._authkey if manager is not None
                            else process.current_process().authkey),
                           serializer, _Client, 'get_methods', (token,))
    if authkey is None and manager is not None:
        authkey = manager._authkey
    if authkey is None:
        authkey = process.current_process().authkey
    proxy_type = MakeProxyType('AutoProxy[%s]' % token.typeid, exposed)
    proxy = proxy_type(token, serializer, manager=manager, authkey=authkey,
                       incref=incref, manager_owned=manager_owned)
    proxy._isauto = True
    return proxy


#
# Types SyncManager serves
#

class Namespace(object):
    """A bag of attributes."""

    def __init__(self, /, **kwds):
        self.__dict__.update(kwds)

    def __repr__(self):
        shown = sorted('%s=%r' % (name, value) for name, value in list(self.__dict__.items())
                       if not name.startswith('_'))
        return '%s(%s)' % (type(self).__name__, ', '.join(shown))


class Value(object):
    """A value with get()/set() and a `value` property (no lock: the
    server serializes the calls)."""

    def __init__(self, typecode, value, lock=True):
        self._typecode = typecode
        self._value = value

    def get(self):
        return self._value

    def set(self, value):
        self._value = value

    def __repr__(self):
        return '%s(%r, %r)' % (type(self).__name__, self._typecode, self._value)

    value = property(get, set)


def Array(typecode, sequence, lock=True):
    return array.array(typecode, sequence)


#
# Proxy types of SyncManager
#

class IteratorProxy(BaseProxy):
    _exposed_ = ('__next__', 'send', 'throw', 'close')

    def __iter__(self):
        return self

    def __next__(self, *args):
        return self._callmethod('__next__', args)

    def send(self, *args):
        return self._callmethod('send', args)

    def throw(self, *args):
        return self._callmethod('throw', args)

    def close(self, *args):
        return self._callmethod('close', args)


class AcquirerProxy(BaseProxy):
    _exposed_ = ('acquire', 'release')

    def acquire(self, blocking=True, timeout=None):
        args = (blocking,) if timeout is None else (blocking, timeout)
        return self._callmethod('acquire', args)

    def release(self):
        return self._callmethod('release')

    def __enter__(self):
        return self._callmethod('acquire')

    def __exit__(self, exc_type, exc_val, exc_tb):
        return self._callmethod('release')


class ConditionProxy(AcquirerProxy):
    _exposed_ = ('acquire', 'release', 'wait', 'notify', 'notify_all')

    def wait(self, timeout=None):
        return self._callmethod('wait', (timeout,))

    def notify(self, n=1):
        return self._callmethod('notify', (n,))

    def notify_all(self):
        return self._callmethod('notify_all')

    def wait_for(self, predicate, timeout=None):
        result = predicate()
        if result:
            return result
        endtime = None if timeout is None else time.monotonic() + timeout
        waittime = None
        while not result:
            if endtime is not None:
                waittime = endtime - time.monotonic()
                if waittime <= 0:
                    break
            self.wait(waittime)
            result = predicate()
        return result


class EventProxy(BaseProxy):
    _exposed_ = ('is_set', 'set', 'clear', 'wait')

    def is_set(self):
        return self._callmethod('is_set')

    def set(self):
        return self._callmethod('set')

    def clear(self):
        return self._callmethod('clear')

    def wait(self, timeout=None):
        return self._callmethod('wait', (timeout,))


class BarrierProxy(BaseProxy):
    _exposed_ = ('__getattribute__', 'wait', 'abort', 'reset')

    def wait(self, timeout=None):
        return self._callmethod('wait', (timeout,))

    def abort(self):
        return self._callmethod('abort')

    def reset(self):
        return self._callmethod('reset')

    @property
    def parties(self):
        return self._callmethod('__getattribute__', ('parties',))

    @property
    def n_waiting(self):
        return self._callmethod('__getattribute__', ('n_waiting',))

    @property
    def broken(self):
        return self._callmethod('__getattribute__', ('broken',))


class NamespaceProxy(BaseProxy):
    _exposed_ = ('__getattribute__', '__setattr__', '__delattr__')

    def __getattr__(self, key):
        if key[0] == '_':
            return object.__getattribute__(self, key)
        callmethod = object.__getattribute__(self, '_callmethod')
        return callmethod('__getattribute__', (key,))

    def __setattr__(self, key, value):
        if key[0] == '_':
            return object.__setattr__(self, key, value)
        callmethod = object.__getattribute__(self, '_callmethod')
        return callmethod('__setattr__', (key, value))

    def __delattr__(self, key):
        if key[0] == '_':
            return object.__delattr__(self, key)
        callmethod = object.__getattribute__(self, '_callmethod')
        return callmethod('__delattr__', (key,))


class ValueProxy(BaseProxy):
    _exposed_ = ('get', 'set')

    def get(self):
        return self._callmethod('get')

    def set(self, value):
        return self._callmethod('set', (value,))

    value = property(get, set)

    __class_getitem__ = classmethod(types.GenericAlias)


BaseListProxy = MakeProxyType('BaseListProxy', (
    '__add__', '__contains__', '__delitem__', '__getitem__', '__len__',
    '__mul__', '__reversed__', '__rmul__', '__setitem__',
    'append', 'count', 'extend', 'index', 'insert', 'pop', 'remove',
    'reverse', 'sort', '__imul__'))


class ListProxy(BaseListProxy):
    def __iadd__(self, value):
        self._callmethod('extend', (value,))
        return self

    def __imul__(self, value):
        self._callmethod('__imul__', (value,))
        return self


DictProxy = MakeProxyType('DictProxy', (
    '__contains__', '__delitem__', '__getitem__', '__iter__', '__len__',
    '__setitem__', 'clear', 'copy', 'get', 'items',
    'keys', 'pop', 'popitem', 'setdefault', 'update', 'values'))
DictProxy._method_to_typeid_ = {'__iter__': 'Iterator'}


ArrayProxy = MakeProxyType('ArrayProxy', ('__len__', '__getitem__', '__setitem__'))


BasePoolProxy = MakeProxyType('PoolProxy', (
    'apply', 'apply_async', 'close', 'imap', 'imap_unordered', 'join',
    'map', 'map_async', 'starmap', 'starmap_async', 'terminate'))
BasePoolProxy._method_to_typeid_ = {
    'apply_async': 'AsyncResult',
    'map_async': 'AsyncResult',
    'starmap_async': 'AsyncResult',
    'imap': 'Iterator',
    'imap_unordered': 'Iterator',
}


class PoolProxy(BasePoolProxy):
    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_val, exc_tb):
        self.terminate()


def _Pool(*args, **kwds):
    # The pool module is imported when a managed pool is first made.
    from .pool import Pool
    return Pool(*args, **kwds)


#
# SyncManager
#

class SyncManager(BaseManager):
    """A manager of the synchronization types of `threading`, `queue.Queue`,
    dict, list, Namespace, Value, Array and Pool.

    ``multiprocessing.Manager()`` returns a started instance.
    """


SyncManager.register('Queue', queue.Queue)
SyncManager.register('JoinableQueue', queue.Queue)
SyncManager.register('Event', threading.Event, EventProxy)
SyncManager.register('Lock', threading.Lock, AcquirerProxy)
SyncManager.register('RLock', threading.RLock, AcquirerProxy)
SyncManager.register('Semaphore', threading.Semaphore, AcquirerProxy)
SyncManager.register('BoundedSemaphore', threading.BoundedSemaphore, AcquirerProxy)
SyncManager.register('Condition', threading.Condition, ConditionProxy)
SyncManager.register('Barrier', threading.Barrier, BarrierProxy)
SyncManager.register('Pool', _Pool, PoolProxy)
SyncManager.register('list', list, ListProxy)
SyncManager.register('dict', dict, DictProxy)
SyncManager.register('Value', Value, ValueProxy)
SyncManager.register('Array', Array, ArrayProxy)
SyncManager.register('Namespace', Namespace, NamespaceProxy)
# Types of the results of PoolProxy and DictProxy methods.
SyncManager.register('Iterator', proxytype=IteratorProxy, create_method=False)
SyncManager.register('AsyncResult', create_method=False)
