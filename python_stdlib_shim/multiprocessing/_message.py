"""What a message is: the pickle that send() and put() write, recv() and get() read.

Every transport (a socket Connection, a channel end, a manager's stream)
carries ForkingPickler.dumps(obj) byte for byte, so that any reader takes
it: recv(), or recv_bytes() followed by any unpickler, as on the stdlib.
This module makes those bytes quickly and reads them back:

    _dumps(obj)              the pickle as one bytes object
    _dumps_for_channel(obj)  the same pickle, as a list of chunks when it
                             holds large payloads (a channel gathers them
                             straight into shared memory, unjoined)
    _unpickle_message(data)  the object; damaged data is UnpicklingError
    _Encoder                 the reusable pickler behind both (one per thread;
                             a manager's channel link keeps its own)
"""

import copyreg
import pickle
import struct
import threading

from _mphost import pickle_bytearray_overrun as _bytearray_overrun

from .context import reduction

__all__ = []  # private: reached through multiprocessing.connection

_ForkingPickler = reduction.ForkingPickler

# The protocol ForkingPickler.dumps uses by default.
_PROTOCOL = pickle.DEFAULT_PROTOCOL


class _Sink:
    __slots__ = ('write',)


class _Encoder:
    """ForkingPickler's output, byte for byte (same protocol, same reducers),
    from one pickler kept for reuse.

    Building a ForkingPickler copies the whole reducer table, which costs
    several times more than pickling a small message; this one is built
    once and rebuilt when reducers are registered.

    The pickler writes into a list of chunks instead of one growing buffer:
    the C pickler hands a payload of 64 KiB or more (a bytes object, the
    bytes of a numpy array) to write() as it is, between two frames, so a
    large payload is referenced here, not copied. `parts(obj)` returns
    those chunks; `dumps(obj)` joins them. `busy` is True while a pickle
    is being made (a reducer that sends re-enters: it must use another
    pickler).
    """

    __slots__ = ('pickler', 'chunks', 'key', 'busy')

    def __init__(self):
        self.pickler = None
        self.chunks = []
        self.key = None
        self.busy = False

    def _current_pickler(self):
        # The reducer tables change rarely; their sizes and the registration
        # count tell whether the kept pickler still sees them as they are.
        key = (len(copyreg.dispatch_table), len(_ForkingPickler._extra_reducers),
               _ForkingPickler._generation)
        if key != self.key or self.pickler is None:
            sink = _Sink()
            sink.write = self.chunks.append
            fresh = pickle.Pickler(sink, _PROTOCOL)
            fresh.dispatch_table = _ForkingPickler._reducer_table()
            self.pickler, self.key = fresh, key
        return self.pickler

    def parts(self, obj):
        pickler = self._current_pickler()
        chunks = self.chunks
        self.busy = True
        try:
            pickler.dump(obj)
            return chunks[:]
        finally:
            chunks.clear()
            pickler.clear_memo()
            self.busy = False

    def dumps(self, obj):
        chunks = self.parts(obj)
        return chunks[0] if len(chunks) == 1 else b''.join(chunks)

    def message(self, obj):
        """The pickle as a channel takes it: one bytes object, or the list
        of its chunks when it holds large payloads."""
        chunks = self.parts(obj)
        return chunks[0] if len(chunks) == 1 else chunks


_encoders = threading.local()


def _thread_encoder():
    """This thread's encoder, or None while it is busy (a finalizer or a
    reducer that sends while the thread pickles)."""
    encoder = getattr(_encoders, 'encoder', None)
    if encoder is None:
        encoder = _encoders.encoder = _Encoder()
    return None if encoder.busy else encoder


def _dumps(obj):
    """ForkingPickler.dumps(obj), with this thread's reusable pickler."""
    encoder = _thread_encoder()
    return _ForkingPickler.dumps(obj) if encoder is None else encoder.dumps(obj)


def _dumps_for_channel(obj):
    """The message `send(obj)` or `put(obj)` writes on a channel:
    ForkingPickler.dumps(obj), delivered as the list of its chunks when it
    has large payloads (the channel gathers them into one message)."""
    encoder = _thread_encoder()
    return _ForkingPickler.dumps(obj) if encoder is None else encoder.message(obj)


# What the unpickler raises on data that is not a pickle (as opposed to
# errors that the objects' own reconstructors raise, which pass through).
_DAMAGE = (pickle.UnpicklingError, EOFError, IndexError, struct.error)


# A byte no pickle opcode has: where it stands, the unpickler stops with
# exactly this error.
_NOT_AN_OPCODE = 0xff
_STOPPED_AT_IT = "invalid load key, '\\xff'."


def _loads_received(data):
    """ForkingPickler.loads(data), raising what it raises, but never
    reaching a BYTEARRAY8 opcode that declares more bytes than the data
    holds.

    At such an opcode Python 3.11's unpickler first allocates the declared
    length; when that fails, CPython releases a half-made bytearray whose
    export count was never set, which can print "SystemError: deallocated
    bytearray object has exported buffers" on stderr (about one garbage
    message in a thousand; stock multiprocessing prints it too). Here the
    opcode is replaced by a byte the unpickler stops at, so everything
    before it runs (and raises) as it would, and the outcome of the
    opcode itself is raised from a probe of the same allocation:
    MemoryError when it fails, "pickle data was truncated" otherwise.
    """
    overrun = _bytearray_overrun(data)
    if overrun is None:
        return _ForkingPickler.loads(data)
    offset, _length, allocatable = overrun
    stopped = bytearray(data)
    stopped[offset] = _NOT_AN_OPCODE
    try:
        _ForkingPickler.loads(stopped)
    except pickle.UnpicklingError as exc:
        if str(exc) != _STOPPED_AT_IT:
            raise
    else:  # cannot happen: no STOP comes before the opcode
        return _ForkingPickler.loads(data)
    if not allocatable:
        raise MemoryError()
    raise pickle.UnpicklingError('pickle data was truncated')


def _unpickle_message(data):
    """Unpickle a received message; damaged data gives UnpicklingError.

    A truncated pickle would otherwise raise EOFError, which callers take
    for "the peer is gone"; garbage would raise whatever the unpickler
    tripped on.
    """
    try:
        return _loads_received(data)
    except _DAMAGE as exc:
        head = bytes(memoryview(data)[:16])
        raise pickle.UnpicklingError(
            'received a message of %d bytes that is not a valid pickle '
            '(starts with %r): %s' % (len(data), head, exc)) from exc
    except ValueError as exc:
        text = str(exc)
        if 'pickle protocol' in text or 'opcode' in text:
            raise pickle.UnpicklingError(
                'received a message of %d bytes that is not a valid pickle: %s'
                % (len(data), exc)) from exc
        raise
