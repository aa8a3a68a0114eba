"""heap: arenas, the block allocator and BufferWrapper."""

import gc
import mmap
import os
import random
import stat

import pytest

import multiprocessing
from multiprocessing import heap

from _helpers_shared import ARENA_LINK, TIMEOUT, arena_entries


@pytest.fixture
def fresh_heap():
    """A pristine heap for BufferWrapper during the test."""
    old = heap.BufferWrapper._heap
    heap.BufferWrapper._heap = new = heap.Heap()
    yield new
    heap.BufferWrapper._heap = old


def heap_layout(h):
    """Every block of every arena: (arena index, start, stop, state)."""
    blocks = []
    for seq in h._len_to_seq.values():
        for arena, start, stop in seq:
            blocks.append((h._arenas.index(arena), start, stop, 'free'))
    for arena, in_use in h._allocated_blocks.items():
        for start, stop in in_use:
            blocks.append((h._arenas.index(arena), start, stop, 'occupied'))
    return sorted(blocks)


def check_heap(h):
    blocks = heap_layout(h)
    total = sum(stop - start for _a, start, stop, _s in blocks)
    assert total == sum(arena.size for arena in h._arenas)
    for (arena, start, stop, state), (narena, nstart, nstop, nstate) in zip(blocks, blocks[1:]):
        if arena != narena:
            assert stop == h._arenas[arena].size and nstart == 0
        else:
            assert stop == nstart
            # Free neighbours are always merged.
            assert not (state == nstate == 'free')


def test_random_allocations_keep_the_heap_consistent(fresh_heap):
    fresh_heap._DISCARD_FREE_SPACE_LARGER_THAN = 0
    rng = random.Random(1234)
    blocks = []
    for i in range(3000):
        blocks.append(heap.BufferWrapper(int(rng.lognormvariate(0, 1) * 1000)))
        if len(blocks) > 50:
            del blocks[rng.randrange(50)]
        if i % 500 == 0:
            with fresh_heap._lock:
                check_heap(fresh_heap)
    with fresh_heap._lock:
        check_heap(fresh_heap)
    rng.shuffle(blocks)
    while blocks:
        blocks.pop()
    assert fresh_heap._n_frees == fresh_heap._n_mallocs == 3000
    assert fresh_heap._pending_free_blocks == []
    assert fresh_heap._arenas == [] and len(fresh_heap._allocated_blocks) == 0
    assert fresh_heap._len_to_seq == {} and fresh_heap._lengths == []


def test_freed_blocks_are_reused(fresh_heap):
    a = heap.BufferWrapper(100)
    first = a._state[0]
    del a
    b = heap.BufferWrapper(100)
    assert b._state[0] == first
    c = heap.BufferWrapper(50)
    assert c._state[0][0] is first[0] and c._state[0][1] >= first[2]
    assert len(fresh_heap._arenas) == 1


def test_small_arenas_are_kept_large_ones_discarded(fresh_heap):
    small = heap.BufferWrapper(10)
    del small
    assert len(fresh_heap._arenas) == 1
    big = heap.BufferWrapper(8 * 1024 * 1024)
    assert len(fresh_heap._arenas) == 2
    del big
    assert len(fresh_heap._arenas) == 1


def test_alignment_and_sizes(fresh_heap):
    for size in (0, 1, 7, 8, 15, 16, 17, 4095, 4096, 4097, 100000):
        b = heap.BufferWrapper(size)
        (arena, start, stop), wanted = b._state
        assert wanted == size and start % heap.Heap._alignment == 0
        assert stop - start >= max(size, 1)
        view = b.create_memoryview()
        assert len(view) == size and not view.readonly
        if size:
            view[size - 1] = 0x5a
            assert arena.buffer[start + size - 1] == 0x5a
    with pytest.raises(ValueError, match='out of range'):
        heap.BufferWrapper(-1)
    with pytest.raises(OverflowError, match='too large'):
        heap.BufferWrapper(2 ** 63)


def test_arena_growth(fresh_heap):
    sizes = []
    for _ in range(4):
        b = heap.BufferWrapper(fresh_heap._size)  # fills the current arena
        sizes.append(b._state[0][0].size)
        b._keep = b
    assert sizes == [mmap.PAGESIZE, 2 * mmap.PAGESIZE, 4 * mmap.PAGESIZE, 8 * mmap.PAGESIZE]


def test_free_from_gc_does_not_deadlock(fresh_heap):
    thresholds = gc.get_threshold()
    gc.set_threshold(10)
    try:
        for _ in range(5000):
            a = heap.BufferWrapper(1)
            b = heap.BufferWrapper(1)
            a.buddy = b
            b.buddy = a
    finally:
        gc.set_threshold(*thresholds)
    del a, b
    gc.collect()
    heap.BufferWrapper(1)  # handles what was deferred
    assert fresh_heap._pending_free_blocks == []
    assert fresh_heap._n_frees == fresh_heap._n_mallocs == 10001


def test_arenas_are_nameless_and_owner_only(fresh_heap):
    before = arena_entries()
    keep = [heap.BufferWrapper(1 << 20) for _ in range(3)]
    assert arena_entries() == before
    for b in keep:
        arena = b._state[0][0]
        st = os.fstat(arena.fd)
        assert st.st_nlink == 0 and stat.S_IMODE(st.st_mode) == 0o600
        assert st.st_size == arena.size
        assert os.readlink('/proc/self/fd/%d' % arena.fd).startswith(ARENA_LINK)


def test_arena_descriptor_closed_when_collected(fresh_heap):
    fresh_heap._DISCARD_FREE_SPACE_LARGER_THAN = 0
    b = heap.BufferWrapper(10)
    fd = b._state[0][0].fd
    os.fstat(fd)
    del b
    gc.collect()
    assert fresh_heap._arenas == []
    with pytest.raises(OSError):
        os.fstat(fd)


def child_writes(wrapper, value):
    wrapper.create_memoryview().cast('q')[0] = value


def child_allocates(conn):
    own = [heap.BufferWrapper(64) for _ in range(10)]
    for i, b in enumerate(own):
        b.create_memoryview().cast('q')[0] = -i
    conn.send(heap.BufferWrapper._heap._lastpid == os.getpid())


@pytest.mark.parametrize('method', ['fork', 'spawn', 'forkserver'])
def test_wrapper_in_child(method):
    ctx = multiprocessing.get_context(method)
    wrappers = [heap.BufferWrapper(8) for _ in range(20)]
    for i, w in enumerate(wrappers):
        w.create_memoryview().cast('q')[0] = i
    reader, writer = ctx.Pipe(duplex=False)
    p = ctx.Process(target=child_allocates, args=(writer,))
    p.start()
    writer.close()
    assert reader.poll(TIMEOUT) and reader.recv() is True
    p.join(TIMEOUT)
    assert p.exitcode == 0
    # The child's own allocations did not touch the parent's blocks.
    assert [w.create_memoryview().cast('q')[0] for w in wrappers] == list(range(20))
    p = ctx.Process(target=child_writes, args=(wrappers[7], 777))
    p.start()
    p.join(TIMEOUT)
    assert p.exitcode == 0
    assert wrappers[7].create_memoryview().cast('q')[0] == 777


def test_wrapper_through_a_connection():
    # Outside process start-up the arena travels by the resource sharer.
    w = heap.BufferWrapper(8)
    w.create_memoryview().cast('q')[0] = 41
    ctx = multiprocessing.get_context('spawn')
    a, b = ctx.Pipe()
    try:
        a.send(w)
        clone = b.recv()
        clone.create_memoryview().cast('q')[0] += 1
        assert w.create_memoryview().cast('q')[0] == 42
    finally:
        a.close()
        b.close()


def test_views_keep_the_mapping_alive(fresh_heap):
    # The native arena is the exporter of every view: the memory stays
    # mapped, and its descriptor open, while a view exists.
    fresh_heap._DISCARD_FREE_SPACE_LARGER_THAN = 0
    b = heap.BufferWrapper(64)
    view = b.create_memoryview()
    fd = b._state[0][0].fd
    del b
    gc.collect()
    assert fresh_heap._arenas == []
    view[0] = 7
    assert view[0] == 7
    os.fstat(fd)
    del view
    gc.collect()
    with pytest.raises(OSError):
        os.fstat(fd)


def test_native_arena_checks_what_it_is_given():
    import _mphost
    arena = _mphost.Arena(4096)
    assert arena.allocate(4097) is None
    assert arena.allocate(10) == (0, 16)
    with pytest.raises(OSError):
        arena.release(8)  # not the start of a block in use
    # A size beyond the file would fault on first touch: refused.
    with pytest.raises(OSError):
        _mphost.Arena.adopt(os.dup(arena.fd), 8192)
    other = _mphost.Arena.adopt(os.dup(arena.fd), 4096)
    memoryview(arena)[100] = 42
    assert memoryview(other)[100] == 42 and other.free_extents() == []


def test_plain_pickle_of_an_arena_fails_as_with_the_stdlib(fresh_heap):
    import pickle
    b = heap.BufferWrapper(8)
    with pytest.raises(TypeError, match='cannot pickle'):
        pickle.dumps(b._state[0][0])


def test_blocks_come_zero_filled(fresh_heap):
    first = heap.BufferWrapper(256)
    first.create_memoryview()[:] = b'\xff' * 256
    del first
    again = heap.BufferWrapper(300)  # over the bytes the first one dirtied
    assert bytes(again.create_memoryview()) == bytes(300)


def test_a_large_raw_array_costs_no_memory_until_written():
    from multiprocessing import sharedctypes

    def resident_kib():
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('RssShmem:'):
                    return int(line.split()[1])

    before = resident_kib()
    big = sharedctypes.RawArray('d', 32 * 1024 * 1024)  # 256 MiB
    assert resident_kib() - before < 16 * 1024
    assert big[0] == 0.0 and big[len(big) - 1] == 0.0
    del big
