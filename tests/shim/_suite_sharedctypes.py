"""Value, Array and the raw variants shared with children, written once and
instantiated per start method by test_sharedctypes_{fork,spawn,forkserver}.py
(each sets START_METHOD)."""

import ctypes
import os
import signal

import pytest

import multiprocessing
from multiprocessing import heap
from multiprocessing import sharedctypes

from _helpers_shared import ARENA_LINK, TIMEOUT, arena_entries, run_program
from _start_method import StartMethodSuite


class Point(ctypes.Structure):
    _fields_ = [('x', ctypes.c_int), ('y', ctypes.c_double), ('z', ctypes.c_longlong)]


# -- targets run in children --

def double_all(x, y, z, point, arr, string, raw_value, raw_array):
    x.value *= 2
    y.value *= 2
    z.value *= 2
    point.x *= 2
    point.y *= 2
    string.value *= 2
    for i in range(len(arr)):
        arr[i] *= 2
    raw_value.value += 1
    raw_array[:] = [v * 10 for v in raw_array[:]]


def increment_locked(counter, times):
    for _ in range(times):
        with counter.get_lock():
            counter.value += 1


def increment_raw_under_lock(counter, times):
    # With a plain Lock, .value would try to take it again: use the object.
    for _ in range(times):
        with counter.get_lock():
            counter.get_obj().value += 1


def use_slices(arr, chars):
    arr[2:5] = [20, 30, 40]
    assert arr[::2] == [arr[0], arr[2], arr[4], arr[6]]
    chars.raw = b'raw bytes\x00!'
    assert chars[:3] == b'raw'


def report_arenas(values, conn):
    arenas = {id(v.get_obj()._wrapper._state[0][0]) for v in values}
    fds = 0
    for fd in os.listdir('/proc/self/fd'):
        try:
            target = os.readlink('/proc/self/fd/' + fd)
        except OSError:
            continue
        if target.startswith(ARENA_LINK):
            fds += 1
    conn.send((len(arenas), fds, sum(v.value for v in values)))


def allocate_in_child(parent_values, conn):
    # Fresh allocations in the child never overlap what the parent handed it.
    mine = [sharedctypes.RawValue('q', -i) for i in range(200)]
    conn.send(([v.value for v in parent_values], [v.value for v in mine]))


def hold_and_wait(values, conn):
    more = [sharedctypes.RawArray('d', 10000) for _ in range(5)]
    conn.send(len(more) + len(values))
    signal.pause()


def buffer_wrapper_child(wrapper, value):
    wrapper.create_memoryview().cast('i')[0] = value


class SharedCTypesSuite(StartMethodSuite):

    def _after_test(self):
        assert not arena_entries()

    @pytest.mark.parametrize('lock', [False, True])
    def test_child_doubles_values(self, lock):
        x = self.ctx.Value('i', 7, lock=lock)
        y = self.ctx.Value(ctypes.c_double, 1.0 / 3.0, lock=lock)
        z = self.ctx.Value(ctypes.c_longlong, 2 ** 33, lock=lock)
        point = self.ctx.Value(Point, 3, 2, 2 ** 33, lock=lock)
        arr = self.ctx.Array('d', list(range(10)), lock=lock)
        string = self.ctx.Array('c', 20, lock=lock)
        string.value = b'hello'
        raw_value = self.ctx.RawValue('h', 41)
        raw_array = self.ctx.RawArray('i', [1, 2, 3])
        assert self.run_child(double_all, x, y, z, point, arr, string, raw_value, raw_array) == 0
        assert x.value == 14
        assert y.value == pytest.approx(2.0 / 3.0)
        assert z.value == 2 ** 34
        assert point.x == 6 and point.y == pytest.approx(4.0) and point.z == 2 ** 33
        assert list(arr[:]) == [i * 2.0 for i in range(10)]
        assert string.value == b'hellohello'
        assert raw_value.value == 42
        assert raw_array[:] == [10, 20, 30]

    def test_locked_increments_from_several_children(self):
        counter = self.ctx.Value('i', 0)
        procs = [self.ctx.Process(target=increment_locked, args=(counter, 300)) for _ in range(4)]
        for p in procs:
            p.start()
        increment_locked(counter, 300)
        for p in procs:
            p.join(TIMEOUT)
            assert p.exitcode == 0
        assert counter.value == 1500

    def test_explicit_lock_is_shared(self):
        lock = self.ctx.Lock()
        counter = self.ctx.Value('q', 0, lock=lock)
        assert counter.get_lock() is lock
        procs = [self.ctx.Process(target=increment_raw_under_lock, args=(counter, 200))
                 for _ in range(3)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(TIMEOUT)
            assert p.exitcode == 0
        assert counter.value == 600

    def test_slices_and_raw_in_child(self):
        arr = self.ctx.Array('i', range(8))
        chars = self.ctx.Array('c', 12)
        assert self.run_child(use_slices, arr, chars) == 0
        assert arr[:] == [0, 1, 20, 30, 40, 5, 6, 7]
        assert chars.raw == b'raw bytes\x00!\x00' and chars.value == b'raw bytes'

    def test_child_maps_each_arena_once(self):
        values = [self.ctx.Value('i', i, lock=False) for i in range(50)]
        expected_arenas = len({id(v._wrapper._state[0][0]) for v in values})
        # Kept alive until the child has rebuilt them (their locks go with them).
        wrapped = [sharedctypes.synchronized(v, ctx=self.ctx) for v in values]
        reader, writer = self.ctx.Pipe(duplex=False)
        p = self.ctx.Process(target=report_arenas, args=(wrapped, writer))
        p.start()
        writer.close()
        assert reader.poll(TIMEOUT)
        arenas, fds, total = reader.recv()
        p.join(TIMEOUT)
        assert p.exitcode == 0
        assert (arenas, total) == (expected_arenas, sum(range(50)))
        if self.START_METHOD != 'fork':
            # Per arena, the descriptor received (the native mapping keeps
            # no duplicate); none left open for the objects that shared an
            # arena.
            assert fds == expected_arenas, (fds, expected_arenas)

    def test_child_allocations_are_its_own(self):
        values = [self.ctx.RawValue('q', 1000 + i) for i in range(100)]
        reader, writer = self.ctx.Pipe(duplex=False)
        p = self.ctx.Process(target=allocate_in_child, args=(values, writer))
        p.start()
        writer.close()
        assert reader.poll(TIMEOUT)
        seen, made = reader.recv()
        p.join(TIMEOUT)
        assert p.exitcode == 0
        assert seen == [1000 + i for i in range(100)]
        assert made == [-i for i in range(200)]
        assert [v.value for v in values] == seen

    def test_buffer_wrapper_in_child(self):
        wrapper = heap.BufferWrapper(16)
        view = wrapper.create_memoryview().cast('i')
        view[0] = 0
        assert self.run_child(buffer_wrapper_child, wrapper, 1234) == 0
        assert view[0] == 1234

    def test_child_killed_holding_blocks_leaves_no_segment(self):
        values = [self.ctx.RawArray('d', 5000) for _ in range(3)]
        reader, writer = self.ctx.Pipe(duplex=False)
        p = self.ctx.Process(target=hold_and_wait, args=(values, writer))
        p.start()
        assert reader.poll(TIMEOUT) and reader.recv() == 8
        p.kill()
        p.join(TIMEOUT)
        assert p.exitcode == -signal.SIGKILL
        assert not arena_entries()
        values[0][0] = 1.5
        assert values[0][0] == 1.5

    def test_program_leaves_nothing_behind(self):
        proc = run_program('''
            import multiprocessing, sys
            if __name__ == '__main__':
                ctx = multiprocessing.get_context(sys.argv[1])
                v = ctx.Value('d', 1.5)
                a = ctx.Array('i', 100000)
                p = ctx.Process(target=print, args=(v.value, len(a)))
                p.start()
                p.join(30)
        ''', args=[self.START_METHOD])
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == '1.5 100000'
        assert proc.stderr == ''
        assert not arena_entries()
