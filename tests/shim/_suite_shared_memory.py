"""SharedMemory and ShareableList shared with children, written once and
instantiated per start method by test_shared_memory_{fork,spawn,forkserver}.py
(each sets START_METHOD)."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

import multiprocessing
from multiprocessing import resource_tracker
from multiprocessing import shared_memory

from _helpers_shared import STOCK_PYTHON, TIMEOUT, run_program, shm_exists, unique_prefix
from _start_method import StartMethodSuite

try:
    import numpy
except ImportError:  # pragma: no cover - numpy is a dependency of the tests
    numpy = None


# -- targets run in children --

def write_by_name(name, data):
    seg = shared_memory.SharedMemory(name)
    seg.buf[:len(data)] = data
    seg.close()


def write_object(seg, data):
    seg.buf[:len(data)] = data
    seg.close()


def add_one_with_numpy(name, shape):
    seg = shared_memory.SharedMemory(name)
    arr = numpy.ndarray(shape, dtype=numpy.float64, buffer=seg.buf)
    arr += 1.0
    del arr
    seg.close()


def make_numpy_segment(conn):
    seg = shared_memory.SharedMemory(create=True, size=8 * 100)
    arr = numpy.ndarray((10, 10), dtype=numpy.int64, buffer=seg.buf)
    arr[:] = numpy.arange(100).reshape(10, 10) * 3
    del arr
    conn.send(seg.name)
    seg.close()


def fill_slot(name, index, count):
    seg = shared_memory.SharedMemory(name)
    for _ in range(count):
        seg.buf[index] = (seg.buf[index] + 1) % 256
    seg.close()


def edit_list(sl):
    sl[0] = sl[0] * 2
    sl[1] = sl[1].upper()
    sl[2] = None
    sl[3] = not sl[3]
    sl.shm.close()


def edit_list_by_name(name):
    edit_list(shared_memory.ShareableList(name=name))


def hold_segments(conn, prefix):
    held = [shared_memory.SharedMemory(prefix + str(i), create=True, size=4096) for i in range(3)]
    held.append(shared_memory.ShareableList([1, 'two', 3.0], name=prefix + 'list'))
    conn.send('ready')
    signal.pause()


STOCK_EDIT = '''
import sys
from multiprocessing import resource_tracker, shared_memory
sl = shared_memory.ShareableList(name=sys.argv[1])
resource_tracker.unregister(sl.shm._name, 'shared_memory')
sl[4] = 'stock was here'
sl.shm.close()
'''


def edit_then_ask_stock(sl):
    sl[0] = -1
    proc = subprocess.run([STOCK_PYTHON, '-c', STOCK_EDIT, sl.shm.name], capture_output=True,
                          timeout=TIMEOUT)
    sys.exit(proc.returncode)


class SharedMemorySuite(StartMethodSuite):

    def _before_test(self):
        # Children must share this program's tracker: a fork child started
        # before any process used the tracker would start its own (as with
        # the stdlib), which removes what that child registered when it ends.
        resource_tracker.ensure_running()
        self.prefix = unique_prefix()

    def _after_test(self):
        left = [n for n in os.listdir('/dev/shm') if n.startswith(self.prefix)]
        for n in left:
            os.unlink('/dev/shm/' + n)
        assert not left, 'segments left behind: %s' % left

    def new_segment(self, suffix, size):
        return shared_memory.SharedMemory(self.prefix + suffix, create=True, size=size)

    def test_child_attaches_by_name(self):
        seg = self.new_segment('byname', 512)
        try:
            assert self.run_child(write_by_name, seg.name, b'howdy') == 0
            assert bytes(seg.buf[:5]) == b'howdy'
            assert self.run_child(write_object, seg, b'HELLO') == 0
            assert bytes(seg.buf[:5]) == b'HELLO'
        finally:
            seg.close()
            seg.unlink()

    def test_children_write_their_own_bytes(self):
        seg = self.new_segment('slots', 8)
        try:
            procs = [self.ctx.Process(target=fill_slot, args=(seg.name, i, 300)) for i in range(4)]
            for p in procs:
                p.start()
            for p in procs:
                p.join(TIMEOUT)
                assert p.exitcode == 0
            assert list(seg.buf[:4]) == [300 % 256] * 4
            assert list(seg.buf[4:]) == [0] * 4
        finally:
            seg.close()
            seg.unlink()

    @pytest.mark.skipif(numpy is None, reason='numpy is not installed')
    def test_numpy_array_over_segment(self):
        shape = (64, 32)
        seg = self.new_segment('numpy', 8 * 64 * 32)
        try:
            arr = numpy.ndarray(shape, dtype=numpy.float64, buffer=seg.buf)
            arr[:] = numpy.arange(64 * 32).reshape(shape)
            assert self.run_child(add_one_with_numpy, seg.name, shape) == 0
            assert self.run_child(add_one_with_numpy, seg.name, shape) == 0
            assert numpy.array_equal(arr, numpy.arange(64 * 32).reshape(shape) + 2.0)
            del arr
        finally:
            seg.close()
            seg.unlink()

    @pytest.mark.skipif(numpy is None, reason='numpy is not installed')
    def test_segment_made_by_child_outlives_it(self):
        reader, writer = self.ctx.Pipe(duplex=False)
        p = self.ctx.Process(target=make_numpy_segment, args=(writer,))
        p.start()
        writer.close()
        assert reader.poll(TIMEOUT)
        name = reader.recv()
        p.join(TIMEOUT)
        assert p.exitcode == 0
        seg = shared_memory.SharedMemory(name)
        try:
            arr = numpy.ndarray((10, 10), dtype=numpy.int64, buffer=seg.buf)
            assert numpy.array_equal(arr, numpy.arange(100).reshape(10, 10) * 3)
            del arr
        finally:
            seg.close()
            seg.unlink()

    def test_shareable_list_in_child(self):
        sl = shared_memory.ShareableList([21, 'abc', 1.5, True, 'x' * 14], name=self.prefix + 'sl')
        try:
            assert self.run_child(edit_list, sl) == 0
            assert list(sl) == [42, 'ABC', None, False, 'x' * 14]
            assert self.run_child(edit_list_by_name, sl.shm.name) == 0
            assert list(sl) == [84, 'ABC', None, True, 'x' * 14]
        finally:
            sl.shm.close()
            sl.shm.unlink()

    @pytest.mark.skipif(not os.path.exists(STOCK_PYTHON), reason='stock python3 is not installed')
    def test_shareable_list_with_stock_python_peer(self):
        sl = shared_memory.ShareableList([5, 'b', None, 2.0, 'x' * 15], name=self.prefix + 'peer')
        try:
            assert self.run_child(edit_then_ask_stock, sl) == 0
            assert list(sl) == [-1, 'b', None, 2.0, 'stock was here']
        finally:
            sl.shm.close()
            sl.shm.unlink()

    def test_child_killed_holding_segments(self):
        # While the program runs, what a killed child registered is still
        # there (others may use it); the tracker removes it when the program
        # ends, tested below.
        reader, writer = self.ctx.Pipe(duplex=False)
        p = self.ctx.Process(target=hold_segments, args=(writer, self.prefix))
        p.start()
        assert reader.poll(TIMEOUT) and reader.recv() == 'ready'
        p.kill()
        p.join(TIMEOUT)
        assert p.exitcode == -signal.SIGKILL
        sl = shared_memory.ShareableList(name=self.prefix + 'list')
        assert list(sl) == [1, 'two', 3.0]
        sl.shm.close()
        sl.shm.unlink()
        for i in range(3):
            seg = shared_memory.SharedMemory(self.prefix + str(i))
            seg.close()
            seg.unlink()

    def test_program_with_killed_child_leaves_nothing(self):
        proc = run_program('''
            import multiprocessing, signal, sys
            sys.path.insert(0, sys.argv[3])
            import _suite_shared_memory as suite

            if __name__ == '__main__':
                ctx = multiprocessing.get_context(sys.argv[1])
                r, w = ctx.Pipe(duplex=False)
                p = ctx.Process(target=suite.hold_segments, args=(w, sys.argv[2]))
                p.start()
                assert r.recv() == 'ready'
                p.kill()
                p.join(30)
                print(p.exitcode)
        ''', args=[self.START_METHOD, self.prefix, os.path.dirname(os.path.abspath(__file__))])
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == str(-signal.SIGKILL)
        assert 'There appear to be 4 leaked shared_memory objects' in proc.stderr
        # The fixture checks that nothing with the prefix is left.
