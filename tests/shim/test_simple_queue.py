"""SimpleQueue straight on its channel: put(obj) and get() are the native
port's calls, no lock is taken on either side, and what a user sees is what
stock python3 shows (signatures, errors, the bytes put writes, close)."""

import pickle
import subprocess
import sys
import textwrap
import threading

import pytest

import _mphost
import multiprocessing
from multiprocessing import queues
from multiprocessing.reduction import ForkingPickler

TIMEOUT = 30


class Unpicklable:
    def __reduce__(self):
        raise TypeError('this object refuses to be pickled')


@pytest.fixture
def sq():
    q = multiprocessing.SimpleQueue()
    yield q
    q.close()


def test_put_and_get_are_the_port_calls_and_no_lock_is_made(sq):
    assert isinstance(sq._port, _mphost.QueuePort)
    assert sq.put == sq._port.put and sq.get == sq._port.get
    # The stand-ins for subclasses that take the stdlib's locks lock nothing.
    for lock in (sq._rlock, sq._wlock):
        with lock:
            assert lock.acquire(False) and lock.acquire(True, 0)
        lock.release()
    assert pickle.loads(pickle.dumps(sq._rlock)) is sq._rlock


def test_values_round_trip_in_order(sq):
    items = [None, 0, -1.5, 'é', b'\0' * 70_000, (1, [2, {3: 4}]), {1, 2}, 2**100, list(range(3000))]
    for item in items:
        sq.put(item)
    assert not sq.empty()
    assert [sq.get() for _ in items] == items
    assert sq.empty()


@pytest.mark.parametrize('call', [
    lambda q: q.put(), lambda q: q.put(1, True), lambda q: q.put(1, block=True),
    lambda q: q.get(True), lambda q: q.get(timeout=1)])
def test_signatures_are_the_stdlibs(sq, call):
    with pytest.raises(TypeError):
        call(sq)


def test_an_unpicklable_item_raises_to_the_caller_and_the_queue_goes_on(sq):
    with pytest.raises(TypeError, match='refuses to be pickled'):
        sq.put(Unpicklable())
    sq.put('next')
    assert sq.get() == 'next' and sq.empty()


@pytest.mark.parametrize('obj', [(1, 'two'), b'x' * (1 << 20), [Unpicklable] * 3], ids=['small', 'large', 'classes'])
def test_put_writes_forkingpickler_dumps_and_get_reads_send_bytes(sq, obj):
    sq.put(obj)
    assert sq._reader.recv_bytes() == bytes(ForkingPickler.dumps(obj))
    sq._writer.send_bytes(ForkingPickler.dumps(obj))
    assert sq.get() == obj


def test_pickling_outside_spawning_is_refused(sq):
    with pytest.raises(RuntimeError, match='through inheritance'):
        pickle.dumps(sq)


GIL_PROGRAM = textwrap.dedent("""
    import multiprocessing, threading, time
    sq = multiprocessing.SimpleQueue()
    got = []
    reader = threading.Thread(target=lambda: got.append(sq.get()), daemon=True)
    reader.start()
    spins, end = 0, time.monotonic() + 0.3
    while time.monotonic() < end:
        spins += 1
    assert spins > 1000 and reader.is_alive(), spins
    sq.put('wake')
    reader.join(10)
    print(got)
""")


def test_a_blocked_get_releases_the_gil():
    # In a child process: a get() that kept the GIL would hang it, and the
    # timeout turns that into a failure.
    done = subprocess.run([sys.executable, '-c', GIL_PROGRAM], capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert (done.returncode, done.stdout) == (0, "['wake']\n"), done.stderr


def test_threads_share_it_without_locks(sq):
    per_thread, nthreads = 2000, 4
    got = []

    def produce(tag):
        for i in range(per_thread):
            sq.put((tag, i))

    def consume():
        for _ in range(per_thread):
            got.append(sq.get())

    threads = [threading.Thread(target=produce, args=(t,)) for t in range(nthreads)]
    threads += [threading.Thread(target=consume) for _ in range(nthreads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
        assert not t.is_alive()
    assert sorted(got) == [(t, i) for t in range(nthreads) for i in range(per_thread)]


class StateItsOwnWay(queues.SimpleQueue):
    """Sets the stdlib's attributes in __setstate__ and nothing else, as
    loky's SimpleQueue does."""

    def __setstate__(self, state):
        (self._reader, self._writer, self._rlock, self._wlock) = state


def test_a_subclass_that_sets_only_the_ends_still_works():
    q = StateItsOwnWay(ctx=multiprocessing.get_context())
    copy = StateItsOwnWay.__new__(StateItsOwnWay)
    copy.__setstate__((q._reader, q._writer, q._rlock, q._wlock))
    copy.put('from the copy')
    assert q.get() == 'from the copy'
    q.put('to the copy')
    assert copy.get() == 'to the copy'
    q.close()


def test_a_writer_gone_reads_as_end_of_file():
    q = multiprocessing.SimpleQueue()
    q._writer.close()
    with pytest.raises(EOFError):
        q.get()
    q.close()


def test_a_temporary_queue_stays_open_for_its_call():
    # SimpleQueue().put(obj) evaluates the bound put, then drops the queue:
    # the call still sees open ends, as on stock, whose bound method holds
    # the queue.
    def local():
        pass

    with pytest.raises(AttributeError, match="Can't pickle local object"):
        multiprocessing.SimpleQueue().put(local)
    assert multiprocessing.SimpleQueue().put(1) is None
    assert multiprocessing.Queue().put(1) is None
