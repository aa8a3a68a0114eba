"""Blocks of shared memory for sharedctypes: arenas, a heap, BufferWrapper.

An Arena is an anonymous shared memory file mapped with mmap. The Heap
carves blocks ``(arena, start, stop)`` out of arenas and BufferWrapper is
one block, given back to the heap when the wrapper is garbage collected.

The allocator: each arena keeps its own free space, a map of free extents
ordered by address (``_Space``). A request takes the lowest-addressed free
extent that is large enough, in the oldest arena that has one (address-
ordered first fit: it packs blocks at the low end and leaves one large
tail); a freed block is merged with the free extents on both sides at once,
so free space is never split into adjacent pieces. An arena none of whose
blocks is in use is kept for reuse when it is small, given back when it is
large (``_DISCARD_FREE_SPACE_LARGER_THAN``). Arenas start at a page and
double, up to ``_DOUBLE_ARENA_SIZE_UNTIL``, and one request larger than
that gets an arena of its own size.

Lifetime of an arena. Its memory is a memfd: it never has a name anywhere
(nothing in /dev/shm, however the processes end, SIGKILL included), its
mode is 0600, and the kernel frees it when the last process holding its
descriptor or a mapping lets go. Children get arenas the way the stdlib
gives them: a fork child inherits the mapping; a spawn or forkserver child
receives a duplicate of the descriptor with its process object (``DupFd``)
and maps it again, once per arena however many of its objects it receives.

A forked child never allocates from its parent's arenas (both would carve
the same free space): its first allocation starts a heap of its own.

Frees can come from the garbage collector at any moment, also inside
malloc() or free() of the same thread: a free that finds the heap busy is
queued (``_pending_free_blocks``) and done by the next caller that holds it.
"""

import bisect
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


def _anonymous_file(size):
    """A descriptor of a fresh nameless, owner-only file of `size` bytes."""
    try:
        fd = os.memfd_create('mph-arena')
    except OSError:
        # No memfd (a sandbox may forbid it): a file in the private temp
        # directory, its name removed at once.
        fd, path = tempfile.mkstemp(prefix='mph-arena-', dir=util.get_temp_dir())
        os.unlink(path)
    try:
        os.fchmod(fd, 0o600)
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
        if fd == -1:
            fd = _anonymous_file(size)
        self.size, self.fd = size, fd
        util.Finalize(self, os.close, (fd,))
        self.buffer = mmap.mmap(fd, size)
        self._token = token if token is not None else secrets.token_hex(8)
        _known_arenas[self._token] = self

    def __repr__(self):
        return '<%s size=%d fd=%d>' % (type(self).__name__, self.size, self.fd)


def reduce_arena(a):
    if a.fd == -1:
        raise ValueError('Arena is unpicklable because forking was enabled when it was created')
    return rebuild_arena, (a.size, reduction.DupFd(a.fd), a._token)


def rebuild_arena(size, dupfd, token=None):
    fd = dupfd.detach()
    mapped = None if token is None else _known_arenas.get(token)
    if mapped is None:
        return Arena(size, fd, token)
    if fd != mapped.fd:
        os.close(fd)  # one mapping per arena is enough
    return mapped


reduction.register(Arena, reduce_arena)


class _Space(object):
    """The bookkeeping of one arena: free extents and blocks in use.

    `starts` is the sorted list of the free extents' first offsets and
    `ends[start]` the end of each; `used[start]` is the end of each block
    in use. Free extents never touch: a freed block absorbs its neighbours.
    """

    __slots__ = ('starts', 'ends', 'used')

    def __init__(self, size):
        self.starts = [0]
        self.ends = {0: size}
        self.used = {}

    def take(self, length):
        """The start of a fresh block of `length` bytes, or None if none fits."""
        for i, start in enumerate(self.starts):
            end = self.ends[start]
            if end - start < length:
                continue
            del self.ends[start]
            if end - start == length:
                del self.starts[i]
            else:
                self.starts[i] = start + length
                self.ends[start + length] = end
            self.used[start] = start + length
            return start
        return None

    def give(self, start):
        """Free the block in use at `start`, merged with free neighbours."""
        end = self.used.pop(start)
        i = bisect.bisect_left(self.starts, start)
        if i < len(self.starts) and self.starts[i] == end:
            # The free extent right after joins this one.
            end = self.ends.pop(end)
            del self.starts[i]
        if i > 0 and self.ends[self.starts[i - 1]] == start:
            # This one joins the free extent right before.
            self.ends[self.starts[i - 1]] = end
        else:
            self.starts.insert(i, start)
            self.ends[start] = end

    def free_extents(self):
        return [(start, self.ends[start]) for start in self.starts]


class Heap(object):
    """Allocates blocks ``(arena, start, stop)`` from arenas (see the module)."""

    # Enough for every ctypes type, long double included.
    _alignment = 16

    _DISCARD_FREE_SPACE_LARGER_THAN = 4 * 1024 ** 2
    _DOUBLE_ARENA_SIZE_UNTIL = 4 * 1024 ** 2

    def __init__(self, size=mmap.PAGESIZE):
        self._initial_size = size
        self._start_afresh()

    def _start_afresh(self):
        self._lastpid = os.getpid()
        self._lock = threading.Lock()
        self._size = self._initial_size  # the next arena's size
        self._spaces = {}                 # arena -> _Space, oldest first
        self._pending_free_blocks = []
        self._n_mallocs = self._n_frees = 0

    # The stdlib's names for the heap's state, read by CPython's test_heap:
    # views built from the arenas' own bookkeeping.

    @property
    def _arenas(self):
        return list(self._spaces)

    @property
    def _allocated_blocks(self):
        return {arena: set(space.used.items())
                for arena, space in self._spaces.items() if space.used}

    @property
    def _len_to_seq(self):
        by_length = {}
        for arena, space in self._spaces.items():
            for start, stop in space.free_extents():
                by_length.setdefault(stop - start, []).append((arena, start, stop))
        return by_length

    @property
    def _lengths(self):
        return sorted(self._len_to_seq)

    # -- the interface --

    def malloc(self, size):
        """A block ``(arena, start, stop)`` of `size` bytes (rounded up)."""
        _check_size(size)
        if self._lastpid != os.getpid():
            # A forked child: the parent's arenas are the parent's to carve.
            self._start_afresh()
        with self._lock:
            self._n_mallocs += 1
            self._drain()
            length = -(-max(size, 1) // self._alignment) * self._alignment
            for arena, space in self._spaces.items():
                start = space.take(length)
                if start is not None:
                    break
            else:
                arena = self._add_arena(length)
                start = self._spaces[arena].take(length)
            return (arena, start, start + length)

    def free(self, block):
        """Give back a block returned by malloc()."""
        if self._lastpid != os.getpid():
            raise ValueError('My pid ({0:n}) is not last pid {1:n}'.format(
                os.getpid(), self._lastpid))
        self._pending_free_blocks.append(block)
        # Never wait: the holder may be this very thread, interrupted by
        # the garbage collector. Whoever holds the heap drains the queue.
        if self._lock.acquire(False):
            try:
                self._drain()
            finally:
                self._lock.release()

    # -- with the lock held --

    def _drain(self):
        queue = self._pending_free_blocks
        while queue:
            arena, start, _stop = queue.pop()
            self._n_frees += 1
            space = self._spaces[arena]
            space.give(start)
            if not space.used and arena.size >= self._DISCARD_FREE_SPACE_LARGER_THAN:
                # Unused and large: forget it; the memory goes when the last
                # mapping (in any process) does.
                del self._spaces[arena]

    def _add_arena(self, length):
        size = max(self._size, length)
        size = -(-size // mmap.PAGESIZE) * mmap.PAGESIZE
        if self._size < self._DOUBLE_ARENA_SIZE_UNTIL:
            self._size *= 2
        util.info('allocating a new mmap of length %d', size)
        arena = Arena(size)
        self._spaces[arena] = _Space(size)
        return arena


def _check_size(size):
    if size < 0:
        raise ValueError('Size {0:n} out of range'.format(size))
    if size >= sys.maxsize:
        raise OverflowError('Size {0:n} too large'.format(size))


class BufferWrapper(object):
    """One block of the shared heap, freed when the wrapper is collected.

    Pickled for a child being started, it carries its arena (see Arena).
    """

    _heap = Heap()

    def __init__(self, size):
        _check_size(size)
        owner = BufferWrapper._heap
        block = owner.malloc(size)
        self._state = (block, size)
        util.Finalize(self, owner.free, args=(block,))

    def create_memoryview(self):
        """A writable memoryview of exactly the requested bytes."""
        (arena, offset, _end), length = self._state
        return memoryview(arena.buffer)[offset:offset + length]
