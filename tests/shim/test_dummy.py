"""multiprocessing.dummy: the API over threads, and dummy.connection."""

import array
import queue
import threading
import time

import multiprocessing.dummy as dummy
from multiprocessing.dummy import connection as dconn

TIMEOUT = 30


def test_names_and_origin():
    assert 'share/mphost/python' in dummy.__file__
    for name in dummy.__all__:
        assert hasattr(dummy, name), name
    assert dummy.Lock is threading.Lock and dummy.Queue is queue.Queue
    assert dummy.JoinableQueue is queue.Queue
    assert dummy.Event is threading.Event and dummy.Barrier is threading.Barrier
    assert dummy.current_process is threading.current_thread
    assert dummy.Pipe is dconn.Pipe
    assert dummy.Manager() is dummy
    dummy.freeze_support()
    dummy.shutdown()


def test_process_is_a_thread():
    results = []
    p = dummy.Process(target=results.append, args=(threading.get_ident(),))
    assert isinstance(p, threading.Thread)
    assert p.exitcode is None
    p.start()
    p.join(TIMEOUT)
    assert p.exitcode == 0
    assert results and results[0] == threading.get_ident()  # args were captured here
    q = queue.Queue()
    p = dummy.Process(target=lambda: q.put(threading.current_thread().name), name='worker-x')
    p.start()
    p.join(TIMEOUT)
    assert q.get_nowait() == 'worker-x'


def test_active_children():
    stop = threading.Event()
    p = dummy.Process(target=stop.wait, args=(TIMEOUT,))
    p.start()
    assert p in dummy.active_children()
    stop.set()
    p.join(TIMEOUT)
    assert p not in dummy.active_children()


def test_start_from_another_thread_is_refused():
    p = dummy.Process(target=lambda: None)
    errors = []

    def start_elsewhere():
        try:
            p.start()
        except RuntimeError as e:
            errors.append(e)
    t = threading.Thread(target=start_elsewhere)
    t.start()
    t.join(TIMEOUT)
    assert errors and 'Parent is' in str(errors[0])


def test_value_array_namespace():
    v = dummy.Value('i', 3)
    v.value += 1
    assert v.value == 4 and repr(v) == "<Value('i', 4)>"
    a = dummy.Array('d', [1, 2])
    assert isinstance(a, array.array) and list(a) == [1.0, 2.0]
    ns = dummy.Namespace(x=1, _y=2)
    assert repr(ns) == 'Namespace(x=1)'
    m = dummy.Manager()
    assert m.dict(a=1) == {'a': 1} and m.list([1]) == [1]


def test_pool_of_threads():
    idents = set()

    def record(x):
        idents.add(threading.get_ident())
        time.sleep(0.01)
        return x * 2
    with dummy.Pool(3) as pool:
        assert pool.map(record, range(12)) == [x * 2 for x in range(12)]
        assert pool.apply(record, (5,)) == 10
        # Unpicklable callables are fine: nothing is pickled.
        assert pool.map(lambda x: x + 1, [1, 2]) == [2, 3]
    assert threading.get_ident() not in idents


def test_pipe_passes_objects_by_reference():
    a, b = dummy.Pipe()
    obj = object()
    a.send(obj)
    assert b.poll() and b.recv() is obj
    b.send_bytes(b'bytes')
    assert a.recv_bytes() == b'bytes'
    assert not a.poll()
    assert a.poll(0.01) is False
    threading.Timer(0.05, lambda: b.send('late')).start()
    assert a.poll(TIMEOUT) is True
    assert a.recv() == 'late'
    threading.Timer(0.05, lambda: b.send('later')).start()
    assert a.poll(None) is True
    assert a.recv() == 'later'
    with a:
        pass


def test_listener_and_client():
    with dconn.Listener() as listener:
        assert isinstance(listener.address, queue.Queue)

        def client():
            c = dconn.Client(listener.address)
            c.send('hello')
            assert c.recv() == 'welcome'
        t = threading.Thread(target=client)
        t.start()
        conn = listener.accept()
        assert conn.recv() == 'hello'
        conn.send('welcome')
        t.join(TIMEOUT)
        assert not t.is_alive()
    assert dconn.families == [None]
