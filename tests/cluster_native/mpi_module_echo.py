"""Both ranks of `mpiexec -n 2 mphost mpi_module_echo.py MODE` run this.

Rank 1 echoes every frame back as it came (its Blocks are the parts it
sends); rank 0 checks the _mphost_mpi module against the echoes and prints
'ALL OK' (MODE 'check'), or measures latency and bandwidth (MODE 'bench').
"""
import os
import pickle
import select
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.environ.get('MPHOST_MPI_MODULE_DIR')
                or os.path.join(HERE, '..', '..', 'build', 'lib', 'mphost'))

import numpy as np  # noqa: E402

import _mphost_mpi as mpi  # noqa: E402

ECHO, STOP = 1, 9
NOT_RUNNING = 'the MPI link is not running'


def wait_frame(timeout=60.0):
    poller = select.poll()
    poller.register(mpi.fileno(), select.POLLIN)
    deadline = time.monotonic() + timeout
    while True:
        got = mpi.receive()
        if got is not None:
            return got
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f'no frame within {timeout} s')
        poller.poll(min(left, 1.0) * 1000)


def drain(timeout=60.0):
    deadline = time.monotonic() + timeout
    while mpi.pending():
        if time.monotonic() > deadline:
            raise TimeoutError('sends did not complete')
        time.sleep(0.001)


def expect(exc_type, fn, *args, match=None):
    try:
        fn(*args)
    except exc_type as e:
        if match is not None and match not in str(e):
            raise AssertionError(f'{fn.__name__}{args!r}: {e!r} lacks {match!r}')
        return
    raise AssertionError(f'{fn.__name__}{args!r} did not raise {exc_type.__name__}')


def echo():
    while True:
        source, kind, header, parts = wait_frame(120)
        mpi.send(source, kind, header, parts)
        if kind == STOP:
            break
    drain()


def round_trip(header, parts):
    mpi.send(1, ECHO, header, parts)
    return wait_frame()


def check_errors():
    mpi.init()  # idempotent
    assert (mpi.rank(), mpi.size()) == (0, 2)
    assert isinstance(mpi.host(), str) and mpi.host()
    for dest in (-1, 2, 2 ** 70):
        expect(ValueError, mpi.send, dest, ECHO, b'', [])
    for kind in (-1, 256):
        expect(ValueError, mpi.send, 1, kind, b'', [])
    expect(BufferError, mpi.send, 1, ECHO, b'', [memoryview(b'abcdef')[::2]])
    expect(BufferError, mpi.send, 1, ECHO, b'', [np.arange(10)[::2]])
    expect(TypeError, mpi.send, 1, ECHO, b'', [42])
    expect(TypeError, mpi.send, 1, ECHO, 42, [])
    expect(TypeError, mpi.send, 1, ECHO, b'', 42)
    assert mpi.pending() == 0
    print('ok errors')


def check_blocks():
    source, kind, header, parts = round_trip(b'hello', [])
    assert (source, kind, bytes(header), parts) == (1, ECHO, b'hello', [])
    assert type(header).__name__ == 'Block' and len(header) == 5
    view = memoryview(header)
    assert (view.format, view.ndim, view.readonly, view.nbytes) == ('B', 1, False, 5)
    view[0] = ord('J')
    assert bytes(header) == b'Jello'
    _, _, header, parts = round_trip(b'', [b'', bytearray(b'abc'), memoryview(b'xyz'), b'\0' * 70000])
    assert len(header) == 0 and bytes(header) == b''
    assert [bytes(p) for p in parts] == [b'', b'abc', b'xyz', b'\0' * 70000]
    print('ok blocks')


def check_numpy():
    rng = np.random.default_rng(5)
    obj = {'a': np.arange(1_000_000, dtype=np.float64),
           'b': rng.standard_normal((300, 200)).astype(np.float32),
           'c': 'text', 'd': np.zeros(0), 'e': np.arange(10)[::2]}
    buffers = []
    data = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    assert len(buffers) >= 2
    _, _, header, parts = round_trip(data, buffers)
    assert len(parts) == len(buffers)
    back = pickle.loads(header, buffers=parts)
    assert back['c'] == 'text'
    for key in 'abde':
        assert back[key].dtype == obj[key].dtype and np.array_equal(back[key], obj[key]), key
    assert back['a'].flags.writeable and back['b'].flags.writeable
    back['a'][0] = 42.0
    assert back['a'][0] == 42.0 and obj['a'][0] == 0.0
    print('ok numpy')


def check_large():
    blob = np.random.default_rng(1).integers(0, 255, 100_000_000, dtype=np.uint8)
    _, _, header, parts = round_trip(b'big', [blob])
    assert bytes(header) == b'big'
    back = np.frombuffer(parts[0], dtype=np.uint8)
    assert back.size == blob.size and np.array_equal(back, blob)
    print('ok 100 MB part')


def check_many_in_flight():
    count = 300
    for i in range(count):
        mpi.send(1, ECHO, i.to_bytes(4, 'little'), [bytes([i % 256]) * (i * 37)])
    for i in range(count):
        _, _, header, parts = wait_frame()
        assert int.from_bytes(bytes(header), 'little') == i  # order kept
        assert bytes(parts[0]) == bytes([i % 256]) * (i * 37)
    idle = select.poll()
    idle.register(mpi.fileno(), select.POLLIN)
    assert idle.poll(0) == [] and mpi.receive() is None
    print('ok many in flight')


def check_release():
    held = bytearray(b'0123456789')
    mpi.send(1, ECHO, b'', [held])
    try:
        held.extend(b'x')  # exported: a bytearray cannot resize
    except BufferError:
        pass
    else:
        raise AssertionError('the part was not held')
    wait_frame()
    drain()
    held.extend(b'x')  # pending() released it
    print('ok release')


def abort_job():
    if mpi.rank() == 0:
        mpi.abort(3)
    wait_frame(120)  # never comes: the abort ends this rank too


def leave_without_finalize():
    # The module's teardown finalizes a link still running at exit.
    if mpi.rank() == 0:
        assert bytes(round_trip(b'bye', [b'x' * 100000])[2]) == b'bye'
        print('ALL OK')
    else:
        source, kind, header, parts = wait_frame()
        mpi.send(source, kind, header, parts)
    sys.stdout.flush()


def main(mode):
    if mode in ('abort', 'teardown'):
        mpi.init()
        return abort_job() if mode == 'abort' else leave_without_finalize()
    if mode == 'check':
        expect(RuntimeError, mpi.send, 0, ECHO, b'', [], match=NOT_RUNNING)
        expect(RuntimeError, mpi.receive, match=NOT_RUNNING)
    mpi.init()
    if mpi.rank() == 1:
        echo()
    elif mode == 'check':
        check_errors()
        check_blocks()
        check_numpy()
        check_large()
        check_many_in_flight()
        check_release()
        mpi.send(1, STOP, b'', [])
        assert wait_frame()[1] == STOP
        drain()
    else:
        bench()
    mpi.finalize()
    mpi.finalize()
    expect(RuntimeError, mpi.send, 0, ECHO, b'', [], match=NOT_RUNNING)
    expect(RuntimeError, mpi.receive, match=NOT_RUNNING)
    if mpi.rank() == 0:
        print('ALL OK')


def bench():
    rounds = 3000
    for i in range(rounds + 200):
        if i == 200:
            start = time.perf_counter()
        round_trip(b'p', [])
    rtt = (time.perf_counter() - start) / rounds * 1e6
    mib = np.ones(1 << 20, dtype=np.uint8)
    frames = 300
    start = time.perf_counter()
    window = 16
    for i in range(frames):
        mpi.send(1, ECHO, b'', [mib])
        if i >= window:
            wait_frame()
    for _ in range(min(window, frames)):
        wait_frame()
    secs = time.perf_counter() - start
    mpi.send(1, STOP, b'', [])
    wait_frame()
    drain()
    print(f'_mphost_mpi bench: ping-pong one-way {rtt / 2:.1f} us (round trip {rtt:.1f} us); '
          f'1 MiB parts echoed: {2 * frames / secs:.0f} MiB/s moved ({frames} frames each way in {secs:.3f} s)')


if __name__ == '__main__':
    main(sys.argv[1] if len(sys.argv) > 1 else 'check')
