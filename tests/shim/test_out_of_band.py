"""Protocol 5 out-of-band buffers over shared-memory channels: a Pipe end's
send() and a Queue's put() write a large buffer (numpy array, bytearray,
PickleBuffer) into shared memory once, and the receiver unpickles it in
place, its buffers still in shared memory and as writable as a copy."""

import pickle

import pytest

import _mphost
import multiprocessing
from multiprocessing import connection

numpy = pytest.importorskip('numpy')

TIMEOUT = 30


def echo(conn):
    while True:
        obj = conn.recv()
        if obj is None:
            break
        conn.send(obj)


def root_of(array):
    base = array
    while getattr(base, 'base', None) is not None:
        base = base.base
    return base


@pytest.fixture(params=['fork', 'spawn', 'forkserver'])
def ctx(request):
    return multiprocessing.get_context(request.param)


def test_arrays_cross_a_pipe_out_of_band(ctx):
    a, b = ctx.Pipe()
    p = ctx.Process(target=echo, args=(b,))
    p.start()
    big = numpy.arange(1 << 18, dtype=numpy.float64)
    small = numpy.arange(10)
    a.send((big, small, bytearray(b'z' * 100_000), 'text'))
    got_big, got_small, got_bytes, text = a.recv()
    a.send(None)
    p.join(TIMEOUT)
    assert p.exitcode == 0
    assert (got_big == big).all() and (got_small == small).all()
    assert got_bytes == bytearray(b'z' * 100_000) and text == 'text'
    # The large one is read where it arrived, in shared memory, and writable.
    assert isinstance(root_of(got_big), memoryview)
    assert isinstance(root_of(got_big).obj, _mphost.Block)
    assert got_big.flags.writeable
    got_big[0] = -1.0
    assert got_big[0] == -1.0 and big[0] == 0.0
    # The small one went inside the pickle: a copy of its own.
    assert not isinstance(getattr(root_of(got_small), 'obj', None), _mphost.Block)


def test_arrays_cross_a_queue_out_of_band(ctx):
    q = ctx.Queue()
    items = [numpy.ones((512, 512)), numpy.arange(1 << 17)[::2], bytearray(1 << 20)]
    for item in items:
        q.put({'payload': item})
    got = [q.get(timeout=TIMEOUT)['payload'] for _ in items]
    assert (got[0] == items[0]).all() and got[0].shape == (512, 512)
    assert (got[1] == items[1]).all()  # not contiguous: pickled in band
    assert got[2] == items[2]
    assert isinstance(root_of(got[0]).obj, _mphost.Block)
    q.close()
    q.join_thread()


def test_out_of_band_frame_round_trips_and_small_objects_stay_plain_pickles():
    plain = connection._dumps_for_channel({'a': numpy.arange(5)})
    assert isinstance(plain, bytes) and (pickle.loads(plain)['a'] == numpy.arange(5)).all()
    obj = [numpy.arange(20000), numpy.zeros(30000), b'in band']
    parts = connection._dumps_for_channel(obj)
    assert isinstance(parts, list)
    frame = b''.join(bytes(p) for p in parts)
    assert frame[:4] == b'MPH\0'
    back = connection._loads_channel_message(bytearray(frame))
    assert (back[0] == obj[0]).all() and (back[1] == obj[1]).all() and back[2] == b'in band'


def test_damaged_out_of_band_frame_is_a_clear_unpickling_error():
    parts = connection._dumps_for_channel(numpy.arange(20000))
    frame = b''.join(bytes(p) for p in parts)
    for damaged in (frame[:10], frame[:-100], frame[:8] + b'\xff' * 8 + frame[16:]):
        with pytest.raises(pickle.UnpicklingError):
            connection._loads_channel_message(damaged)


def test_a_damaged_frame_leaves_the_pipe_usable():
    a, b = multiprocessing.Pipe()
    b.send_bytes(b'MPH\0' + b'\x01' * 30)
    with pytest.raises(pickle.UnpicklingError, match='out-of-band'):
        a.recv()
    b.send(numpy.arange(1 << 16))
    assert (a.recv() == numpy.arange(1 << 16)).all()
