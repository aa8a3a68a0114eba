"""One contract for every reader of a channel message: what send(obj) or
put(obj) writes is ForkingPickler.dumps(obj), byte for byte, so recv() and
get() read it, and so do recv_bytes() followed by any unpickler; what
send_bytes(ForkingPickler.dumps(obj)) writes, recv() reads. The receiver
gets what stock python3 gives it: writable arrays of the same dtype, byte
order and memory order, and reducers called with the same protocol. Large
payloads are still written into shared memory once, gathered from the
pickler's chunks (not joined first), and unpickled where they arrived."""

import pickle
import threading

import pytest

import multiprocessing
from multiprocessing import connection
from multiprocessing.reduction import ForkingPickler

numpy = pytest.importorskip('numpy')

TIMEOUT = 30
METHODS = ['fork', 'spawn', 'forkserver']


@pytest.fixture(params=METHODS)
def ctx(request):
    return multiprocessing.get_context(request.param)


class Recorder:
    """Records the protocol its reducer was called with."""

    def __init__(self, protocol=None):
        self.protocol = protocol

    def __reduce_ex__(self, protocol):
        return (Recorder, (protocol,))


def array_total(a):
    return float(a.sum())


def describe(value):
    """What a user can observe of a received array (or other value)."""
    if isinstance(value, numpy.ndarray):
        return ('ndarray', value.dtype.str, value.shape, value.flags.writeable,
                value.flags.c_contiguous, value.flags.f_contiguous, value.tobytes())
    if isinstance(value, Recorder):
        return ('Recorder', value.protocol)
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [describe(v) for v in value])
    return (type(value).__name__, value)


def stock_round_trip(obj):
    # Stock's send/recv is exactly this.
    return pickle.loads(ForkingPickler.dumps(obj))


PAYLOADS = {
    'int32 from read-only bytes': numpy.frombuffer(b'\1\0\0\0' * 4, numpy.int32),
    'big-endian': numpy.arange(20000, dtype='>i8'),
    'fortran order': numpy.asfortranarray(numpy.arange(300 * 400, dtype=numpy.float64).reshape(300, 400)),
    'strided view': numpy.arange(1 << 17)[::3],
    'read-only large': numpy.frombuffer(bytes(1 << 20), numpy.uint8),
    'structured': numpy.zeros(10000, dtype=[('a', '<i4'), ('b', '>f8')]),
    'recorder': Recorder(),
    'mixed': [numpy.ones(8192), b'x' * 100000, bytearray(70000), 'text', Recorder()],
}


def echo(conn):
    # The child reads with recv_bytes()+loads and answers with send().
    while True:
        obj = ForkingPickler.loads(conn.recv_bytes())
        if obj is None:
            break
        conn.send(obj)


def test_pool_takes_arguments_holding_large_buffers(ctx):
    # A pool's worker reads its tasks with recv_bytes() and loads.
    with ctx.Pool(1) as pool:
        assert pool.apply_async(array_total, (numpy.ones(8192),)).get(TIMEOUT) == 8192.0
        arrays = [numpy.full(100000, i, dtype=numpy.float32) for i in range(4)]
        assert pool.map_async(array_total, arrays).get(TIMEOUT) == [100000.0 * i for i in range(4)]


def test_send_is_read_by_recv_bytes_and_loads_in_a_child(ctx):
    a, b = ctx.Pipe()
    p = ctx.Process(target=echo, args=(b,))
    p.start()
    try:
        for name, obj in PAYLOADS.items():
            a.send(obj)
            assert a.poll(TIMEOUT), name
            assert describe(a.recv()) == describe(stock_round_trip(obj)), name
        # And the reverse: send_bytes of a pickle is read by recv().
        a.send_bytes(ForkingPickler.dumps(PAYLOADS['mixed']))
        assert a.poll(TIMEOUT)
        assert describe(a.recv()) == describe(stock_round_trip(PAYLOADS['mixed']))
        a.send(None)
    finally:
        p.join(TIMEOUT)
    assert p.exitcode == 0


@pytest.mark.parametrize('name', sorted(PAYLOADS))
def test_recv_bytes_gives_exactly_the_forking_pickle(name):
    obj = PAYLOADS[name]
    r, w = multiprocessing.Pipe(duplex=False)
    w.send(obj)
    assert r.recv_bytes() == bytes(ForkingPickler.dumps(obj))
    w.send(obj)
    assert describe(r.recv()) == describe(stock_round_trip(obj))


@pytest.mark.parametrize('name', sorted(PAYLOADS))
def test_queue_items_are_what_stock_gives(name):
    obj = PAYLOADS[name]
    for q in (multiprocessing.Queue(), multiprocessing.SimpleQueue(), multiprocessing.JoinableQueue()):
        q.put(obj)
        got = q.get(timeout=TIMEOUT) if not isinstance(q, multiprocessing.queues.SimpleQueue) else q.get()
        assert describe(got) == describe(stock_round_trip(obj)), type(q).__name__


def test_queue_put_is_read_by_recv_bytes():
    q = multiprocessing.Queue()
    obj = PAYLOADS['mixed']
    q.put(obj)
    assert q._reader.poll(TIMEOUT)
    assert q._reader.recv_bytes() == bytes(ForkingPickler.dumps(obj))


def test_received_arrays_are_writable_copies(ctx):
    q = ctx.Queue()
    source = numpy.arange(1 << 18, dtype=numpy.float64)
    q.put(source)
    got = q.get(timeout=TIMEOUT)
    assert got.flags.writeable and got.flags.owndata == stock_round_trip(source).flags.owndata
    got[0] = -1.0
    assert got[0] == -1.0 and source[0] == 0.0


def test_reducers_see_the_default_protocol():
    r, w = multiprocessing.Pipe()
    w.send(Recorder())
    assert r.recv().protocol == pickle.DEFAULT_PROTOCOL
    q = multiprocessing.Queue()
    q.put(Recorder())
    assert q.get(timeout=TIMEOUT).protocol == pickle.DEFAULT_PROTOCOL


def test_large_payloads_are_gathered_not_joined():
    payload = b'y' * 300000
    parts = connection._dumps_for_channel([payload, 'tail'])
    assert isinstance(parts, list) and any(part is payload for part in parts)
    assert b''.join(parts) == bytes(ForkingPickler.dumps([payload, 'tail']))
    small = connection._dumps_for_channel({'a': 1})
    assert isinstance(small, bytes) and small == bytes(ForkingPickler.dumps({'a': 1}))


def test_many_threads_pickle_at_once():
    r, w = multiprocessing.Pipe(duplex=False)
    big = numpy.arange(50000)

    def send_some():
        for _ in range(20):
            w.send(big)

    threads = [threading.Thread(target=send_some) for _ in range(4)]
    for t in threads:
        t.start()
    for _ in range(80):
        assert r.poll(TIMEOUT)
        assert (r.recv() == big).all()
    for t in threads:
        t.join(TIMEOUT)


def test_damaged_bytes_are_a_clear_unpickling_error_and_the_pipe_stays_usable():
    a, b = multiprocessing.Pipe()
    for damaged in (b'\x80\x04\x95' + b'\x01' * 30, bytes(ForkingPickler.dumps(numpy.arange(20000)))[:-100]):
        b.send_bytes(damaged)
        with pytest.raises(pickle.UnpicklingError):
            a.recv()
    b.send(numpy.arange(1 << 16))
    assert (a.recv() == numpy.arange(1 << 16)).all()


class Replaced:
    pass


def test_a_reducer_registered_again_is_used_at_once():
    from multiprocessing.reduction import ForkingPickler as FP
    r, w = multiprocessing.Pipe(duplex=False)
    FP.register(Replaced, lambda obj: (str, ('first',)))
    w.send(Replaced())
    assert r.recv() == 'first'
    FP.register(Replaced, lambda obj: (str, ('second',)))
    w.send(Replaced())
    assert r.recv() == 'second'
