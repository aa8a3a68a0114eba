"""Blocks of shared memory for sharedctypes: arenas, a heap, BufferWrapper.

An Arena is a shared memory segment mapped with mmap. A Heap carves blocks
out of arenas (best fit, neighbours merged when freed, freed blocks reused)
and BufferWrapper is one block, given back to the heap when the wrapper is
garbage collected.

Lifetime of an arena. The segment is created under an unguessable name,
owner-only (0600), and its name is removed at once, before the constructor
returns: from then on the arena is reachable only through its descriptor
and its mappings, and the kernel frees the memory when the last process
holding either ends or lets go. So nothing of an arena can be left in
/dev/shm, however the processes end (SIGKILL included). Children get
arenas the way the stdlib gives them: a fork child inherits the mapping; a
spawn or forkserver child receives a duplicate of the descriptor with its
process object (``DupFd``) and maps it again -- once per arena, however
many objects of that arena it receives.

A forked child never allocates from its parent's arenas (both would carve
the same free space): its first allocation starts a heap of its own.
"""

import bisect
from collections import defaultdict
import mmap
import os
import secrets
import sys
import tempfile
import threading
import weakref

from .context import reduction, assert_spawning  # noqa: F401  (stdlib names)
from . import util

__all__ = ['BufferWrapper']


def _segment_descriptor(size):
    """A descriptor of a fresh nameless shared memory file of `size` bytes."""
    st = os.statvfs('/dev/shm') if os.path.isdir('/dev/shm') else None
    if st is not None and st.f_bavail * st.f_frsize >= size:
        import _posixshmem
        flags = os.O_CREAT | os.O_EXCL | os.O_RDWR
        for _attempt in range(100):
            name = '/mph-arena-' + secrets.token_hex(16)
            try:
                fd = _posixshmem.shm_open(name, flags, mode=0o600)
            except FileExistsError:
                continue
            _posixshmem.shm_unlink(name)
            break
        else:
            raise FileExistsError('cannot find a name for a new arena')
    else:
        # /dev/shm is missing or full: a file in the private temp directory.
        fd, path = tempfile.mkstemp(prefix='pym-%d-' % os.getpid(), dir=util.get_temp_dir())
        os.unlink(path)
    try:
        os.ftruncate(fd, size)
    except BaseException:
        os.close(fd)
        raise
    return fd


# The arenas this process maps, by identity, so that a child receiving
# several objects of one arena maps it once.
_known_arenas = weakref.WeakValueDictionary()


class Arena(object):
    """A shared memory area of `size` bytes (a new one unless `fd` is given)."""

    def __init__(self, size, fd=-1, token=None):
        self.size = size
        if fd == -1:
            fd = _segment_descriptor(size)
        self.fd = fd
        util.Finalize(self, os.close, (fd,))
        self.buffer = mmap.mmap(fd, size)
        self._token = token or secrets.token_hex(8)
        _known_arenas[self._token] = self

    def __repr__(self):
        return '<%s size=%d fd=%d>' % (type(self).__name__, self.size, self.fd)


def reduce_arena(a):
    if a.fd == -1:
        raise ValueError('Arena is unpicklable because forking was enabled when it was created')
    return rebuild_arena, (a.size, reduction.DupFd(a.fd), a._token)


def rebuild_arena(size, dupfd, token=None):
    fd = dupfd.detach()
    known = _known_arenas.get(token) if token is not None else None
    if known is not None:
        if fd != known.fd:
            os.close(fd)
        return known
    return Arena(size, fd, token)


reduction.register(Arena, reduce_arena)


class Heap(object):
    """Allocates blocks ``(arena, start, stop)`` from arenas.

    Free space is indexed three ways: by length (a sorted list of lengths,
    ``_lengths``, and the free blocks of each, ``_len_to_seq``, for a best
    fit) and by both ends (``_start_to_block``, ``_stop_to_block``, to merge
    a freed block with free neighbours). ``_allocated_blocks`` holds each
    arena's blocks in use; an arena with none left is given back to the
    system when it is large (``_DISCARD_FREE_SPACE_LARGER_THAN``), kept for
    reuse otherwise. Arenas start at a page and double, up to
    ``_DOUBLE_ARENA_SIZE_UNTIL``.
    """

    # Enough for every ctypes type, long double included.
    _alignment = 16

    _DISCARD_FREE_SPACE_LARGER_THAN = 4 * 1024 ** 2
    _DOUBLE_ARENA_SIZE_UNTIL = 4 * 1024 ** 2

    def __init__(self, size=mmap.PAGESIZE):
        self._lastpid = os.getpid()
        self._lock = threading.Lock()
        self._size = size
        self._lengths = []
        self._len_to_seq = {}
        self._start_to_block = {}
        self._stop_to_block = {}
        self._allocated_blocks = defaultdict(set)
        self._arenas = []
        # Blocks freed while the lock was taken (by a finalizer that the
        # garbage collector ran inside malloc or free); handled later.
        self._pending_free_blocks = []
        self._n_mallocs = 0
        self._n_frees = 0

    @staticmethod
    def _roundup(n, alignment):
        return (n + alignment - 1) & ~(alignment - 1)

    # -- the free-space index --

    def _index_free(self, block):
        arena, start, stop = block
        length = stop - start
        seq = self._len_to_seq.get(length)
        if seq is None:
            self._len_to_seq[length] = [block]
            bisect.insort(self._lengths, length)
        else:
            seq.append(block)
        self._start_to_block[(arena, start)] = block
        self._stop_to_block[(arena, stop)] = block

    def _unindex_free(self, block):
        arena, start, stop = block
        del self._start_to_block[(arena, start)]
        del self._stop_to_block[(arena, stop)]
        length = stop - start
        seq = self._len_to_seq[length]
        seq.remove(block)
        if not seq:
            del self._len_to_seq[length]
            self._lengths.remove(length)

    def _take_free(self, size):
        """The smallest free block of at least `size` bytes (from a new arena
        when none is large enough), taken out of the index."""
        i = bisect.bisect_left(self._lengths, size)
        if i == len(self._lengths):
            return self._new_arena(size)
        block = self._len_to_seq[self._lengths[i]][-1]
        self._unindex_free(block)
        return block

    def _give_back(self, block):
        """Return a block to the free space, merged with free neighbours."""
        arena, start, stop = block
        before = self._stop_to_block.get((arena, start))
        if before is not None:
            self._unindex_free(before)
            start = before[1]
        after = self._start_to_block.get((arena, stop))
        if after is not None:
            self._unindex_free(after)
            stop = after[2]
        self._index_free((arena, start, stop))

    # -- arenas --

    def _new_arena(self, size):
        length = self._roundup(max(self._size, size), mmap.PAGESIZE)
        if self._size < self._DOUBLE_ARENA_SIZE_UNTIL:
            self._size *= 2
        util.info('allocating a new mmap of length %d', length)
        arena = Arena(length)
        self._arenas.append(arena)
        return (arena, 0, length)

    def _release_block(self, block):
        self._n_frees += 1
        arena, start, stop = block
        in_use = self._allocated_blocks[arena]
        in_use.remove((start, stop))
        self._give_back(block)
        if in_use:
            return
        del self._allocated_blocks[arena]
        if arena.size < self._DISCARD_FREE_SPACE_LARGER_THAN:
            return  # small: keep it for the next allocations
        # Entirely free and large: forget it; the memory goes when the last
        # mapping (in any process) does.
        self._unindex_free((arena, 0, arena.size))
        self._arenas.remove(arena)

    def _free_pending_blocks(self):
        while self._pending_free_blocks:
            self._release_block(self._pending_free_blocks.pop())

    # -- the interface --

    def free(self, block):
        """Give back a block returned by malloc()."""
        if os.getpid() != self._lastpid:
            raise ValueError('My pid ({0:n}) is not last pid {1:n}'.format(
                os.getpid(), self._lastpid))
        # The garbage collector may call this from inside malloc() or free()
        # of this same thread: never wait for the lock, defer instead.
        if not self._lock.acquire(False):
            self._pending_free_blocks.append(block)
            return
        try:
            self._free_pending_blocks()
            self._release_block(block)
        finally:
            self._lock.release()

    def malloc(self, size):
        """A block ``(arena, start, stop)`` of `size` bytes (rounded up)."""
        if size < 0:
            raise ValueError('Size {0:n} out of range'.format(size))
        if sys.maxsize <= size:
            raise OverflowError('Size {0:n} too large'.format(size))
        if os.getpid() != self._lastpid:
            # A forked child: the parent's arenas are the parent's to carve.
            self.__init__()
        with self._lock:
            self._n_mallocs += 1
            self._free_pending_blocks()
            size = self._roundup(max(size, 1), self._alignment)
            arena, start, stop = self._take_free(size)
            end = start + size
            if end < stop:
                self._index_free((arena, end, stop))
            self._allocated_blocks[arena].add((start, end))
            return (arena, start, end)


class BufferWrapper(object):
    """One block of the shared heap, freed when the wrapper is collected.

    Pickled for a child being started, it carries its arena (see Arena).
    """

    _heap = Heap()

    def __init__(self, size):
        if size < 0:
            raise ValueError('Size {0:n} out of range'.format(size))
        if sys.maxsize <= size:
            raise OverflowError('Size {0:n} too large'.format(size))
        block = BufferWrapper._heap.malloc(size)
        self._state = (block, size)
        util.Finalize(self, BufferWrapper._heap.free, args=(block,))

    def create_memoryview(self):
        """A writable memoryview of exactly the requested bytes."""
        (arena, start, _stop), size = self._state
        return memoryview(arena.buffer)[start:start + size]
