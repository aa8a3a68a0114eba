"""How objects cross hosts: pickle protocol 5, with every buffer that
offers itself out of band (numpy arrays, PickleBuffer) sent as an MPI
message of its own rather than copied into the pickle; and the refusal of
the objects that only mean something on this host.

A frame is (kind, header, parts). The header starts with the slot it is
about and, for a task, the number rank 0 gave it (u32 each), then the
pickle; parts are the out-of-band buffers in order.
"""

import struct

from multiprocessing import reduction

# Frame kinds (rank 0 -> worker rank).
PREPARE, START, TASK, TERMINATE, SHUTDOWN = 1, 2, 3, 4, 5
# Frame kinds (worker rank -> rank 0).
STARTED, RESULT, RETURNED, EXITED, FAILED = 11, 12, 13, 14, 15

_SLOT = struct.Struct('<II')
# Buffers smaller than this stay in the pickle: a message of its own costs
# more than the copy.
_OUT_OF_BAND_MIN = 64 * 1024

_WHY = {
    'lock': "it lives in this host's shared memory; make one in the task, or pass "
            "the values it guards instead",
    'queue': "its channel lives in this host's shared memory; return results from the "
             "task instead, or use a queue per host",
    'memory': "its memory exists on this host only; send the data (a numpy array or "
              "bytes travel without a copy into the pickle) instead",
    'connection': "it is an endpoint on this host",
}


def _host_bound():
    """(types, reason key) pairs of the objects refused, imported lazily."""
    from multiprocessing import connection, queues, sharedctypes, shared_memory, synchronize
    return (
        ((synchronize.SemLock, synchronize.Condition, synchronize.Event,
          synchronize.Barrier), 'lock'),
        ((queues.Queue, queues.SimpleQueue), 'queue'),
        ((sharedctypes.SynchronizedBase, shared_memory.SharedMemory,
          shared_memory.ShareableList), 'memory'),
        ((connection.Connection,), 'connection'),
    )


_refused = None


def refusal(obj):
    """The RuntimeError for an object that cannot go to another host, or None."""
    global _refused
    if _refused is None:
        _refused = _host_bound()
    for types, why in _refused:
        if isinstance(obj, types):
            return RuntimeError(f'{type(obj).__name__} objects cannot be sent to a worker '
                                f'on another host: {_WHY[why]}')
    if _is_shared_ctype(obj):
        return RuntimeError(f'{type(obj).__name__} objects cannot be sent to a worker on '
                            f'another host: {_WHY["memory"]}')
    return None


def _is_shared_ctype(obj):
    # RawValue/RawArray give plain ctypes objects whose pickling the
    # sharedctypes module registered with ForkingPickler.
    from multiprocessing import sharedctypes
    reducer = reduction.ForkingPickler._extra_reducers.get(type(obj))
    return reducer is not None and reducer is getattr(sharedctypes, 'reduce_ctype', None)


class _HostPickler(reduction.ForkingPickler):
    """ForkingPickler that refuses host-bound objects by name."""

    def reducer_override(self, obj):
        error = refusal(obj)
        if error is not None:
            raise error
        return NotImplemented


def encode(slot, obj, number=0):
    """(header, parts) of obj for `slot`."""
    import io
    import pickle
    parts = []

    def keep(buffer):
        view = buffer.raw()
        if view.nbytes < _OUT_OF_BAND_MIN:
            return True              # in band
        parts.append(view)
        return False

    stream = io.BytesIO()
    stream.write(_SLOT.pack(slot, number))
    _HostPickler(stream, pickle.HIGHEST_PROTOCOL, buffer_callback=keep).dump(obj)
    return stream.getbuffer(), parts


def address(header):
    """(slot, number) of a frame."""
    return _SLOT.unpack_from(header)


def readdressed(header, slot):
    """The header of a task sent to `slot` (it may come back from another)."""
    data = bytearray(header)
    _SLOT.pack_into(data, 0, slot, _SLOT.unpack_from(data)[1])
    return data


def bare(slot):
    """The header of a frame that carries nothing but its slot."""
    return _SLOT.pack(slot, 0)


def decode(header, parts):
    """The object of a frame; its out-of-band buffers become writable
    arrays over the received memory."""
    import pickle
    return pickle.loads(memoryview(header)[_SLOT.size:], buffers=parts)


# Between a worker rank and its local worker processes a frame travels as
# one message: u32 number of parts, u64 sizes of the header and of each
# part, then the header and the parts.
_COUNT = struct.Struct('<I')


def join_frame(header, parts):
    views = [memoryview(header).cast('B')] + [memoryview(p).cast('B') for p in parts]
    head = _COUNT.pack(len(parts)) + struct.pack(f'<{len(views)}Q', *(v.nbytes for v in views))
    return b''.join([head, *views])


def split_frame(data):
    """(header, parts): views of a message made by join_frame."""
    view = memoryview(data)
    (n,) = _COUNT.unpack_from(view)
    sizes = struct.unpack_from(f'<{n + 1}Q', view, _COUNT.size)
    at = _COUNT.size + 8 * (n + 1)
    pieces = []
    for size in sizes:
        pieces.append(view[at:at + size])
        at += size
    return pieces[0], pieces[1:]
