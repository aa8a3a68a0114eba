"""The native put/get of Queue (_mphost.QueuePort) and its builtin pickle codec.

The codec must write exactly what pickle.dumps(obj, 4) writes (so every
reader, stock or not, reads it) and read back what pickle.loads reads; the
port must keep Queue's semantics to the letter.
"""

import enum
import os
import pickle
import queue
import random
import signal
import sys
import threading
import time

import pytest

import _mphost
import multiprocessing
from multiprocessing import queues

pytestmark = pytest.mark.skipif(not hasattr(_mphost, 'QueuePort'), reason='launcher without the native port')


def _random_graph(rng, depth=0):
    kinds = ['none', 'bool', 'int', 'bigint', 'float', 'str', 'bytes']
    if depth < 4:
        kinds += ['tuple', 'list', 'dict'] * 2
    kind = rng.choice(kinds)
    if kind == 'none':
        return None
    if kind == 'bool':
        return rng.random() < 0.5
    if kind == 'int':
        return rng.choice([0, 1, 255, 256, 65535, 65536, -1, -129, 2**31 - 1, -2**31,
                           rng.randint(-2**40, 2**40)])
    if kind == 'bigint':
        return rng.choice([1, -1]) * rng.randint(2**31, 2**200)
    if kind == 'float':
        return rng.choice([0.0, -0.0, 1.5, float('inf'), -float('inf'), rng.uniform(-1e9, 1e9)])
    if kind == 'str':
        return ''.join(rng.choice('abcé€😀 ') for _ in range(rng.randint(0, 300)))
    if kind == 'bytes':
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, 300)))
    items = [_random_graph(rng, depth + 1) for _ in range(rng.randint(0, 6))]
    if items and rng.random() < 0.3:
        items.append(items[0])  # the same object twice: memo
    if kind == 'tuple':
        return tuple(items)
    if kind == 'list':
        return items
    return {i if rng.random() < 0.5 else str(i): v for i, v in enumerate(items)}


def test_codec_writes_the_bytes_of_the_c_pickler():
    rng = random.Random(1234)
    encoded = 0
    for _ in range(3000):
        obj = _random_graph(rng)
        data = _mphost._pickle_builtin(obj)
        assert data is not None, repr(obj)[:200]
        assert data == pickle.dumps(obj, 4), repr(obj)[:200]
        encoded += 1
    assert encoded == 3000


def test_codec_reads_what_pickle_loads_reads():
    rng = random.Random(99)
    for _ in range(3000):
        obj = _random_graph(rng)
        data = pickle.dumps(obj, 4)
        back = _mphost._unpickle_builtin(data)
        expected = pickle.loads(data)
        assert repr(back) == repr(expected)


def test_codec_keeps_identity_and_self_reference():
    s = 'shared'
    inner = [s]
    obj = (s, inner, inner, {'k': s})
    t = ([],)
    t[0].append(t)
    lst = []
    lst.append(lst)
    for o in (obj, t, lst):
        assert _mphost._pickle_builtin(o) == pickle.dumps(o, 4)
    back = _mphost._unpickle_builtin(pickle.dumps(obj, 4))
    assert back[1] is back[2] and back[0] is back[3]['k']
    back_t = _mphost._unpickle_builtin(pickle.dumps(t, 4))
    assert back_t[0][0] is back_t
    back_l = _mphost._unpickle_builtin(pickle.dumps(lst, 4))
    assert back_l[0] is back_l


class Color(enum.IntEnum):
    RED = 1


class MyInt(int):
    pass


@pytest.mark.parametrize('obj', [Color.RED, MyInt(3), {1, 2}, frozenset(), bytearray(b'x'),
                                 object, 'lone \ud800 surrogate', b'x' * 100_000,
                                 [str(i) for i in range(2000)], (1, Color.RED)],
                         ids=['IntEnum', 'int subclass', 'set', 'frozenset', 'bytearray', 'class',
                              'surrogate', 'big bytes', 'many strings', 'tuple with enum'])
def test_codec_leaves_other_objects_to_the_pickler(obj):
    assert _mphost._pickle_builtin(obj) is None


@pytest.mark.parametrize('data', [
    b'', b'\x80', b'\x80\x04', b'\x80\x04N', b'\x80\x04N.x', b'\x80\x04NN.',
    b'\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00K\x01.',  # frame longer than the data
    b'\x80\x04h\x00.',  # memo get of nothing
    b'\x80\x04\x8c\x05ab.',  # truncated string
    b'\x80\x04(K\x01K\x02u.',  # SETITEMS without a dict
    b'\x80\x04]K\x01\x8a.',  # truncated LONG1
    pickle.dumps(Color.RED, 4), pickle.dumps({1, 2}, 4),
], ids=lambda data: repr(data[:12]))
def test_codec_defers_on_anything_else(data):
    with pytest.raises(ValueError, match='builtin codec'):
        _mphost._unpickle_builtin(data)


def test_unhashable_key_defers_to_pickle_loads():
    data = b'\x80\x04}(]K\x01u.'  # {[]: 1}
    with pytest.raises(ValueError, match='builtin codec'):
        _mphost._unpickle_builtin(data)
    with pytest.raises(TypeError):
        pickle.loads(data)


def test_put_and_get_are_the_native_calls():
    q = multiprocessing.Queue()
    assert isinstance(q._port, _mphost.QueuePort)
    assert q.put == q._port.put and q.get == q._port.get
    jq = multiprocessing.JoinableQueue()
    assert jq.put == jq._port.put and jq.get == jq._port.get


def test_items_round_trip_through_both_paths():
    q = multiprocessing.Queue()
    shared = ['x']
    items = [None, (0, 1), 'é' * 1000, b'\0' * 70_000, Color.RED, {1, 2}, (shared, shared),
             list(range(5000)), 2**300, -0.0]
    for item in items:
        q.put(item)
    for item in items:
        got = q.get(timeout=5)
        assert got == item and type(got) is type(item)
    q.put((shared, shared))
    a, b = q.get(timeout=5)
    assert a is b


def test_keywords_and_bad_arguments():
    q = multiprocessing.Queue(maxsize=1)
    q.put(obj := 1, block=False)
    with pytest.raises(queue.Full):
        q.put(2, block=True, timeout=0.05)
    with pytest.raises(queue.Full):
        q.put_nowait(2)
    assert q.get(block=True, timeout=1) == obj
    with pytest.raises(queue.Empty):
        q.get(timeout=0.05)
    with pytest.raises(queue.Empty):
        q.get(False)
    with pytest.raises(TypeError):
        q.put(1, nonsense=True)
    with pytest.raises(TypeError):
        q.put()
    with pytest.raises(TypeError):
        q.get(True, 1, 2)
    with pytest.raises(TypeError):
        q.get(True, block=True)
    with pytest.raises(ValueError):
        q.get(timeout=float('nan'))
    assert q.qsize() == 0


def test_timeout_is_honoured():
    q = multiprocessing.Queue()
    t0 = time.monotonic()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.3)
    assert 0.25 <= time.monotonic() - t0 < 3


def test_closed_queue_raises_with_its_repr():
    q = multiprocessing.Queue()
    q.close()
    with pytest.raises(ValueError, match=r'Queue <multiprocessing.queues.Queue object .*> is closed'):
        q.put(1)
    with pytest.raises(ValueError, match='is closed'):
        q.get()


class Recorder(multiprocessing.queues.Queue):
    def __init__(self):
        super().__init__(ctx=multiprocessing.get_context())
        self.reports = []

    def _on_queue_feeder_error(self, e, obj):
        self.reports.append((e, obj, sys.exc_info()[1]))


def test_unpicklable_item_is_reported_with_the_exception_being_handled():
    q = Recorder()
    lock = threading.Lock()
    q.put(lock)
    assert len(q.reports) == 1
    e, obj, handled = q.reports[0]
    assert isinstance(e, TypeError) and obj is lock and handled is e
    assert sys.exc_info() == (None, None, None)
    assert q.qsize() == 0  # the slot went back
    q.put('next')
    assert q.get(timeout=5) == 'next'


def test_keyboard_interrupt_while_pickling_propagates():
    class Boom:
        def __reduce__(self):
            raise KeyboardInterrupt
    q = multiprocessing.Queue()
    with pytest.raises(KeyboardInterrupt):
        q.put(Boom())


@pytest.mark.skipif(not hasattr(signal, 'setitimer'), reason='needs setitimer')
def test_signal_interrupts_a_blocking_get():
    class Alarm(Exception):
        pass

    def handler(signum, frame):
        raise Alarm

    q = multiprocessing.Queue()
    old = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        t0 = time.monotonic()
        with pytest.raises(Alarm):
            q.get()
        assert time.monotonic() - t0 < 5
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_blocking_get_releases_the_gil():
    q = multiprocessing.Queue()
    ticks = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(1)
            time.sleep(0.005)

    t = threading.Thread(target=ticker)
    t.start()
    try:
        with pytest.raises(queue.Empty):
            q.get(timeout=0.3)
    finally:
        stop.set()
        t.join()
    assert len(ticks) > 10


def _child_put(q):
    q.put((1, 'two', 3.0, [b'four']))
    q.put(Color.RED)


def _child_put_traced(q):
    # SIGUSR1 makes the child print where each of its threads is.
    import faulthandler
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    _child_put(q)


def _where_it_hangs(pid):
    """What a child that does not end is doing: its Python stacks (printed
    to stderr by faulthandler) and the kernel's wait channel of each thread."""
    try:
        os.kill(pid, signal.SIGUSR1)
        time.sleep(1.0)
        tasks = os.listdir(f'/proc/{pid}/task')
        return {t: open(f'/proc/{pid}/task/{t}/wchan').read() for t in tasks}
    except OSError as e:
        return repr(e)


def _under_libasan():
    with open('/proc/self/maps') as maps:
        return 'libasan' in maps.read()


# A thread that has just ended (the ticker above) may still hold libasan's
# allocator lock while its OS thread drains its cache; a fork at that moment
# leaves the child blocked forever in malloc. CPython skips its multiprocessing
# tests under ASan for libasan's dead locks (bpo-45200).
@pytest.mark.skipif(_under_libasan(), reason='libasan has a dead lock in a child forked '
                    'while another thread holds its allocator lock (bpo-45200)')
def test_items_cross_processes():
    ctx = multiprocessing.get_context('fork')
    q = ctx.Queue()
    p = ctx.Process(target=_child_put_traced, args=(q,))
    p.start()
    assert q.get(timeout=10) == (1, 'two', 3.0, [b'four'])
    assert q.get(timeout=10) is Color.RED
    p.join(10)
    if p.exitcode is None:
        where = _where_it_hangs(p.pid)
        p.kill()
        p.join(10)
        pytest.fail(f'the child put both items but did not end: {where}')
    assert p.exitcode == 0


def test_large_items_are_unpickled_from_shared_memory_and_stay_valid():
    # Above the large-message threshold an item travels in a block of its own
    # and is unpickled straight from it: what comes out must own its bytes,
    # valid after the block has gone back to be reused by later items.
    import numpy
    q = multiprocessing.Queue()
    items = [bytes(range(256)) * 4096, bytearray(b'x' * (3 << 20)),
             numpy.arange(1 << 18, dtype=numpy.float64),
             memoryview(b'y' * (1 << 20)).toreadonly().tobytes(),
             ('nested', [b'z' * (2 << 20)], {'k': memoryview(b'w' * (1 << 20)).tobytes()})]
    received = []
    for item in items:
        q.put(item)
        received.append(q.get(timeout=30))
        q.put(b'\xff' * len(pickle.dumps(item, protocol=5)))  # reuses the block
        q.get(timeout=30)
    assert received[0] == items[0]
    assert received[1] == items[1] and isinstance(received[1], bytearray)
    assert (received[2] == items[2]).all()
    assert received[3] == b'y' * (1 << 20)
    assert received[4] == items[4]
    q.close()
    q.join_thread()
