"""multiprocessing.managers with the default start method: manager states,
registration, proxies and their errors, reference counting, connection
reuse, authentication, remote TCP managers and stock python3 peers."""

import copy
import os
import pickle
import socket
import threading
import time

import pytest

import multiprocessing
from multiprocessing import connection, managers
from multiprocessing.managers import (BaseManager, BaseProxy, RemoteError, SyncManager, Token)

from _helpers_connection import StockPeer, run_mphost

TIMEOUT = 60


# -- types served by custom managers (module level: pickled by reference) --

class Counter:
    def __init__(self, start=0):
        self.value = start

    def increment(self, by=1):
        self.value += by
        return self.value

    def get(self):
        return self.value

    def fail(self):
        raise KeyError('no such thing')

    def unpicklable(self):
        return threading.Lock()

    def child(self):
        return Counter(self.value * 10)

    def _private(self):
        return 'private'


class CounterProxy(BaseProxy):
    _exposed_ = ('increment', 'get')

    def increment(self, by=1):
        return self._callmethod('increment', (by,))

    def get(self):
        return self._callmethod('get')


class CounterManager(BaseManager):
    pass


CounterManager.register('Counter', Counter)
CounterManager.register('ExplicitCounter', Counter, CounterProxy)
CounterManager.register('ChildCounter', Counter,
                        method_to_typeid={'child': 'CounterResult'},
                        exposed=('get', 'increment', 'child'))
# A typeid for results of methods: no callable, the result itself is served.
CounterManager.register('CounterResult', create_method=False)
CounterManager.register('hidden', Counter, create_method=False)

_SHARED = {}


def get_shared():
    return _SHARED


class SharedManager(BaseManager):
    pass


SharedManager.register('get_shared', callable=get_shared)


def initializer(path, value):
    with open(path, 'w') as f:
        f.write(value)


@pytest.fixture
def manager():
    m = CounterManager()
    m.start()
    yield m
    m.shutdown()


@pytest.fixture
def sync():
    with SyncManager() as m:
        yield m


# -- small pieces --

def test_module_names():
    for name in ['BaseManager', 'SyncManager', 'BaseProxy', 'Token', 'Server', 'RemoteError',
                 'dispatch', 'convert_to_error', 'public_methods', 'all_methods', 'State',
                 'listener_client', 'AutoProxy', 'MakeProxyType', 'RebuildProxy', 'Namespace',
                 'Value', 'Array', 'IteratorProxy', 'AcquirerProxy', 'ConditionProxy',
                 'EventProxy', 'BarrierProxy', 'NamespaceProxy', 'ValueProxy', 'ListProxy',
                 'DictProxy', 'ArrayProxy', 'PoolProxy', 'BaseListProxy', 'ProcessLocalSet']:
        assert hasattr(managers, name), name
    assert set(['BaseManager', 'SyncManager', 'BaseProxy', 'Token']) <= set(managers.__all__)
    assert managers.State.INITIAL == 0 and managers.State.STARTED == 1
    assert managers.State.SHUTDOWN == 2
    assert 'share/mphost/python' in managers.__file__


def test_shared_memory_manager_names_are_reachable_here():
    if not managers.HAS_SHMEM:
        pytest.skip('shared_memory is not available')
    smm = managers.SharedMemoryManager
    assert smm.__module__ == 'multiprocessing.managers'
    assert issubclass(smm, BaseManager)
    assert issubclass(managers.SharedMemoryServer, managers.Server)
    assert 'SharedMemoryManager' in managers.__all__
    with pytest.raises(AttributeError):
        managers.NoSuchName


def test_token():
    t = Token('dict', ('127.0.0.1', 5), 'abc')
    assert repr(t) == "Token(typeid='dict', address=('127.0.0.1', 5), id='abc')"
    t2 = pickle.loads(pickle.dumps(t))
    assert (t2.typeid, t2.address, t2.id) == ('dict', ('127.0.0.1', 5), 'abc')
    with pytest.raises(AttributeError):
        t.other = 1


def test_remote_error_and_convert_to_error():
    e = RemoteError('Traceback text\n')
    assert str(e) == '\n' + '-' * 75 + '\nTraceback text\n' + '-' * 75
    err = ValueError('x')
    assert managers.convert_to_error('#ERROR', err) is err
    assert isinstance(managers.convert_to_error('#TRACEBACK', 'tb'), RemoteError)
    unser = managers.convert_to_error('#UNSERIALIZABLE', 'tb')
    assert 'Unserializable message: tb' in str(unser)
    assert isinstance(managers.convert_to_error('#WHAT', 1), ValueError)
    with pytest.raises(TypeError):
        managers.convert_to_error('#TRACEBACK', 42)


def test_public_methods():
    names = managers.public_methods(Counter())
    assert 'increment' in names and '_private' not in names and 'value' not in names
    assert '_private' in managers.all_methods(Counter())


def test_namespace_and_value_types():
    ns = managers.Namespace(b=2, a=1, _hidden=3)
    assert repr(ns) == 'Namespace(a=1, b=2)'
    v = managers.Value('i', 5)
    v.value = 6
    assert v.get() == 6 and repr(v) == "Value('i', 6)"
    a = managers.Array('d', [1, 2])
    assert list(a) == [1.0, 2.0]


def test_make_proxy_type_is_cached():
    t1 = managers.MakeProxyType('P', ('a', 'b'))
    assert managers.MakeProxyType('P', ['a', 'b']) is t1
    assert t1._exposed_ == ('a', 'b')
    assert issubclass(t1, BaseProxy) and callable(t1.a)


# -- manager states --

def test_states_and_errors():
    m = CounterManager()
    assert m._state.value == managers.State.INITIAL
    server = m.get_server()
    server.listener.close()
    m.start()
    try:
        assert m._state.value == managers.State.STARTED
        with pytest.raises(multiprocessing.ProcessError, match='Already started server'):
            m.start()
        with pytest.raises(multiprocessing.ProcessError, match='Already started server'):
            m.get_server()
        assert m._process.name.startswith('CounterManager-')
    finally:
        m.shutdown()
    assert m._state.value == managers.State.SHUTDOWN
    with pytest.raises(multiprocessing.ProcessError, match='Manager has shut down'):
        m.start()
    with pytest.raises(multiprocessing.ProcessError, match='Manager has shut down'):
        m.__enter__()
    m.join(TIMEOUT)
    assert m._process is None


def test_context_manager_and_shutdown_stops_the_process():
    with CounterManager() as m:
        process = m._process
        assert process.is_alive()
        c = m.Counter(3)
        assert c.increment() == 4
    process.join(TIMEOUT)
    assert not process.is_alive()
    assert process.exitcode == 0


def test_initializer_runs_in_server(tmp_path):
    out = tmp_path / 'init'
    m = CounterManager()
    m.start(initializer, (str(out), 'ran'))
    try:
        assert out.read_text() == 'ran'
    finally:
        m.shutdown()
    with pytest.raises(TypeError, match='initializer must be a callable'):
        CounterManager().start(initializer=42)


def test_bad_authkey_type():
    with pytest.raises(TypeError):
        managers.Server({}, None, 'text', 'pickle')


# -- registration and proxies --

def test_auto_proxy(manager):
    c = manager.Counter(5)
    assert type(c).__name__ == 'AutoProxy[Counter]'
    assert c.increment() == 6
    assert c.increment(by=4) == 10
    assert c.get() == 10
    assert not hasattr(c, '_private_method_exposed')
    assert set(c._exposed_) >= {'increment', 'get', 'fail', 'child'}
    assert '_private' not in c._exposed_
    assert 'AutoProxy[Counter] object, typeid' in repr(c)
    assert str(c).startswith('<test_managers.Counter object')
    # A pickled auto proxy comes back as an auto proxy.
    c2 = pickle.loads(pickle.dumps(c))
    assert c2.get() == 10 and c2._isauto


def test_explicit_proxytype_limits_exposed(manager):
    c = manager.ExplicitCounter(1)
    assert isinstance(c, CounterProxy)
    assert c.increment() == 2
    with pytest.raises(RemoteError, match="'fail' of .* is not in exposed"):
        c._callmethod('fail')
    # The fall-backs answer even for methods that are not exposed.
    assert c._getvalue().value == 2
    assert copy.deepcopy(c).value == 2


def test_method_to_typeid_returns_a_proxy(manager):
    c = manager.ChildCounter(3)
    child = c.child()
    assert type(child).__name__ == 'AutoProxy[CounterResult]'
    assert child.get() == 30
    assert child.increment() == 31
    assert c.get() == 3


def test_create_method_false(manager):
    assert not hasattr(manager, 'hidden')
    token, exposed = manager._create('hidden', 8)
    proxy = managers.AutoProxy(token, 'pickle', manager=manager, authkey=manager._authkey,
                               exposed=exposed)
    manager._control('decref', (token.id,))
    assert proxy.get() == 8


def test_registry_is_per_class():
    assert 'Counter' in CounterManager._registry
    assert 'Counter' not in SyncManager._registry
    assert 'Counter' not in BaseManager._registry
    assert 'dict' in SyncManager._registry


def test_register_checks_method_to_typeid():
    class Checked(BaseManager):
        pass
    with pytest.raises(AssertionError):
        Checked.register('x', Counter, method_to_typeid={'child': 5})


def test_errors_come_back_as_themselves(manager):
    c = manager.Counter()
    with pytest.raises(KeyError, match='no such thing'):
        c.fail()
    with pytest.raises(TypeError):
        c.increment('not a number')
    # The proxy still works after errors.
    assert c.increment() == 1


def test_unserializable_result_is_remote_error(manager):
    c = manager.Counter()
    with pytest.raises(RemoteError, match='Unserializable message'):
        c.unpicklable()
    assert c.get() == 0


def test_unknown_method_is_remote_error_with_traceback(manager):
    c = manager.Counter()
    with pytest.raises(RemoteError) as info:
        c._callmethod('no_such_method')
    assert 'Traceback' in str(info.value)
    assert 'no_such_method' in str(info.value)


def test_reference_counting(manager):
    assert manager._number_of_objects() == 0
    counters = [manager.Counter(i) for i in range(5)]
    assert manager._number_of_objects() == 5
    info = manager._debug_info()
    assert 'refcount=1' in info
    copy_of_first = pickle.loads(pickle.dumps(counters[0]))
    assert manager._debug_info().count('refcount=2') == 1
    del copy_of_first
    del counters[:3]
    assert manager._number_of_objects() == 2
    del counters
    assert manager._number_of_objects() == 0


def test_proxies_in_threads(manager):
    c = manager.Counter()
    errors = []

    def work():
        try:
            for _ in range(200):
                c.increment()
        except Exception as e:
            errors.append(e)
    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert not errors
    assert c.get() == 800


def test_one_connection_per_thread(monkeypatch):
    """Creating proxies, calling them and dropping them reuse the calling
    thread's connection: no connection per operation."""
    opened = []
    real_client = connection.Client

    def counting_client(*args, **kwds):
        opened.append(args)
        return real_client(*args, **kwds)
    monkeypatch.setitem(managers.listener_client, 'pickle', (connection.Listener, counting_client))
    m = SyncManager()
    m.start()
    try:
        d = m.dict()
        lists = [m.list([i]) for i in range(10)]
        for i in range(50):
            d[i] = i
            assert d[i] == i
        # Arguments that cannot be pickled fail before anything is sent.
        with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
            d['f'] = lambda: None
        assert 'f' not in d
        assert sum(l[0] for l in lists) == 45
        del lists
        assert m._number_of_objects() == 1
        assert len(opened) == 1
    finally:
        m.shutdown()


def test_wrong_authkey_is_refused(manager):
    intruder = CounterManager(address=manager.address, authkey=b'wrong key')
    with pytest.raises(multiprocessing.AuthenticationError):
        intruder.connect()
    # The server keeps serving the others.
    assert manager.Counter(1).get() == 1


def test_garbage_on_a_manager_connection(manager):
    # Unauthenticated garbage.
    raw = socket.socket(socket.AF_UNIX)
    raw.connect(manager.address)
    raw.recv(100)
    raw.sendall(b'\x00\x00\x00\x05hello' * 3)
    raw.close()
    # Authenticated, then garbage instead of a pickle: a RemoteError, and the
    # connection and the server go on.
    conn = connection.Client(manager.address, authkey=bytes(manager._authkey))
    conn.send((None, 'accept_connection', ('garbage test',), {}))
    assert conn.recv()[0] == '#RETURN'
    conn.send_bytes(b'this is not a pickle')
    kind, text = conn.recv()
    assert kind == '#TRACEBACK' and 'UnpicklingError' in text
    conn.send((None, 'number_of_objects', (), {}))
    assert conn.recv() == ('#RETURN', 0)
    conn.close()
    assert manager.Counter(2).increment() == 3


def test_manager_process_killed_gives_an_error():
    m = CounterManager()
    m.start()
    c = m.Counter()
    assert c.get() == 0
    m._process.kill()
    m._process.join(TIMEOUT)
    with pytest.raises((EOFError, OSError)):
        c.increment()
    m.shutdown()


def test_xmlrpclib_serializer():
    m = SyncManager(serializer='xmlrpclib')
    m.start()
    try:
        q = m.Queue()
        q.put(('a', 1))
        assert q.get() == ['a', 1]  # xmlrpc turns tuples into lists
        with pytest.raises(Exception):
            q.put(time.sleep)
        d = m.dict()
        d['k'] = 'v'
        assert d['k'] == 'v'
        del q, d
        assert m._number_of_objects() == 0
    finally:
        m.shutdown()


# -- SyncManager types (used from threads here; from processes in the suite) --

def test_dict_and_list(sync):
    d = sync.dict({'a': 1}, b=2)
    assert d.copy() == {'a': 1, 'b': 2}
    d.update(c=3)
    assert sorted(d.keys()) == ['a', 'b', 'c']
    assert sorted(d.values()) == [1, 2, 3]
    assert sorted(d.items()) == [('a', 1), ('b', 2), ('c', 3)]
    assert sorted(iter(d)) == ['a', 'b', 'c']
    assert 'a' in d and len(d) == 3
    assert d.pop('a') == 1 and d.get('a', 'gone') == 'gone'
    assert d.setdefault('z', 26) == 26
    del d['z']
    with pytest.raises(KeyError):
        d['z']
    l = sync.list(range(3))
    l.append(3)
    l += [4]
    l *= 2
    assert l[:] == [0, 1, 2, 3, 4] * 2
    assert len(l) == 10 and l.count(0) == 2 and l.index(4) == 4
    l.sort(reverse=True)
    assert l[0] == 4
    assert list(reversed(l))[0] == 0
    assert l + [9] == sorted([0, 1, 2, 3, 4] * 2, reverse=True) + [9]
    with pytest.raises(IndexError):
        l[100]
    assert str(l).startswith('[4, 4')


def test_nested_proxies(sync):
    outer = sync.list()
    inner = sync.dict()
    outer.append(inner)
    inner['x'] = 1
    fetched = outer[0]
    assert isinstance(fetched, managers.DictProxy)
    assert fetched['x'] == 1
    fetched['y'] = 2
    assert inner.copy() == {'x': 1, 'y': 2}


def test_namespace_value_array(sync):
    ns = sync.Namespace(a=1)
    ns.b = 2
    assert (ns.a, ns.b) == (1, 2)
    del ns.a
    with pytest.raises(AttributeError):
        ns.a
    assert 'Namespace(b=2)' == str(ns)
    v = sync.Value('d', 1.5)
    v.value *= 2
    assert v.value == 3.0 and v.get() == 3.0
    a = sync.Array('i', range(4))
    a[1] = 10
    assert len(a) == 4 and a[1] == 10 and list(a[:]) == [0, 10, 2, 3]


def test_queue_and_joinable_queue(sync):
    import queue as queue_module
    q = sync.Queue(2)
    q.put(1)
    q.put(2)
    with pytest.raises(queue_module.Full):
        q.put(3, timeout=0.01)
    assert q.qsize() == 2 and q.full()
    assert q.get() == 1 and q.get_nowait() == 2
    with pytest.raises(queue_module.Empty):
        q.get(timeout=0.01)
    jq = sync.JoinableQueue()
    jq.put('task')
    t = threading.Thread(target=lambda: (jq.get(), jq.task_done()))
    t.start()
    jq.join()
    t.join(TIMEOUT)


def test_locks_events_conditions_barriers(sync):
    lock = sync.Lock()
    assert lock.acquire()
    assert lock.acquire(timeout=0.01) is False
    lock.release()
    with lock:
        pass
    rlock = sync.RLock()
    with rlock:
        with rlock:
            pass
    sem = sync.Semaphore(2)
    assert sem.acquire() and sem.acquire() and not sem.acquire(False)
    sem.release()
    bsem = sync.BoundedSemaphore(1)
    with pytest.raises(ValueError):
        bsem.release()
    event = sync.Event()
    assert not event.is_set() and event.wait(0.01) is False
    threading.Timer(0.05, event.set).start()
    assert event.wait(TIMEOUT) is True
    event.clear()
    assert not event.is_set()
    cond = sync.Condition()
    state = sync.dict(ready=False)

    def notifier():
        time.sleep(0.05)
        with cond:
            state['ready'] = True
            cond.notify_all()
    t = threading.Thread(target=notifier)
    t.start()
    with cond:
        assert cond.wait_for(lambda: state['ready'], TIMEOUT)
    t.join(TIMEOUT)
    with cond:
        assert cond.wait(0.01) is False
        assert cond.wait_for(lambda: False, 0.01) is False
    barrier = sync.Barrier(2, timeout=TIMEOUT)
    assert barrier.parties == 2 and barrier.n_waiting == 0 and not barrier.broken
    t = threading.Thread(target=barrier.wait)
    t.start()
    assert barrier.wait() in (0, 1)
    t.join(TIMEOUT)
    barrier.abort()
    assert barrier.broken
    with pytest.raises(threading.BrokenBarrierError):
        barrier.wait()
    barrier.reset()
    assert not barrier.broken


def square(x):
    return x * x


def test_pool_proxy(sync):
    pytest.importorskip('multiprocessing.pool')
    with sync.Pool(2) as pool:
        assert pool.map(square, range(5)) == [0, 1, 4, 9, 16]
        assert pool.apply(square, (7,)) == 49
        result = pool.apply_async(square, (8,))
        assert result.get(TIMEOUT) == 64
        assert list(pool.imap(square, range(3))) == [0, 1, 4]
        assert sorted(pool.imap_unordered(square, range(3))) == [0, 1, 4]
        assert pool.starmap(pow, [(2, 3)]) == [8]


def test_proxy_used_from_signal_handler_while_a_call_waits(sync):
    """A handler that uses proxies while this thread waits for a reply
    gets a connection of its own: both calls get their own answers."""
    import signal
    q = sync.Queue()
    d = sync.dict()

    def handler(signum, frame):
        d['handler'] = True
        q.put('from handler')
    previous = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        assert q.get(timeout=TIMEOUT) == 'from handler'
        assert d['handler'] is True
        q.put('after')
        assert q.get(timeout=TIMEOUT) == 'after'
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_dict_iteration_without_the_manager_object(sync):
    """A proxy that lost its manager (as in a child) still gets proxies back."""
    d = sync.dict(a=1, b=2)
    d2 = pickle.loads(pickle.dumps(d))
    assert d2._manager is None
    assert sorted(iter(d2)) == ['a', 'b']


# -- remote managers over TCP --

REMOTE_SERVER = '''
import sys
sys.path.insert(0, {path!r})
from test_managers import SharedManager
m = SharedManager(address=('127.0.0.1', 0), authkey=b'remote key')
server = m.get_server()
print(repr(server.address), flush=True)
server.serve_forever()
'''

REMOTE_CLIENT = '''
import sys, ast
sys.path.insert(0, {path!r})
from test_managers import SharedManager
m = SharedManager(address=ast.literal_eval(sys.argv[1]), authkey=b'remote key')
m.connect()
shared = m.get_shared()
shared.update(client=sys.argv[2])
print(sorted(shared.keys()), flush=True)
'''


def test_remote_tcp_manager_between_processes(mphost_executable):
    import ast
    import subprocess
    here = os.path.dirname(os.path.abspath(__file__))
    server = subprocess.Popen([mphost_executable, '-c', REMOTE_SERVER.format(path=here)],
                              stdout=subprocess.PIPE, text=True)
    try:
        address = ast.literal_eval(server.stdout.readline())
        assert address[0] == '127.0.0.1' and address[1] > 0
        result = run_mphost(REMOTE_CLIENT.format(path=here), repr(address), 'first')
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "['client']"
        m = SharedManager(address=address, authkey=b'remote key')
        m.connect()
        shared = m.get_shared()
        # An auto proxy exposes the public methods (no subscription).
        assert shared.get('client') == 'first'
        shared.update(local=True)
        result = run_mphost(REMOTE_CLIENT.format(path=here), repr(address), 'second')
        assert result.stdout.strip() == "['client', 'local']"
        assert shared.get('client') == 'second'
        bad = SharedManager(address=address, authkey=b'wrong')
        with pytest.raises(multiprocessing.AuthenticationError):
            bad.connect()
        del shared
        # Shut the server down through the protocol.
        conn = connection.Client(address, authkey=b'remote key')
        managers.dispatch(conn, None, 'shutdown')
        conn.close()
        assert server.wait(TIMEOUT) == 0
    finally:
        if server.poll() is None:
            server.kill()
        server.communicate()


def test_started_manager_on_tcp_used_by_stock_python3():
    """A stock python3 client uses an mphost manager over TCP."""
    m = SyncManager(address=('127.0.0.1', 0), authkey=b'interop')
    m.start()
    try:
        d = m.dict(start=1)

        peer = StockPeer('''
            import ast
            from multiprocessing.managers import SyncManager, DictProxy
            SyncManager.register('existing_dict', proxytype=DictProxy, create_method=False)
            m = SyncManager(address=ast.literal_eval(sys.argv[1]), authkey=b'interop')
            m.connect()
            l = m.list([1, 2])
            l.append(3)
            print(l[:], flush=True)
            ns = m.Namespace(x=5)
            print(ns.x, flush=True)
            q = m.Queue()
            q.put('through stock')
            print(q.get(), flush=True)
            del l, ns, q
        ''', repr(m.address))
        try:
            assert peer.readline() == '[1, 2, 3]'
            assert peer.readline() == '5'
            assert peer.readline() == 'through stock'
            code, _out, err = peer.finish()
            assert code == 0, err
        finally:
            peer.kill()
        assert d['start'] == 1
        del d
        deadline = time.monotonic() + TIMEOUT
        while m._number_of_objects() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert m._number_of_objects() == 0
    finally:
        m.shutdown()


def test_mphost_client_of_a_stock_manager():
    """An mphost client uses a manager served by stock python3."""
    import ast
    peer = StockPeer('''
        from multiprocessing.managers import SyncManager
        m = SyncManager(address=('127.0.0.1', 0), authkey=b'interop')
        m.start()
        print(repr(m.address), flush=True)
        sys.stdin.readline()
        print(m._number_of_objects(), flush=True)
        m.shutdown()
    ''')
    try:
        address = ast.literal_eval(peer.readline())
        m = SyncManager(address=address, authkey=b'interop')
        m.connect()
        d = m.dict()
        d['a'] = [1, 2]
        assert d['a'] == [1, 2]
        assert sorted(d) == ['a']  # an iterator proxy from the stock server
        ns = m.Namespace(v=1)
        ns.v += 1
        assert ns.v == 2
        lock = m.Lock()
        with lock:
            pass
        del d, ns, lock
        peer.write('report')
        assert peer.readline() == '0'
        code, _out, err = peer.finish()
        assert code == 0, err
    finally:
        peer.kill()


# -- the pieces behind the public module --

def test_names_travel_as_the_public_modules():
    """What a pickle names (proxy types, tokens, the rebuild function) is
    looked up in multiprocessing.managers, by stock python3 too."""
    for obj in (managers.DictProxy, managers.ListProxy, managers.AutoProxy, managers.RebuildProxy,
                managers.Token, managers.RemoteError, managers.Namespace, managers.Value,
                managers.BaseProxy, managers.Server, managers.dispatch):
        assert obj.__module__ == 'multiprocessing.managers', obj
        assert getattr(managers, obj.__name__) is obj
    assert b'multiprocessing.managers' in pickle.dumps(managers.Token('dict', 'a', '1'))
    assert managers.MakeProxyType('Made', ('x',)).__module__ == 'multiprocessing.managers'


def test_object_table_counts_and_kept_objects():
    from multiprocessing._manager_server import _ObjectTable
    table = _ObjectTable()
    obj = {'a': 1}
    ident = table.insert(obj, ['get'], None)
    assert table.insert(obj, ['get'], None) == ident and table.counts[ident] == 2
    assert table.find(ident).obj is obj and 'get' in table.find(ident).exposed
    assert table.decref(ident) is None
    assert table.decref(ident).obj is obj
    with pytest.raises(KeyError):
        table.find(ident)
    with pytest.raises(KeyError):
        table.decref(ident)
    # An object a proxy inside the server refers to is remembered, and comes
    # back with the next reference.
    ident = table.insert(obj, ['get'], None)
    table.keep(ident)
    table.decref(ident)
    assert table.decref(ident) is None  # skipped, as the stdlib's server does
    table.incref(ident)
    assert table.counts[ident] == 1 and 'refcount=1' in table.describe()


def test_state_require():
    state = managers.State()
    assert state.value == managers.State.INITIAL
    state.require(managers.State.INITIAL, {})
    state.value = managers.State.SHUTDOWN
    with pytest.raises(multiprocessing.ProcessError, match='shut down'):
        state.require(managers.State.INITIAL, {managers.State.SHUTDOWN: 'Manager has shut down'})
    state.value = 7
    with pytest.raises(multiprocessing.ProcessError, match='Unknown state 7'):
        state.require(managers.State.INITIAL, {})


def test_frames_read_in_the_connection_format():
    """The client's framed reader takes what a plain Connection writes
    (several messages per read, a message larger than its buffer, a
    message cut in pieces) and reads end of file as the stdlib does."""
    from multiprocessing import _manager_transport as transport
    a, b = socket.socketpair()
    writer = connection.Connection(a.detach())
    reader_conn = connection.Connection(b.detach())
    frames = transport._Frames(reader_conn, 0)
    big = bytes(range(256)) * 1000

    def several():
        writer.send(('small', 1))
        writer.send(big)  # more than the socket holds: read while written
        writer.send_bytes(b'raw')
    t = threading.Thread(target=several)
    t.start()
    assert frames.recv() == ('small', 1)
    assert frames.recv() == big
    assert bytes(frames.next()) == b'raw'
    t.join(TIMEOUT)

    def trickle():
        data = b''.join(transport._Frames.encode(['piece', 2]))
        for i in range(len(data)):
            os.write(writer.fileno(), data[i:i + 1])
            time.sleep(0.001)
    t = threading.Thread(target=trickle)
    t.start()
    assert frames.recv() == ['piece', 2]
    t.join(TIMEOUT)
    frames.send({'back': True})
    assert writer.recv() == {'back': True}
    writer.close()
    with pytest.raises(EOFError):
        frames.recv()
    reader_conn.close()


def test_a_busy_local_link_moves_onto_channels():
    """A link to a local mphost manager that keeps being used carries its
    requests over channels; a manager that dies is then seen as end of file
    as over the socket."""
    from multiprocessing import _manager_transport as transport
    m = SyncManager()
    m.start()
    try:
        d = m.dict()
        for i in range(2 * transport._CHANNELS_AFTER):
            d[i % 5] = i
            assert d[i % 5] == i
        link = d._tls.link
        assert type(link.stream) is transport._Channels
        big = b'x' * (4 << 20)
        d['big'] = big
        assert d['big'] == big
        assert m._number_of_objects() == 1
        m._process.kill()
        m._process.join(TIMEOUT)
        started = time.monotonic()
        with pytest.raises((EOFError, OSError)):
            d[0]
        assert time.monotonic() - started < 10
    finally:
        m.shutdown()


def test_a_tcp_link_stays_on_its_socket():
    from multiprocessing import _manager_transport as transport
    with SyncManager(address=('127.0.0.1', 0)) as m:
        d = m.dict()
        for i in range(2 * transport._CHANNELS_AFTER):
            d[i] = i
        assert type(d._tls.link.stream) is transport._Frames
        assert sorted(d.keys()) == list(range(2 * transport._CHANNELS_AFTER))


def test_mphost_client_of_a_stock_manager_on_a_unix_socket():
    """A stock server on this machine does not offer channels: a busy
    link stays on the socket and works as with any stock manager."""
    import ast
    from multiprocessing import _manager_transport as transport
    peer = StockPeer('''
        from multiprocessing.managers import SyncManager
        m = SyncManager(authkey=b'interop')
        m.start()
        print(repr(m.address), flush=True)
        sys.stdin.readline()
        print(m._number_of_objects(), flush=True)
        m.shutdown()
    ''')
    try:
        address = ast.literal_eval(peer.readline())
        assert isinstance(address, str)
        m = SyncManager(address=address, authkey=b'interop')
        m.connect()
        d = m.dict()
        for i in range(2 * transport._CHANNELS_AFTER):
            d[i] = i * i
        assert type(d._tls.link.stream) is transport._Frames
        assert d[7] == 49 and len(d) == 2 * transport._CHANNELS_AFTER
        del d
        peer.write('report')
        assert peer.readline() == '0'
        code, _out, err = peer.finish()
        assert code == 0, err
    finally:
        peer.kill()


class _CallsTheManager:
    """Pickled as the value its proxy read while pickling (a manager call
    made from inside the pickler, on the thread that is pickling)."""

    def __init__(self, proxy):
        self.proxy = proxy

    def __reduce__(self):
        return (int, (self.proxy['seen'],))


class _Registered:
    def __init__(self, value):
        self.value = value


class _OnlyHere:
    """Pickles in the process that made it only."""

    def __init__(self, pid=None):
        self.pid = os.getpid() if pid is None else pid

    def __reduce__(self):
        if os.getpid() != self.pid:
            raise TypeError('cannot pickle this here')
        return (_OnlyHere, (-1,))


def test_a_channel_link_pickles_reentrantly_and_with_reducers_registered_later():
    """On channels, each side keeps a pickler of its own: a manager call
    made while it pickles still works, a reducer registered afterwards is
    used, and an unpicklable result is reported and the link goes on."""
    from multiprocessing import _manager_transport as transport
    from multiprocessing.reduction import ForkingPickler
    with SyncManager() as m:
        d = m.dict()
        for i in range(2 * transport._CHANNELS_AFTER):
            d['seen'] = i
        assert type(d._tls.link.stream) is transport._Channels
        d['copy'] = _CallsTheManager(d)
        assert d['copy'] == 2 * transport._CHANNELS_AFTER - 1
        ForkingPickler.register(_Registered, lambda obj: (str, ('registered %d' % obj.value,)))
        try:
            d['reg'] = _Registered(7)
        finally:
            del ForkingPickler._extra_reducers[_Registered]
        assert d['reg'] == 'registered 7'
        lst = m.list()
        for i in range(2 * transport._CHANNELS_AFTER):
            lst.append(i)
        lst.append(_OnlyHere())
        with pytest.raises(RemoteError, match='Unserializable message'):
            lst[-1]
        assert lst[0] == 0 and len(lst) == 2 * transport._CHANNELS_AFTER + 1


def test_a_lock_taken_before_a_link_moves_is_still_the_links_after():
    """The thread that served a link's socket goes on serving its channels:
    a lock a call took before the move is released by a call after it."""
    from multiprocessing import _manager_transport as transport
    with SyncManager() as m:
        lock = m.RLock()
        d = m.dict()
        assert lock.acquire(timeout=TIMEOUT)
        for i in range(2 * transport._CHANNELS_AFTER):
            d[i] = i
        assert type(d._tls.link.stream) is transport._Channels
        assert lock.acquire(timeout=TIMEOUT)  # re-entered by the same owner
        lock.release()
        lock.release()
        got = []
        t = threading.Thread(target=lambda: got.append(lock.acquire(timeout=TIMEOUT) and lock.release()))
        t.start()
        t.join(TIMEOUT)
        assert got == [None]


def test_a_call_blocking_on_channels_leaves_other_links_served():
    """Each link has its own server thread: a Queue.get waiting in the
    server for one client thread does not hold up another's calls."""
    from multiprocessing import _manager_transport as transport
    with SyncManager() as m:
        q = m.Queue()
        d = m.dict()
        results = []

        def consumer():
            for i in range(2 * transport._CHANNELS_AFTER):
                q.qsize()
            results.append(type(q._tls.link.stream) is transport._Channels)
            results.append(q.get(timeout=TIMEOUT))

        t = threading.Thread(target=consumer)
        t.start()
        for i in range(4 * transport._CHANNELS_AFTER):
            d[i] = i
        assert type(d._tls.link.stream) is transport._Channels
        q.put('done')
        t.join(TIMEOUT)
        assert results == [True, 'done']
        assert len(d) == 4 * transport._CHANNELS_AFTER


def test_calls_on_channels_raise_what_the_method_raised_and_keep_going():
    from multiprocessing import _manager_transport as transport
    with SyncManager() as m:
        d = m.dict()
        lst = m.list()
        for i in range(2 * transport._CHANNELS_AFTER):
            d[i] = str(i)
        with pytest.raises(KeyError):
            d['missing']
        assert d.get('missing', 'default') == 'default'
        d.update({'a': 1}, b=2)
        assert (d['a'], d['b']) == (1, 2)
        assert d.pop('b') == 2
        with pytest.raises(RemoteError, match='not in exposed'):
            d._callmethod('no_such_method')
        with pytest.raises(IndexError):
            lst.pop()
        inner = m.dict({'x': [1, 2]})
        lst.append(inner)
        assert lst[0]['x'] == [1, 2]
        assert d.copy()[3] == '3'


def test_a_channel_link_sees_its_manager_shut_down():
    from multiprocessing import _manager_transport as transport
    m = SyncManager()
    m.start()
    d = m.dict()
    for i in range(2 * transport._CHANNELS_AFTER):
        d[i] = i
    assert type(d._tls.link.stream) is transport._Channels
    m.shutdown()
    started = time.monotonic()
    with pytest.raises((EOFError, OSError)):
        d[0]
    assert time.monotonic() - started < 10
