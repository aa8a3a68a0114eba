"""Managers: objects that live in a server process, used through proxies.

    client process                                manager process
    --------------                                ---------------
    BaseManager.start() -- ctx.Process -------->  BaseManager._run_server()
        <------------- address (one-way Pipe) --  Server.serve_forever()
    manager.dict()                                (_manager_server)
      _Link: Client(address) + challenge ------>  connection thread:
      'accept_connection'                         Server.serve_client(conn)
      (None, 'create', (typeid, ...)) --------->  _ObjectTable.insert()
        <-------------- ('#RETURN', (ident, exposed))
    proxy._callmethod(name, args, kwds)
      (ident, name, args, kwds) --------------->  Server._reply(): the method
        <-- '#RETURN' | '#ERROR' | '#PROXY' | '#TRACEBACK' | '#UNSERIALIZABLE'
    proxy collected: 'decref' --------------->  _ObjectTable.decref()
    a busy link of a local mphost pair:
      (None, 'mphost:channels') --------------->  the same thread serves the
        <--- channel names; calls then go        link natively (_mphost.
        through two channels                      ManagerDispatch.serve_here)

This module is the public face: BaseManager (start, connect, register,
shutdown), SyncManager with its registered types, and every name the
stdlib's module offers. The pieces live beside it, one noun each:
_manager_transport (the wire vocabulary and the client's per-thread link),
_manager_server (Server and its object table), _manager_proxy (BaseProxy,
AutoProxy, MakeProxyType and the typed proxies). The wire format is the
stdlib's, so stock python3 clients and servers interoperate with mphost's.

Every connection is authenticated with the manager's authkey before any of
its messages is unpickled. A method's exception comes back as itself; a
failure of the machinery comes back as RemoteError with the server's
traceback.
"""

__all__ = ['BaseManager', 'SyncManager', 'BaseProxy', 'Token']

import array
import importlib.util
import queue
import threading

from . import connection
from . import process
from . import util
from . import get_context
from .context import ProcessError, reduction
from ._manager_transport import (State, Token, RemoteError, ProcessLocalSet, address_to_local,
                                 convert_to_error, dispatch, listener_client, server_call)
from ._manager_server import Server, all_methods, public_methods, run_server_process
from ._manager_proxy import (_authkey_for, BaseProxy, RebuildProxy, AutoProxy, MakeProxyType, IteratorProxy,
                             AcquirerProxy, ConditionProxy, EventProxy, BarrierProxy,
                             NamespaceProxy, ValueProxy, BaseListProxy, ListProxy, DictProxy,
                             ArrayProxy, BasePoolProxy, PoolProxy)
from .context import get_spawning_popen  # noqa: F401 (the stdlib's module offers it)

HAS_SHMEM = importlib.util.find_spec(__package__ + '.shared_memory') is not None
if HAS_SHMEM:
    __all__.append('SharedMemoryManager')


def __getattr__(name):
    # The stdlib defines these here; mphost builds them in shared_memory, on
    # first use, so that neither module imports the other at start-up.
    if HAS_SHMEM and name in ('SharedMemoryManager', 'SharedMemoryServer',
                              '_SharedMemoryTracker'):
        from . import shared_memory
        return getattr(shared_memory, name)
    raise AttributeError('module %r has no attribute %r' % (__name__, name))


#
# How results of some types travel back from a manager
#

def reduce_array(a):
    return array.array, (a.typecode, a.tobytes())


def rebuild_as_list(obj):
    return list, (list(obj),)


reduction.register(array.array, reduce_array)
for _view in ({}.keys(), {}.values(), {}.items()):
    reduction.register(type(_view), rebuild_as_list)
del _view


#
# The manager
#

_STATE_ERRORS = {State.STARTED: 'Already started server', State.SHUTDOWN: 'Manager has shut down'}

# What __enter__ says when the manager is not running.
_ENTER_ERRORS = {**_STATE_ERRORS, State.INITIAL: 'Unable to start server'}


def _launch(manager, initializer, initargs):
    """Start manager's server process; returns (process, server address)."""
    address_in, address_out = connection.Pipe(duplex=False)
    cls = type(manager)
    child = manager._ctx.Process(
        target=cls._run_server,
        args=(manager._registry, manager._address, manager._authkey, manager._serializer,
              address_out, initializer, initargs))
    child.name = '%s-%s' % (cls.__name__, ':'.join(map(str, child._identity)))
    child.start()
    # The child has its copy; without ours, a child that dies early reads
    # as end of file here instead of a hang.
    address_out.close()
    with address_in:
        return child, address_in.recv()


def _ask_shutdown(Client, address, authkey):
    try:
        with Client(address, authkey=authkey) as conn:
            dispatch(conn, None, 'shutdown')
    except Exception:
        pass  # it may be dying already: terminate() follows if need be


def _stop_server_process(proc, timeout, ask):
    """Stop a live server process: ask() it to, wait `timeout`, then
    terminate it, then kill it."""
    if not proc.is_alive():
        return
    util.info('asking the manager process to shut down')
    ask()
    proc.join(timeout=timeout)
    for force in ('terminate', 'kill'):
        stop = getattr(proc, force, None)
        if stop is None or not proc.is_alive():
            return
        util.info('manager still alive; trying %s()', force)
        stop()
        proc.join(timeout=timeout if force == 'terminate' else None)


def _registration(callable, proxytype, exposed, method_to_typeid):
    """A registry entry (callable, exposed, method_to_typeid, proxytype);
    what is not given comes from the proxy type (_exposed_,
    _method_to_typeid_)."""
    proxytype = proxytype or AutoProxy
    result_types = method_to_typeid or getattr(proxytype, '_method_to_typeid_', None)
    for pair in (result_types or {}).items():
        for text in pair:
            assert type(text) is str, '%r is not a string' % text
    return callable, exposed or getattr(proxytype, '_exposed_', None), result_types, proxytype


def _maker(cls, typeid, proxytype):
    """The method register() adds to a manager class for typeid."""
    def make(self, /, *args, **kwds):
        util.debug('asking for a shared %r object', typeid)
        token, exposed = self._create(typeid, *args, **kwds)
        proxy = proxytype(token, self._serializer, manager=self, authkey=self._authkey,
                          exposed=exposed)
        # The proxy took its own reference; give back the creation's.
        self._control('decref', (token.id,))
        return proxy
    make.__name__ = typeid
    make.__qualname__ = '%s.%s' % (cls.__qualname__, typeid)
    return make


class BaseManager(object):
    """Starts (or connects to) a server process and makes shared objects
    in it; subclasses register their types with ``register()``."""

    _registry = {}
    _Server = Server
    # The server process, for a manager that started one.
    _process = None

    def __init__(self, address=None, authkey=None, serializer='pickle', ctx=None, *,
                 shutdown_timeout=1.0):
        self._address = address
        self._authkey = _authkey_for(authkey, None)
        self._state = State(State.INITIAL)
        self._serializer = serializer
        self._Listener, self._Client = listener_client[serializer]
        self._ctx = ctx if ctx is not None else get_context()
        self._shutdown_timeout = shutdown_timeout

    @property
    def address(self):
        return self._address

    def _expect_initial(self):
        self._state.require(State.INITIAL, _STATE_ERRORS)

    def get_server(self):
        """A Server for this manager, to be run with serve_forever()."""
        self._expect_initial()
        return self._Server(self._registry, self._address, self._authkey, self._serializer)

    def connect(self):
        """Use the server already running at self.address."""
        with self._Client(self._address, authkey=self._authkey) as probe:
            dispatch(probe, None, 'dummy')
        self._state.value = State.STARTED

    def start(self, initializer=None, initargs=()):
        """Start the server process (with the context's start method)."""
        self._expect_initial()
        if initializer is not None and not callable(initializer):
            raise TypeError('initializer must be a callable')
        self._process, self._address = _launch(self, initializer, initargs)
        self._state.value = State.STARTED
        # Called as manager.shutdown(), and at exit.
        stop_args = (self._process, self._address, self._authkey, self._state, self._Client,
                     self._shutdown_timeout)
        self.shutdown = util.Finalize(self, type(self)._finalize_manager, args=stop_args,
                                      exitpriority=0)

    @classmethod
    def _run_server(cls, registry, address, authkey, serializer, writer,
                    initializer=None, initargs=()):
        """The server process: make the server, report its address, serve."""
        import _mphost
        _mphost.state_note_self('manager_server')
        run_server_process(cls._Server, registry, address, authkey, serializer, writer,
                           initializer, initargs)

    def join(self, timeout=None):
        """Wait for the server process (of a manager that started one)."""
        proc = self._process
        if proc is not None:
            proc.join(timeout)
            if not proc.is_alive():
                del self._process  # back to the class's None

    def _control(self, funcname, args=(), kwds={}, connect=False):
        """Run a function of the Server (see _manager_transport.server_call)."""
        return server_call(self._address, self._authkey, self._serializer, self._Client,
                           funcname, args, kwds, connect)

    def _create(self, typeid, /, *args, **kwds):
        """Make a shared object; returns (token, exposed)."""
        assert self._state.value == State.STARTED, 'server not yet started'
        ident, exposed = self._control('create', (typeid,) + args, kwds, connect=True)
        return Token(typeid, self._address, ident), exposed

    def _debug_info(self):
        return self._control('debug_info')

    def _number_of_objects(self):
        return self._control('number_of_objects')

    def __enter__(self):
        if self._state.value == State.INITIAL:
            self.start()
        self._state.require(State.STARTED, _ENTER_ERRORS)
        return self

    def __exit__(self, exc_type, exc_val, exc_tb):
        self.shutdown()

    @staticmethod
    def _finalize_manager(process, address, authkey, state, _Client, shutdown_timeout):
        """Stop the server process: ask it, then terminate, then kill it."""
        _stop_server_process(process, shutdown_timeout,
                             lambda: _ask_shutdown(_Client, address, authkey))
        state.value = State.SHUTDOWN
        # This process's links to the server go with it.
        address_to_local.pop(address, None)

    @classmethod
    def register(cls, typeid, callable=None, proxytype=None, exposed=None,
                 method_to_typeid=None, create_method=True):
        """Register typeid: `callable` makes the object in the server,
        `proxytype` (AutoProxy by default) stands for it in clients, and
        `create_method` adds a method named typeid to the class."""
        entry = _registration(callable, proxytype, exposed, method_to_typeid)
        # Each class registers in a table of its own, a copy of its parent's.
        own = cls.__dict__.get('_registry')
        if own is None:
            own = cls._registry = dict(cls._registry)
        own[typeid] = entry
        if create_method:
            setattr(cls, typeid, _maker(cls, typeid, entry[-1]))


#
# Types that SyncManager serves
#

class Namespace(object):
    """A bag of attributes."""

    def __init__(self, /, **kwds):
        vars(self).update(kwds)

    def __repr__(self):
        shown = ', '.join(sorted('%s=%r' % pair for pair in vars(self).items()
                                 if not pair[0].startswith('_')))
        return '%s(%s)' % (type(self).__name__, shown)


class Value(object):
    """A value with get()/set() and a `value` property; no lock of its
    own (the server's thread per client calls it)."""

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


def _Pool(*args, **kwds):
    # The pool module is imported when a managed pool is first made.
    from .pool import Pool
    return Pool(*args, **kwds)


class SyncManager(BaseManager):
    """A manager of `threading`'s synchronization types, `queue.Queue`,
    dict, list, Namespace, Value, Array and Pool.

    ``multiprocessing.Manager()`` returns a started instance.
    """


for _typeid, _make, _proxy in (
        ('Queue', queue.Queue, None),
        ('JoinableQueue', queue.Queue, None),
        ('Event', threading.Event, EventProxy),
        ('Lock', threading.Lock, AcquirerProxy),
        ('RLock', threading.RLock, AcquirerProxy),
        ('Semaphore', threading.Semaphore, AcquirerProxy),
        ('BoundedSemaphore', threading.BoundedSemaphore, AcquirerProxy),
        ('Condition', threading.Condition, ConditionProxy),
        ('Barrier', threading.Barrier, BarrierProxy),
        ('Pool', _Pool, PoolProxy),
        ('list', list, ListProxy),
        ('dict', dict, DictProxy),
        ('Value', Value, ValueProxy),
        ('Array', Array, ArrayProxy),
        ('Namespace', Namespace, NamespaceProxy)):
    SyncManager.register(_typeid, _make, _proxy)
del _typeid, _make, _proxy
# Typeids of the results of PoolProxy and DictProxy methods.
SyncManager.register('Iterator', proxytype=IteratorProxy, create_method=False)
SyncManager.register('AsyncResult', create_method=False)


# Names that travel in pickles (proxies, tokens, rebuilt results) are
# looked up in this module by the receiver, stock python3 included.
for _public in (Token, RemoteError, State, ProcessLocalSet, Server, BaseProxy, RebuildProxy,
                AutoProxy, MakeProxyType, IteratorProxy, AcquirerProxy, ConditionProxy,
                EventProxy, BarrierProxy, NamespaceProxy, ValueProxy, BaseListProxy, ListProxy,
                DictProxy, ArrayProxy, BasePoolProxy, PoolProxy, dispatch, convert_to_error,
                all_methods, public_methods):
    _public.__module__ = __name__
del _public
