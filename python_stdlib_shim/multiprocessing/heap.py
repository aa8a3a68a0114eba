"""Blocks of shared memory for sharedctypes: arenas, a heap, BufferWrapper.

An Arena is a native arena (``_mphost.Arena``, ipc/arena.hpp): a nameless
0600 shared memory file, mapped, together with the allocator that carves
it. The Heap hands out blocks ``(arena, start, stop)`` from its arenas and
BufferWrapper is one block, given back to the heap when the wrapper is
garbage collected.

Policy here, mechanism below. The native arena does the carving:
address-ordered first fit, a freed block merged at once with the free
extents on both sides (so free space is never split into adjacent pieces),
16-byte alignment. The heap decides which arena to ask (the oldest that has
room; a new one when none has), how large a new arena is (a page at first,
doubling up to ``_DOUBLE_ARENA_SIZE_UNTIL``; one request larger than that
gets an arena of its own size), and what happens to an arena none of whose
blocks is in use: kept for reuse when small, let go when large
(``_DISCARD_FREE_SPACE_LARGER_THAN``).

Lifetime of an arena. Its memory never has a name (nothing in /dev/shm,
however the processes end, SIGKILL included); the kernel frees it when the
last process holding its descriptor or a mapping lets go. Children get
arenas the way the stdlib gives them: a fork child inherits the mapping; a
spawn or forkserver child receives a duplicate of the descriptor with its
process object (``DupFd``) and maps it again, once per arena however many
of its objects it receives.

A forked child never allocates from its parent's arenas (both would carve
the same free space): its first allocation starts a heap of its own.

Frees can come from the garbage collector at any moment, also inside
malloc() or free() of the same thread: every free is queued
(``_pending_free_blocks``) and the queue is drained by whoever holds the
heap, at once when no one does.
"""

import mmap
import os
import secrets
import sys
import threading
import weakref

from .context import reduction, assert_spawning  # noqa: F401  (stdlib names)
from . import util

__all__ = ['BufferWrapper']


# The arenas this process maps, by identity, so that a child receiving
# several objects of one arena maps it once.
_known_arenas = weakref.WeakValueDictionary()


class Arena(object):
    """A shared memory area of `size` bytes (a new one unless `fd` is given).

    ``buffer`` is a writable memoryview of the whole area; the mapping and
    the descriptor go when the arena and every view of it are gone.
    """

    def __init__(self, size, fd=-1, token=None):
        import _mphost
        if fd == -1:
            self._native = _mphost.Arena(size)
        else:
            self._native = _mphost.Arena.adopt(fd, size)
        self.size = size
        self.fd = self._native.fd
        self.buffer = memoryview(self._native)
        self._token = token if token is not None else secrets.token_hex(8)
        _known_arenas[self._token] = self

    def __repr__(self):
        return '<%s size=%d fd=%d>' % (type(self).__name__, self.size, self.fd)

    def __reduce__(self):
        # Only the ForkingPickler may carry an arena (reduce_arena, as a
        # child starts). Plain pickle fails as with the stdlib, whose
        # arena's unpicklable part is its mmap.
        raise TypeError("cannot pickle 'mmap.mmap' object")


def reduce_arena(a):
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


class Heap(object):
    """Allocates blocks ``(arena, start, stop)`` from arenas (see the module)."""

    # The native arena's alignment (ipc::arena::alignment): enough for every
    # ctypes type, long double included.
    _alignment = 16

    _DISCARD_FREE_SPACE_LARGER_THAN = 4 * 1024 ** 2
    _DOUBLE_ARENA_SIZE_UNTIL = 4 * 1024 ** 2

    def __init__(self, size=mmap.PAGESIZE):
        self._initial_size = size
        self._start_afresh()

    def _start_afresh(self):
        """The state of a heap owned by this process, with no arena yet: the
        owner's pid, the lock, the next arena's size, the arenas (oldest
        first), the blocks freed but not yet given back, and the counts of
        malloc() and of blocks given back."""
        self.__dict__.update(
            _lastpid=os.getpid(), _lock=threading.Lock(), _size=self._initial_size,
            _arenas=[], _pending_free_blocks=[], _n_mallocs=0, _n_frees=0)

    # The stdlib's names for the rest of the heap's state, read by CPython's
    # test_heap: views of the arenas' own bookkeeping.

    @property
    def _allocated_blocks(self):
        in_use = {}
        for arena in self._arenas:
            blocks = arena._native.used_blocks()
            if blocks:
                in_use[arena] = set(blocks)
        return in_use

    @property
    def _len_to_seq(self):
        by_length = {}
        for arena in self._arenas:
            for start, stop in arena._native.free_extents():
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
            for arena in self._arenas:
                extent = arena._native.allocate(size)
                if extent is not None:
                    break
            else:
                arena = self._add_arena(size)
                extent = arena._native.allocate(size)
            return (arena,) + extent

    def free(self, block):
        """Give back a block returned by malloc()."""
        if self._lastpid != os.getpid():
            raise ValueError('My pid ({0:n}) is not last pid {1:n}'.format(
                os.getpid(), self._lastpid))
        self._pending_free_blocks.append(block)
        # Never wait: the holder may be this very thread, interrupted by
        # the garbage collector. Whoever holds the heap drains the queue.
        _unless_contended(self._lock, self._drain)

    # -- with the lock held --

    def _drain(self):
        """Give the pending blocks back to their arenas, then forget the
        arenas left unused and large: their memory goes when the last
        mapping (in any process) does."""
        queue = self._pending_free_blocks
        if not queue:
            return
        while queue:
            arena, start, _stop = queue.pop()
            self._n_frees += 1
            arena._native.release(start)
        limit = self._DISCARD_FREE_SPACE_LARGER_THAN
        self._arenas[:] = [arena for arena in self._arenas
                           if arena._native.blocks_in_use or arena.size < limit]

    def _add_arena(self, request):
        pages = -(-max(self._size, request) // mmap.PAGESIZE)
        # The next one twice as large, up to the limit (never shrinking).
        self._size = max(self._size, min(2 * self._size, self._DOUBLE_ARENA_SIZE_UNTIL))
        util.info('allocating a new mmap of length %d', pages * mmap.PAGESIZE)
        arena = Arena(pages * mmap.PAGESIZE)
        self._arenas.append(arena)
        return arena


def _unless_contended(lock, work):
    """work() with `lock` held if nobody holds it right now; never waits."""
    if lock.acquire(False):
        try:
            work()
        finally:
            lock.release()


def _check_size(size):
    if size < 0:
        raise ValueError('Size {0:n} out of range'.format(size))
    if size >= sys.maxsize:
        raise OverflowError('Size {0:n} too large'.format(size))


class BufferWrapper(object):
    """One zero-filled block of the shared heap, freed when the wrapper is
    collected.

    Pickled for a child being started, it carries its arena (see Arena).
    """

    _heap = Heap()

    def __init__(self, size):
        _check_size(size)
        owner = BufferWrapper._heap
        block = owner.malloc(size)
        # The block and the requested bytes' slice of its arena (the block
        # itself may be longer, rounded up).
        self._block, self._span = block, slice(block[1], block[1] + size)
        util.Finalize(self, owner.free, args=(block,))

    @property
    def _state(self):
        """The stdlib's record of a wrapper: (block, requested size)."""
        return self._block, self._span.stop - self._span.start

    def create_memoryview(self):
        """A writable memoryview of exactly the requested bytes."""
        return memoryview(self._block[0].buffer)[self._span]
