"""Blocks of shared memory passed between a C++ application and its workers.

A block is a file in /dev/shm. The application names one in a call's
arguments as ``attach(name, format, count)``, or ``attach(name, format,
count, shape)`` for an N-D one, which the unpickler runs in the worker: the
callable receives a memoryview of `count` items of the struct `format` over
the block itself, of that shape (C order), which numpy.asarray takes as it
is. memoryview has no N-D view without items: an empty block is 1-D.

A worker makes a block with ``shared_array(format, count or shape)``; a result that
is such a memoryview, or a numpy array that covers one, travels back as the
same ``attach`` reference (see ``reference``), and the application takes the
name over (it removes it). Names a worker made and never handed over are
removed when it exits; the pool removes those of a worker that died.
"""

import atexit
import mmap
import os
import secrets

_SHM_DIR = '/dev/shm/'
_PREFIX = 'mphost-arr-'
_ITEM_SIZE = {'b': 1, 'B': 1, 'h': 2, 'H': 2, 'i': 4, 'I': 4, 'f': 4,
              'q': 8, 'Q': 8, 'd': 8}

# Names this process made, not yet known to be taken over.
_made = set()


class _Block(mmap.mmap):
    """A mapped block that remembers what it holds."""


def _map(fd, size, name, fmt, count, shape=None):
    block = _Block(fd, max(size, 1))
    block.name, block.format, block.count = name, fmt, count
    flat = memoryview(block)[:count * _ITEM_SIZE[fmt]]
    if shape is None or len(shape) == 1 or count == 0:
        return flat.cast(fmt)
    return flat.cast(fmt, shape)


def _items(shape):
    """The item count of `shape` (an int or a sequence of ints), checked."""
    total = 1
    for extent in shape:
        if extent < 0:
            raise ValueError('a shared array extent must not be negative')
        total *= extent
    return total


def attach(name, fmt, count, shape=None):
    """A memoryview of `count` items of `fmt` over the block `name`, of the
    given shape (1-D without one)."""
    if fmt not in _ITEM_SIZE:
        raise ValueError(f'unknown shared array format {fmt!r}')
    if shape is not None and _items(shape) != count:
        raise ValueError(f'shape {tuple(shape)} does not hold {count} items')
    fd = os.open(_SHM_DIR + name.lstrip('/'), os.O_RDWR)
    try:
        return _map(fd, os.fstat(fd).st_size, name, fmt, count, shape)
    finally:
        os.close(fd)


def shared_array(fmt, shape):
    """A new zero-filled block of `fmt` items, `shape` a count or a tuple of
    extents (C order), as a memoryview that a worker can return to the
    application without a copy."""
    if fmt not in _ITEM_SIZE:
        raise ValueError(f'unknown shared array format {fmt!r}')
    if isinstance(shape, int):
        if shape < 0:
            raise ValueError('count must not be negative')
        count, shape = shape, None
    else:
        shape = tuple(shape)
        count = _items(shape)
    name = f'{_PREFIX}{os.getpid()}-{secrets.token_hex(12)}'
    size = max(count * _ITEM_SIZE[fmt], 1)
    fd = os.open(_SHM_DIR + name, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        _made.add(name)
        os.posix_fallocate(fd, 0, size)
        return _map(fd, size, name, fmt, count, shape)
    except BaseException:
        _forget(name)
        raise
    finally:
        os.close(fd)


def _forget(name):
    _made.discard(name)
    try:
        os.unlink(_SHM_DIR + name)
    except FileNotFoundError:
        pass


def _block_under(obj):
    """The _Block a memoryview or an array is a view of, or None."""
    for _ in range(8):
        if isinstance(obj, _Block):
            return obj
        if isinstance(obj, memoryview):
            obj = obj.obj
        else:
            obj = getattr(obj, 'base', None)
            if obj is None:
                return None
    return None


def reference(obj):
    """(attach, args) for a result that is a whole block seen as its own
    items, in C order (its shape goes along when it is not 1-D), or None
    when it must be pickled by value."""
    block = _block_under(obj)
    if block is None:
        return None
    if isinstance(obj, memoryview):
        whole = (obj.format == block.format and obj.nbytes == block.count * _ITEM_SIZE[block.format]
                 and obj.c_contiguous)
    else:
        whole = (getattr(obj, 'size', -1) == block.count and obj.dtype == block.format
                 and obj.flags.c_contiguous)
    if not whole:
        return None
    _made.discard(block.name)
    if len(obj.shape) == 1:
        return attach, (block.name, block.format, block.count)
    return attach, (block.name, block.format, block.count, tuple(obj.shape))


@atexit.register
def _remove_unclaimed():
    for name in list(_made):
        _forget(name)
