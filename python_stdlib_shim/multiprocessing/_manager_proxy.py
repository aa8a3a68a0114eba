"""Proxies: the client-side faces of shared objects.

A proxy holds a Token and calls its referent through the calling thread's
link to the manager (_manager_transport). Each proxy holds one reference
on the server: taken when it is made (or unpickled, or inherited by a
forked child), given back by a finalizer when it is collected. A method
registered in `method_to_typeid` answers with a new proxy ('#PROXY').
"""

# Private: the public names are multiprocessing.managers'.
__all__ = []

import threading
import time
import types

from . import process
from . import util
from .context import get_spawning_popen
from ._manager_transport import (PROXY, RETURN, GETVALUE, State, address_to_local,
                                 address_to_local_lock, call_aside, client_state,
                                 convert_to_error, forget_link, link_of, listener_client,
                                 server_call)

# What MakeProxyType and AutoProxy make is reachable from, and pickled by
# reference through, the public module.
_PUBLIC_MODULE = __package__ + '.managers'


def _authkey_for(authkey, manager):
    """The authkey given, else the manager's, else this process's."""
    if authkey is None:
        return manager._authkey if manager is not None else process.current_process().authkey
    return process.AuthenticationString(authkey)


def _registry_for(typeid):
    """The registry of some manager class that knows typeid (for a proxy
    that travelled without its manager, e.g. into a child process)."""
    from .managers import BaseManager
    pending = [BaseManager]
    while pending:
        cls = pending.pop()
        registry = cls.__dict__.get('_registry', {})
        if typeid in registry:
            return registry
        pending.extend(cls.__subclasses__())
    return None


class BaseProxy(object):
    """Base of the proxies of shared objects."""

    _address_to_local = address_to_local
    _mutex = address_to_local_lock
    # True for a proxy unpickled inside the manager's own process: it
    # takes no reference (see RebuildProxy).
    _owned_by_manager = False
    # True for proxies made by AutoProxy (they pickle as AutoProxy).
    _isauto = False

    def __init__(self, token, serializer, manager=None, authkey=None, exposed=None,
                 incref=True, manager_owned=False):
        # The per-thread links to token's manager, and the ids of that
        # manager's objects this process references.
        self._tls, self._idset = client_state(token.address)
        self._token, self._id = token, token.id
        self._manager, self._serializer = manager, serializer
        self._Client = listener_client[serializer][1]
        if manager_owned:
            self._owned_by_manager = True
        self._authkey = _authkey_for(authkey, manager)
        if incref:
            self._incref()
        util.register_after_fork(self, BaseProxy._after_fork)

    def _connect(self):
        link_of(self._tls, self._token.address, self._authkey, self._Client)

    def _server_call(self, funcname, *args):
        return server_call(self._token.address, self._authkey, self._serializer,
                           self._Client, funcname, args)

    def _callmethod(self, methodname, args=(), kwds={}):
        """Call a method of the referent and return a copy of its result
        (a new proxy for methods registered in method_to_typeid)."""
        request = (self._id, methodname, args, kwds)
        link = self._tls.__dict__.get('link')
        if link is None or link.conn is None:
            util.debug('thread %r does not own a connection', threading.current_thread().name)
            link = link_of(self._tls, self._token.address, self._authkey, self._Client)
        if link.busy:
            # Re-entered while this thread's link waits for a reply (a
            # signal handler, or a __reduce__ run while pickling arguments).
            kind, payload = call_aside(self._token.address, self._authkey, self._Client, request)
        else:
            kind, payload = link.exchange(request)
        if kind == RETURN:
            return payload
        if kind == PROXY:
            return self._proxy_for(*payload)
        raise convert_to_error(kind, payload)

    def _proxy_for(self, exposed, token):
        """A proxy of a result the server keeps (reply '#PROXY'); the
        server's own reference to it is given back once the proxy holds one."""
        manager = self._manager
        registry = manager._registry if manager is not None else _registry_for(token.typeid)
        make = registry[token.typeid][-1] if registry else AutoProxy
        token.address = self._token.address
        proxy = make(token, self._serializer, manager=manager, authkey=self._authkey,
                     exposed=exposed)
        self._server_call('decref', token.id)
        return proxy

    def _getvalue(self):
        """A copy of the referent."""
        return self._callmethod(GETVALUE)

    def _incref(self):
        """Take this proxy's reference; a finalizer gives it back."""
        if self._owned_by_manager:
            return
        self._server_call('incref', self._id)
        util.debug('took a reference to %r', self._id)
        ids = self._idset
        ids.add(self._id)
        manager_state = self._manager._state if self._manager else None
        release_args = (self._token, self._authkey, manager_state, self._tls, ids,
                        self._Client, self._serializer)
        self._close = util.Finalize(self, BaseProxy._decref, args=release_args, exitpriority=10)

    @staticmethod
    def _decref(token, authkey, state, tls, idset, _Client, serializer='pickle'):
        idset.discard(token.id)
        # Nothing to tell a manager that this process shut down.
        if state is None or state.value == State.STARTED:
            try:
                server_call(token.address, authkey, serializer, _Client, 'decref',
                            (token.id,), tls=tls)
                util.debug('gave back the reference to %r', token.id)
            except Exception as exc:
                util.debug('giving back the reference to %r failed: %s', token.id, exc)
        # With no proxies of this manager left, the thread's link can go
        # (unless it is in the middle of a call).
        link = tls.__dict__.get('link')
        if not idset and link is not None and not link.busy:
            forget_link(tls)

    def _after_fork(self):
        self._manager = None
        try:
            self._incref()
        except Exception as exc:
            # The manager may be gone.
            util.info('incref failed: %s' % exc)

    def __reduce__(self):
        # The authkey travels only to a child being started.
        kwds = {'authkey': self._authkey} if get_spawning_popen() is not None else {}
        if self._isauto:
            return RebuildProxy, (AutoProxy, self._token, self._serializer,
                                  dict(kwds, exposed=self._exposed_))
        return RebuildProxy, (type(self), self._token, self._serializer, kwds)

    def __deepcopy__(self, memo):
        return self._getvalue()

    def __repr__(self):
        return '<%s object, typeid %r at %#x>' % (type(self).__name__, self._token.typeid, id(self))

    def __str__(self):
        """The referent's repr (or a stand-in when that call fails)."""
        try:
            return self._callmethod('__repr__')
        except Exception:
            return "%s; '__str__()' failed>" % repr(self)[:-1]


def RebuildProxy(func, token, serializer, kwds):
    """Unpickle a proxy. Inside the manager's own process it takes no
    reference (the object is remembered instead, see _ObjectTable.keep)."""
    me = process.current_process()
    server = getattr(me, '_manager_server', None)
    if server is not None and server.address == token.address:
        server._table.keep(token.id)
        kwds['manager_owned'] = True
    wants_ref = kwds.pop('incref', True)
    return func(token, serializer, incref=wants_ref and not getattr(me, '_inheriting', False), **kwds)


def _forwarder(name):
    def forward(self, /, *args, **kwds):
        return self._callmethod(name, args, kwds)
    forward.__name__ = forward.__qualname__ = name
    return forward


_proxy_types = {}


def MakeProxyType(name, exposed, _cache=_proxy_types):
    """A BaseProxy subclass with one forwarding method per exposed name
    (made once per (name, exposed))."""
    exposed = tuple(exposed)
    made = _cache.get((name, exposed))
    if made is None:
        body = {method: _forwarder(method) for method in exposed}
        body.update(_exposed_=exposed, __module__=_PUBLIC_MODULE)
        made = _cache[(name, exposed)] = type(name, (BaseProxy,), body)
    return made


def AutoProxy(token, serializer, manager=None, authkey=None, exposed=None, incref=True,
              manager_owned=False):
    """A proxy whose methods are the ones the server exposes for token."""
    authkey = _authkey_for(authkey, manager)
    if exposed is None:
        exposed = server_call(token.address, authkey, serializer, listener_client[serializer][1],
                              'get_methods', (token,))
    cls = MakeProxyType('AutoProxy[%s]' % token.typeid, exposed)
    proxy = cls(token, serializer, manager=manager, authkey=authkey, incref=incref,
                manager_owned=manager_owned)
    proxy._isauto = True
    return proxy


#
# The proxy types of SyncManager
#

def _remote(proxy, method, *args):
    # For proxies whose own attribute access is redirected.
    return object.__getattribute__(proxy, '_callmethod')(method, args)


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
        # timeout=None is not passed on: threading's locks take -1 for it.
        return self._callmethod('acquire', (blocking,) + (() if timeout is None else (timeout,)))

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
        """Wait until predicate() is true (its value is returned) or the
        timeout passes (predicate's last value is returned)."""
        give_up = None if timeout is None else time.monotonic() + timeout
        while True:
            outcome = predicate()
            if outcome:
                return outcome
            left = None
            if give_up is not None:
                left = give_up - time.monotonic()
                if left <= 0:
                    return outcome
            self.wait(left)


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

    parties = property(lambda self: self._callmethod('__getattribute__', ('parties',)))
    n_waiting = property(lambda self: self._callmethod('__getattribute__', ('n_waiting',)))
    broken = property(lambda self: self._callmethod('__getattribute__', ('broken',)))


class NamespaceProxy(BaseProxy):
    """Attribute access on the referent; names starting with '_' are the
    proxy's own."""

    _exposed_ = ('__getattribute__', '__setattr__', '__delattr__')

    def __getattr__(self, key):
        # Only reached when normal lookup failed: a private name is missing.
        if key.startswith('_'):
            raise AttributeError('%r object has no attribute %r' % (type(self).__name__, key))
        return _remote(self, '__getattribute__', key)

    def __setattr__(self, key, value):
        _local_or_remote(self, object.__setattr__, key, value)

    def __delattr__(self, key):
        _local_or_remote(self, object.__delattr__, key)


def _local_or_remote(proxy, local, key, *value):
    # Private names are the proxy's own, the others the referent's.
    if key.startswith('_'):
        local(proxy, key, *value)
    else:
        _remote(proxy, local.__name__, key, *value)


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
    # In-place operators change the referent and keep this proxy.

    def __iadd__(self, value):
        _remote(self, 'extend', value)
        return self

    def __imul__(self, value):
        _remote(self, '__imul__', value)
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
BasePoolProxy._method_to_typeid_ = dict.fromkeys(
    ('apply_async', 'map_async', 'starmap_async'), 'AsyncResult')
BasePoolProxy._method_to_typeid_.update(imap='Iterator', imap_unordered='Iterator')


class PoolProxy(BasePoolProxy):
    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_val, exc_tb):
        self.terminate()
