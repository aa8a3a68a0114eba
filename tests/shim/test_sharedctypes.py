"""sharedctypes in one process: the API, reprs, lock variants and pickling
rules, checked against stock python3 where the output can be compared."""

import ctypes
import os
import pickle
import subprocess

import pytest

import multiprocessing
from multiprocessing import reduction
from multiprocessing import sharedctypes
from multiprocessing.sharedctypes import Array, RawArray, RawValue, Value, copy, synchronized

from _helpers_shared import MPHOST, STOCK_PYTHON, TIMEOUT, arena_entries


class Point(ctypes.Structure):
    _fields_ = [('x', ctypes.c_int), ('y', ctypes.c_double), ('z', ctypes.c_longlong)]


# Printed by both interpreters; every line must match.
PARITY_PROGRAM = r'''
import ctypes, multiprocessing, pickle
from multiprocessing import sharedctypes, reduction

class Point(ctypes.Structure):
    _fields_ = [('x', ctypes.c_int), ('y', ctypes.c_double)]

def show(label, f):
    try:
        print(label, repr(f()))
    except BaseException as e:
        print(label, 'raises', type(e).__name__, e)

ctx = multiprocessing.get_context('spawn')
for code in 'cubBhHiIlLqQfd':
    show('raw ' + code, lambda: sharedctypes.RawValue(code).value)
show('value repr', lambda: repr(ctx.Value('i', 5)))
show('value type', lambda: type(ctx.Value('d', 1.5)).__name__)
show('array type', lambda: type(ctx.Array('i', 3)).__name__)
show('string type', lambda: type(ctx.Array('c', 3)).__name__)
show('struct type', lambda: type(ctx.Value(Point, 1, 2.0)).__name__)
show('struct repr', lambda: repr(ctx.Value(Point, 1, 2.0)).split(' object at ')[0])
show('raw value', lambda: repr(ctx.Value('i', 5, lock=False)))
show('raw array', lambda: ctx.RawArray('h', [1, 2, 3])[:])
show('array len', lambda: len(ctx.Array('d', 7)))
show('array slice', lambda: ctx.Array('i', range(10))[2:8:2])
show('wchar', lambda: ctx.Array('u', 'héllo').value)
show('string value', lambda: ctx.Array('c', b'ab\x00cd').value)
show('string raw', lambda: ctx.Array('c', b'ab\x00cd').raw)
show('bad lock', lambda: ctx.Value('i', lock=42))
show('bad typecode', lambda: sharedctypes.RawValue('x'))
show('too many init', lambda: sharedctypes.RawArray('i', 'abc'))
show('resynchronize', lambda: sharedctypes.synchronized(ctx.Value('i')))
show('pickle value', lambda: reduction.ForkingPickler.dumps(ctx.Value('i')))
show('pickle raw', lambda: reduction.ForkingPickler.dumps(ctx.RawValue('i')))
show('pickle array', lambda: reduction.ForkingPickler.dumps(ctx.Array('i', 2)))
show('plain pickle raw', lambda: pickle.loads(pickle.dumps(sharedctypes.RawValue('i', 7))).value)
show('copy', lambda: sharedctypes.copy(Point(3, 4.5)).y)
show('negative array', lambda: sharedctypes.RawArray('i', -1))
show('all', lambda: sharedctypes.__all__)
'''


@pytest.mark.skipif(not os.path.exists(STOCK_PYTHON), reason='stock python3 is not installed')
def test_observable_behaviour_matches_stock(tmp_path):
    script = tmp_path / 'parity.py'
    script.write_text(PARITY_PROGRAM)
    outputs = []
    for exe in (STOCK_PYTHON, MPHOST):
        proc = subprocess.run([exe, str(script)], capture_output=True, text=True, timeout=TIMEOUT)
        assert proc.returncode == 0, proc.stderr
        outputs.append(proc.stdout.splitlines())
    stock, mine = outputs
    assert len(stock) == len(mine) > 30
    for a, b in zip(stock, mine):
        assert a == b


class TestValue:

    def test_lock_variants(self):
        raw = Value('i', 3, lock=False)
        assert isinstance(raw, ctypes.c_int) and raw.value == 3
        wrapped = Value('i', 3)
        assert isinstance(wrapped, sharedctypes.Synchronized)
        assert type(wrapped.get_lock()).__name__ == 'RLock'
        assert isinstance(wrapped.get_obj(), ctypes.c_int)
        lock = multiprocessing.Lock()
        given = Value('i', 3, lock=lock)
        assert given.get_lock() is lock and given.acquire == lock.acquire
        with given:
            assert not lock.acquire(False)
        assert lock.acquire(False)
        lock.release()
        with pytest.raises(AttributeError, match="has no method 'acquire'"):
            Value('i', lock='not a lock')

    def test_rlock_allows_value_under_get_lock(self):
        v = Value('q', 0)
        with v.get_lock():
            v.value += 5
        assert v.value == 5

    def test_context_variants(self):
        ctx = multiprocessing.get_context('forkserver')
        v = ctx.Value('d', 2.5)
        a = ctx.Array('i', [1, 2])
        assert v.value == 2.5 and a[:] == [1, 2]
        assert ctx.RawValue('i', 4).value == 4 and ctx.RawArray('b', 3)[:] == [0, 0, 0]

    def test_structure(self):
        p = Value(Point, 1, 2.0, 3)
        assert type(p).__name__ == 'SynchronizedPoint'
        assert (p.x, p.y, p.z) == (1, 2.0, 3)
        p.x = 10
        assert p.get_obj().x == 10
        # One wrapper class per structure type.
        assert type(Value(Point)) is type(p)

    def test_structure_fields_that_are_not_identifiers(self):
        class Odd(ctypes.Structure):
            _fields_ = [('a b', ctypes.c_int), ('class', ctypes.c_int), ('x', ctypes.c_int)]
        v = Value(Odd, 1, 2, 3)
        assert (getattr(v, 'a b'), getattr(v, 'class'), v.x) == (1, 2, 3)
        setattr(v, 'a b', 9)
        setattr(v, 'class', 8)
        assert (v.get_obj().x, getattr(v.get_obj(), 'a b'), getattr(v.get_obj(), 'class')) == (3, 9, 8)

    def test_attribute_is_read_and_written_between_acquire_and_release(self):
        class RecordingLock:
            def __init__(self):
                self.events = []

            def acquire(self, *args):
                self.events.append('acquire')
                return True

            def release(self):
                self.events.append('release')

        lock = RecordingLock()
        v = Value('i', 1, lock=lock)
        assert v.value == 1
        assert lock.events == ['acquire', 'release']
        v.value = 5
        assert v.get_obj().value == 5
        assert lock.events == ['acquire', 'release'] * 2
        # The lock is given back when the access itself fails.
        with pytest.raises(TypeError):
            v.value = 'not an int'
        assert lock.events == ['acquire', 'release'] * 3
        assert v.get_obj().value == 5

    def test_a_failing_release_is_raised_over_the_accesss_error(self):
        class BrokenRelease:
            def acquire(self, *args):
                return True

            def release(self):
                raise RuntimeError('release failed')

        v = Value('i', 1, lock=BrokenRelease())
        with pytest.raises(RuntimeError, match='release failed') as info:
            v.value = 'not an int'
        assert isinstance(info.value.__context__, TypeError)
        with pytest.raises(RuntimeError, match='release failed'):
            v.value

    def test_attribute_waits_for_a_lock_held_elsewhere_and_reports_release_errors(self):
        import threading
        import time
        v = Value('q', 7)
        lock = v.get_lock()
        held, done = threading.Event(), threading.Event()

        def hold():
            with lock:
                held.set()
                time.sleep(0.2)
            done.set()

        t = threading.Thread(target=hold)
        t.start()
        assert held.wait(10)
        start = time.monotonic()
        assert v.value == 7
        # The read waited for the other thread's release.
        assert done.is_set() and time.monotonic() - start >= 0.1
        t.join()
        # A release of the RLock by a thread that does not hold it raises as
        # release() itself does, from the accessor too.
        v.acquire = lambda: True
        with pytest.raises(AssertionError):
            v.value
        with pytest.raises(AssertionError):
            v.value = 3
        assert v.get_obj().value == 3

    def test_synchronized_attributes_are_data_descriptors(self):
        v = Value('i', 1)
        prop = sharedctypes.Synchronized.value
        assert prop.__get__(None, sharedctypes.Synchronized) is prop
        # An instance attribute of the same name does not hide it.
        v.__dict__['value'] = 'shadow'
        assert v.value == 1
        with pytest.raises(AttributeError, match="property 'value' of 'Synchronized' object has no deleter"):
            del v.value
        # The lock is free afterwards: another acquire does not block.
        assert v.get_lock().acquire(timeout=1)
        v.get_lock().release()

    def test_copy_is_independent(self):
        foo = Point(2, 5.0, 2 ** 33)
        bar = copy(foo)
        foo.x = foo.y = foo.z = 0
        assert (bar.x, bar.y, bar.z) == (2, 5.0, 2 ** 33)

    def test_reused_blocks_are_zeroed(self):
        for _ in range(3):
            arr = RawArray('q', 64)
            assert arr[:] == [0] * 64
            arr[:] = range(1, 65)
            del arr
            v = RawValue('q')
            assert v.value == 0
            del v


class TestArray:

    def test_synchronized_array(self):
        arr = Array('i', range(10))
        assert len(arr) == 10 and arr[3] == 3 and arr[-1] == 9
        arr[3] = 30
        arr[0:2] = [7, 8]
        assert arr[:4] == [7, 8, 2, 30]
        assert arr.get_obj()[:4] == [7, 8, 2, 30]
        assert repr(arr).startswith('<SynchronizedArray wrapper for <multiprocessing.sharedctypes.c_int_Array_10 object at')
        with pytest.raises(IndexError):
            arr[10]

    def test_string(self):
        s = Array('c', 10)
        assert isinstance(s, sharedctypes.SynchronizedString)
        s.value = b'hello'
        assert s.value == b'hello' and s.raw == b'hello\x00\x00\x00\x00\x00'
        s.raw = b'0123456789'
        assert s.value == b'0123456789' and s[3:6] == b'345'
        with pytest.raises(ValueError):
            s.value = b'x' * 11

    def test_raw_array_from_sequence_and_size(self):
        assert RawArray('d', [1.5, 2.5])[:] == [1.5, 2.5]
        assert RawArray(ctypes.c_uint8, 4)[:] == [0, 0, 0, 0]
        points = RawArray(Point, [(1, 1.0, 1), (2, 2.0, 2)])
        assert [p.x for p in points] == [1, 2]

    def test_numpy_view(self):
        np = pytest.importorskip('numpy')
        arr = RawArray('d', 100)
        view = np.frombuffer(arr, dtype=np.float64)
        view[:] = np.arange(100)
        assert arr[99] == 99.0
        sync = Array('i', 10)
        np.frombuffer(sync.get_obj(), dtype=np.int32)[:] = 4
        assert sync[:] == [4] * 10


class FakePopen:
    # What a forkserver Popen does while pickling a process object: a
    # descriptor rides along and comes back as a duplicate.
    def duplicate_for_child(self, fd):
        return os.dup(fd)

    class DupFd:
        def __init__(self, fd):
            self.fd = fd

        def detach(self):
            return self.fd


class TestPickling:

    def test_only_while_spawning(self):
        for obj in (Value('i'), Array('d', 2), RawValue('i'), RawArray('i', 2), Value(Point)):
            with pytest.raises(RuntimeError, match='should only be shared between processes through inheritance'):
                reduction.ForkingPickler.dumps(obj)

    def test_not_through_a_queue(self):
        q = multiprocessing.get_context('spawn').SimpleQueue()
        try:
            with pytest.raises(RuntimeError, match='through inheritance'):
                q.put(Value('i', 1))
        finally:
            q.close()

    def test_synchronized_reduces_to_obj_and_lock(self):
        v = multiprocessing.get_context('spawn').Value('i', 9)
        from multiprocessing.context import set_spawning_popen
        set_spawning_popen(FakePopen())
        try:
            data = reduction.ForkingPickler.dumps(v)
        finally:
            set_spawning_popen(None)
        clone = pickle.loads(data)
        assert type(clone) is sharedctypes.Synchronized and clone.value == 9
        clone.value = 10
        assert v.value == 10
        # Same arena in the same process: mapped once, duplicate closed.
        assert clone.get_obj()._wrapper._state[0][0] is v.get_obj()._wrapper._state[0][0]


def test_nothing_named_in_dev_shm():
    before = arena_entries()
    keep = [Array('d', 100000) for _ in range(5)] + [RawValue('i') for _ in range(100)]
    assert arena_entries() - before == set()
    del keep
