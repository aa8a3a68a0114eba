"""shared_memory: SharedMemory and ShareableList, in one process and with
stock python3 on the other side."""

import os
import pickle
import stat
import subprocess
import textwrap
import unittest.mock

import pytest

from multiprocessing import resource_tracker
from multiprocessing import shared_memory

from _helpers_shared import STOCK_PYTHON, TIMEOUT, run_program, shm_exists, unique_prefix

needs_stock = pytest.mark.skipif(not os.path.exists(STOCK_PYTHON), reason='stock python3 is not installed')


@pytest.fixture
def prefix():
    """A name prefix for the test; no segment with it may be left over."""
    p = unique_prefix()
    yield p
    left = [n for n in os.listdir('/dev/shm') if n.startswith(p)]
    for n in left:
        os.unlink('/dev/shm/' + n)
    assert not left, 'segments left behind: %s' % left


@pytest.fixture
def segments():
    """SharedMemory objects to close and unlink after the test."""
    made = []
    yield made
    for shm in made:
        shm.close()
        if shm_exists(shm.name):
            shm.unlink()


class TestSharedMemory:

    def test_basics(self, prefix):
        name = prefix + 'basics'
        sms = shared_memory.SharedMemory(name, create=True, size=512)
        try:
            assert sms.name == name and sms._name == '/' + name
            assert sms.size == 512 and len(sms.buf) == 512
            assert repr(sms) == "SharedMemory(%r, size=512)" % name
            sms.buf[0] = 42
            also = shared_memory.SharedMemory(name)
            assert also.buf[0] == 42 and also.size == 512
            also.buf[1:4] = b'abc'
            assert bytes(sms.buf[1:4]) == b'abc'
            also.close()
            # A size given to attach is ignored.
            same = shared_memory.SharedMemory(name, size=20 * sms.size)
            assert same.size == sms.size
            same.close()
            with pytest.raises(FileExistsError):
                shared_memory.SharedMemory(name, create=True, size=512)

            class OptionalAttach(shared_memory.SharedMemory):
                _flags = os.O_CREAT | os.O_RDWR
            ok = OptionalAttach(name)
            assert ok.size == sms.size
            ok.close()
        finally:
            sms.close()
            sms.unlink()
        assert not shm_exists(name)
        with pytest.raises(FileNotFoundError):
            sms.unlink()
        resource_tracker.register(sms._name, 'shared_memory')  # balance the failed unlink
        resource_tracker.unregister(sms._name, 'shared_memory')

    def test_argument_errors(self, prefix):
        with pytest.raises(ValueError, match="'size' must be a positive integer"):
            shared_memory.SharedMemory(create=True, size=-2)
        with pytest.raises(ValueError, match="'size' must be a positive number different from zero"):
            shared_memory.SharedMemory(create=True, size=0)
        with pytest.raises(ValueError, match="different from zero"):
            shared_memory.SharedMemory(create=True)
        with pytest.raises(ValueError, match="'name' can only be None if create=True"):
            shared_memory.SharedMemory(create=False)
        with pytest.raises(FileNotFoundError):
            shared_memory.SharedMemory(prefix + 'not_there')
        with pytest.raises(TypeError):
            shared_memory.SharedMemory(prefix + 'x', create=True, size='12')

    def test_auto_names(self, segments):
        name = shared_memory._make_filename()
        assert name.startswith('/psm_') and len(name) == 29  # 12 random bytes (the stdlib: 4)
        int(name[5:], 16)
        seg = shared_memory.SharedMemory(create=True, size=1)
        segments.append(seg)
        assert seg._name.startswith('/psm_') and seg.name == seg._name[1:]
        assert shm_exists(seg.name)

    def test_auto_name_collision_retries(self, prefix, segments):
        names = ['/' + prefix + 'one', '/' + prefix + 'two']
        with unittest.mock.patch('multiprocessing.shared_memory._make_filename') as make:
            make.side_effect = names
            first = shared_memory.SharedMemory(create=True, size=1)
            segments.append(first)
            make.side_effect = names
            second = shared_memory.SharedMemory(create=True, size=1)
            segments.append(second)
        assert first._name == names[0] and second._name == names[1]

    def test_owner_only(self, segments):
        seg = shared_memory.SharedMemory(create=True, size=10)
        segments.append(seg)
        assert stat.S_IMODE(os.stat('/dev/shm/' + seg.name).st_mode) & 0o077 == 0

    @pytest.mark.parametrize('size', [1, 10, 4095, 4096, 4097, 1 << 20])
    def test_sizes_are_exact(self, size, segments):
        seg = shared_memory.SharedMemory(create=True, size=size)
        segments.append(seg)
        assert seg.size == size and len(seg.buf) == size
        assert os.stat('/dev/shm/' + seg.name).st_size == size

    def test_leading_slash_is_doubled_like_the_stdlib(self, prefix, segments):
        seg = shared_memory.SharedMemory('/' + prefix + 'slash', create=True, size=8)
        segments.append(seg)
        assert seg._name == '//' + prefix + 'slash' and seg.name == '/' + prefix + 'slash'
        assert shm_exists(prefix + 'slash')

    def test_pickle_by_name(self, segments):
        for proto in range(pickle.HIGHEST_PROTOCOL + 1):
            seg = shared_memory.SharedMemory(create=True, size=512)
            segments.append(seg)
            seg.buf[:6] = b'pickle'
            data = pickle.dumps(seg, protocol=proto)
            assert len(data) < 200
            other = pickle.loads(data)
            assert isinstance(other, shared_memory.SharedMemory) and other.name == seg.name
            other.buf[:6] = b'oldval'
            assert bytes(seg.buf[:6]) == b'oldval'
            other.close()

    def test_pickle_of_removed_segment(self):
        seg = shared_memory.SharedMemory(create=True, size=512)
        data = pickle.dumps(seg)
        seg.close()
        seg.unlink()
        with pytest.raises(FileNotFoundError):
            pickle.loads(data)

    def test_close_releases_and_is_idempotent(self, segments):
        seg = shared_memory.SharedMemory(create=True, size=64)
        segments.append(seg)
        view = seg.buf
        seg.close()
        seg.close()
        assert seg.buf is None
        with pytest.raises(ValueError):
            view[0]
        # The segment itself is still there.
        again = shared_memory.SharedMemory(seg.name)
        assert again.size == 64
        again.close()

    def test_attach_failure_leaves_segment(self, prefix):
        # An empty segment (created without a size) cannot be mapped: the
        # attach fails, and the segment is not ours to remove.
        import _posixshmem
        fd = _posixshmem.shm_open('/' + prefix + 'empty', os.O_CREAT | os.O_RDWR, mode=0o600)
        os.close(fd)
        try:
            with pytest.raises(ValueError):
                shared_memory.SharedMemory(prefix + 'empty')
            assert shm_exists(prefix + 'empty')
        finally:
            _posixshmem.shm_unlink('/' + prefix + 'empty')


class TestShareableList:

    def test_basics(self, prefix):
        sl = shared_memory.ShareableList(['howdy', b'HoWdY', -273.154, 100, None, True, 42])
        try:
            assert sl.shm.name in str(sl) and str(list(sl)) in str(sl)
            with pytest.raises(IndexError):
                sl[7]
            with pytest.raises(IndexError):
                sl[7] = 2
            assert sl.format == '8s8sdqxxxxxx?xxxxxxxx?q'
            assert len(sl) == 7
            assert sl.index(100) == 3
            with pytest.raises(ValueError, match="'100' not in this container"):
                sl.index('100')
            assert sl[0] == 'howdy' and sl[-2] is True and sl[4] is None
            assert tuple(sl) == ('howdy', b'HoWdY', -273.154, 100, None, True, 42)
            sl[3] = 42
            sl[4] = 'some'
            assert sl[4] == 'some' and sl.format == '8s8sdq8sxxxxxxx?q'
            with pytest.raises(ValueError, match='exceeds available storage'):
                sl[4] = 'far too many'
            sl[0] = 'encodés'
            assert sl[0] == 'encodés' and sl[1] == b'HoWdY'
            with pytest.raises(ValueError, match='exceeds available storage'):
                sl[0] = 'encodées'
            with pytest.raises(ValueError, match='exceeds available storage'):
                sl[1] = b'123456789'
            assert sl.count(42) == 2 and sl.count(b'HoWdY') == 1 and sl.count(b'adios') == 0
            # A number where a string was, then a string again: the slot keeps its room.
            sl[1] = 3.5
            assert sl[1] == 3.5 and sl._get_packing_format(1) == 'd'
            sl[1] = b'12345678'
            assert sl[1] == b'12345678' and sl._get_packing_format(1) == '8s'
            sl[1] = b'HoWdY'

            copy = shared_memory.ShareableList(sl, name=prefix + 'copy')
            try:
                assert copy.shm.name == prefix + 'copy' and list(copy) == list(sl)
                assert copy.format == sl.format
                copy[-1] = 77
                assert sl[-1] == 42
            finally:
                copy.shm.close()
                copy.shm.unlink()

            tethered = shared_memory.ShareableList(name=sl.shm.name)
            tethered[-1] = 880
            assert sl[-1] == 880
            tethered.shm.close()
        finally:
            sl.shm.close()
            sl.shm.unlink()

    def test_empty(self):
        empty = shared_memory.ShareableList()
        try:
            assert len(empty) == 0 and empty.format == '' and empty.count('any') == 0
            with pytest.raises(ValueError):
                empty.index(None)
            assert list(empty) == []
        finally:
            empty.shm.close()
            empty.shm.unlink()

    def test_errors(self):
        with pytest.raises(KeyError):
            shared_memory.ShareableList([[1, 2]])
        sl = shared_memory.ShareableList([1, 'a'])
        try:
            with pytest.raises(KeyError):
                sl[0] = {1: 2}
            with pytest.raises(TypeError):
                sl[0:1]
            with pytest.raises(IndexError):
                sl[-3]
            assert list(sl) == [1, 'a']
        finally:
            sl.shm.close()
            sl.shm.unlink()

    def test_generators_and_multibyte_text(self):
        sl = shared_memory.ShareableList(x for x in ['ééééééé', 1])
        try:
            # Sized by the UTF-8 length (14 bytes), so nothing is cut off.
            assert sl[0] == 'ééééééé' and sl[1] == 1
            assert sl._get_packing_format(0) == '16s'
        finally:
            sl.shm.close()
            sl.shm.unlink()

    def test_pickling(self):
        for proto in range(pickle.HIGHEST_PROTOCOL + 1):
            sl = shared_memory.ShareableList(range(10))
            larger = shared_memory.ShareableList(range(400))
            try:
                data = pickle.dumps(sl, protocol=proto)
                assert len(data) == len(pickle.dumps(larger, protocol=proto))
                other = pickle.loads(data)
                assert isinstance(other, shared_memory.ShareableList) and other is not sl
                assert other[-1] == 9
                other[4] = 'changed'
                assert sl[4] == 'changed'
                other.shm.close()
            finally:
                for x in (sl, larger):
                    x.shm.close()
                    x.shm.unlink()

    def test_pickle_of_removed_list(self):
        sl = shared_memory.ShareableList(range(10))
        data = pickle.dumps(sl)
        sl.shm.close()
        sl.shm.unlink()
        with pytest.raises(FileNotFoundError):
            pickle.loads(data)

    def test_generic_alias(self):
        alias = shared_memory.ShareableList[int]
        assert alias.__origin__ is shared_memory.ShareableList


STOCK_PEER = '''
import sys
from multiprocessing import resource_tracker, shared_memory
sl = shared_memory.ShareableList(name=sys.argv[1])
# Attaching registered the segment with this interpreter's own tracker,
# which would remove it when this process ends: the segment is not ours.
resource_tracker.unregister(sl.shm._name, 'shared_memory')
print(repr(list(sl)), sl.format)
sl[0] = 'stock'
sl[1] = -(2 ** 40)
sl[2] = None
sl[3] = b'from stock'
sl[4] = False
sl[5] = 2.25
sl.shm.close()
'''


@needs_stock
class TestStockPython:
    """The stdlib's processes attach to mphost's segments and lists, and
    mphost's to the stdlib's."""

    def test_stock_attaches_to_mphost_list(self):
        sl = shared_memory.ShareableList(['hello', 7, 1.5, b'sixteen bytes!!!', True, None])
        try:
            proc = subprocess.run([STOCK_PYTHON, '-c', STOCK_PEER, sl.shm.name], capture_output=True,
                                  text=True, timeout=TIMEOUT)
            assert proc.returncode == 0, proc.stderr
            assert proc.stderr == ''
            assert proc.stdout.split('\n')[0] == \
                "['hello', 7, 1.5, b'sixteen bytes!!!', True, None] 8sqd24sxxxxxxx?xxxxxx?x"
            assert list(sl) == ['stock', -(2 ** 40), None, b'from stock', False, 2.25]
        finally:
            sl.shm.close()
            sl.shm.unlink()

    def test_mphost_attaches_to_stock_list(self):
        stock = subprocess.Popen([STOCK_PYTHON, '-c', textwrap.dedent('''
            import sys
            from multiprocessing import shared_memory
            sl = shared_memory.ShareableList(['stock made', 1, 2.0, None, b'bb', 'x' * 20])
            print(sl.shm.name, sl.format, flush=True)
            sys.stdin.readline()
            print(repr(list(sl)), flush=True)
            sl.shm.close()
            sl.shm.unlink()
        ''')], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            name, fmt = stock.stdout.readline().split()
            sl = shared_memory.ShareableList(name=name)
            assert sl.format == fmt
            assert list(sl) == ['stock made', 1, 2.0, None, b'bb', 'x' * 20]
            sl[0] = 'mphost'
            sl[3] = 12345
            sl[5] = 'é' * 12
            sl.shm.close()
            # The stdlib process owns it and removes it.
            resource_tracker.unregister(sl.shm._name, 'shared_memory')
            out, err = stock.communicate('\n', timeout=TIMEOUT)
            assert stock.returncode == 0, err
            assert out.strip() == repr(['mphost', 1, 2.0, 12345, b'bb', 'é' * 12])
            assert err == ''
            assert not shm_exists(name)
        finally:
            if stock.poll() is None:
                stock.kill()
                stock.wait()

    def test_segment_bytes_both_ways(self, segments):
        seg = shared_memory.SharedMemory(create=True, size=5000)
        segments.append(seg)
        seg.buf[:5] = b'hello'
        proc = subprocess.run([STOCK_PYTHON, '-c', textwrap.dedent('''
            import sys
            from multiprocessing import resource_tracker, shared_memory
            s = shared_memory.SharedMemory(sys.argv[1])
            resource_tracker.unregister(s._name, 'shared_memory')
            print(s.size, bytes(s.buf[:5]).decode())
            s.buf[4999] = 99
            s.close()
        '''), seg.name], capture_output=True, text=True, timeout=TIMEOUT)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split() == ['5000', 'hello']
        assert seg.buf[4999] == 99


def test_program_that_unlinks_leaves_nothing_and_warns_nothing(prefix):
    proc = run_program('''
        import sys
        from multiprocessing import shared_memory
        p = sys.argv[1]
        sl = shared_memory.ShareableList([1, 'two'], name=p + 'list')
        seg = shared_memory.SharedMemory(p + 'seg', create=True, size=100)
        seg.close(); seg.unlink()
        sl.shm.close(); sl.shm.unlink()
    ''', args=[prefix])
    assert proc.returncode == 0 and proc.stderr == ''


def test_program_that_forgets_to_unlink(prefix):
    proc = run_program('''
        import sys
        from multiprocessing import shared_memory
        p = sys.argv[1]
        sl = shared_memory.ShareableList([1, 'two'], name=p + 'list')
        seg = shared_memory.SharedMemory(p + 'seg', create=True, size=100)
    ''', args=[prefix])
    assert proc.returncode == 0
    assert 'There appear to be 2 leaked shared_memory objects to clean up at shutdown' in proc.stderr
    assert not shm_exists(prefix + 'list') and not shm_exists(prefix + 'seg')
