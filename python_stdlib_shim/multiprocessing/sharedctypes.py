"""ctypes objects in shared memory: RawValue, RawArray, Value, Array.

The objects live in blocks of the shared heap (heap.BufferWrapper), so a
child sees the parent's writes and the other way round. Value and Array
wrap them with a lock (an RLock of the context unless told otherwise):
``get_lock()``, ``get_obj()``, and attribute access that takes the lock.

Shared ctypes objects go to children as the process starts (in its
arguments, or inherited by fork); pickling one at any other time -- into a
Queue, say -- raises RuntimeError, as with the stdlib.
"""

import ctypes
import weakref

from _multiprocessing import _locked_property

from . import heap
from . import get_context

from .context import reduction, assert_spawning
_ForkingPickler = reduction.ForkingPickler

__all__ = ['RawValue', 'RawArray', 'Value', 'Array', 'copy', 'synchronized']

typecode_to_type = {
    'c': ctypes.c_char, 'u': ctypes.c_wchar,
    'b': ctypes.c_byte, 'B': ctypes.c_ubyte,
    'h': ctypes.c_short, 'H': ctypes.c_ushort,
    'i': ctypes.c_int, 'I': ctypes.c_uint,
    'l': ctypes.c_long, 'L': ctypes.c_ulong,
    'q': ctypes.c_longlong, 'Q': ctypes.c_ulonglong,
    'f': ctypes.c_float, 'd': ctypes.c_double,
}


def _new_value(type_):
    """An uninitialised object of ctypes type `type_` in a fresh shared block."""
    wrapper = heap.BufferWrapper(ctypes.sizeof(type_))
    return rebuild_ctype(type_, wrapper, None)


def RawValue(typecode_or_type, *args):
    """A ctypes object in shared memory, initialised with `args`."""
    type_ = typecode_to_type.get(typecode_or_type, typecode_or_type)
    obj = _new_value(type_)
    # A reused block holds old bytes: zero it before the constructor runs.
    ctypes.memset(ctypes.addressof(obj), 0, ctypes.sizeof(obj))
    obj.__init__(*args)
    return obj


def RawArray(typecode_or_type, size_or_initializer):
    """A ctypes array in shared memory: zeros of a length, or a copy of a
    sequence."""
    type_ = typecode_to_type.get(typecode_or_type, typecode_or_type)
    if isinstance(size_or_initializer, int):
        obj = _new_value(type_ * size_or_initializer)
        ctypes.memset(ctypes.addressof(obj), 0, ctypes.sizeof(obj))
        return obj
    obj = _new_value(type_ * len(size_or_initializer))
    obj.__init__(*size_or_initializer)
    return obj


def _with_lock(obj, lock, ctx):
    if lock is False:
        return obj
    if lock in (True, None):
        ctx = ctx or get_context()
        lock = ctx.RLock()
    if not hasattr(lock, 'acquire'):
        raise AttributeError("%r has no method 'acquire'" % lock)
    return synchronized(obj, lock, ctx=ctx)


def Value(typecode_or_type, *args, lock=True, ctx=None):
    """A RawValue wrapped with a lock (lock=False: the RawValue itself)."""
    return _with_lock(RawValue(typecode_or_type, *args), lock, ctx)


def Array(typecode_or_type, size_or_initializer, *, lock=True, ctx=None):
    """A RawArray wrapped with a lock (lock=False: the RawArray itself)."""
    return _with_lock(RawArray(typecode_or_type, size_or_initializer), lock, ctx)


def copy(obj):
    """A copy of ctypes object `obj` in shared memory."""
    new_obj = _new_value(type(obj))
    ctypes.pointer(new_obj)[0] = obj
    return new_obj


def synchronized(obj, lock=None, ctx=None):
    """Wrap ctypes object `obj` so that its attributes are used under `lock`."""
    assert not isinstance(obj, SynchronizedBase), 'object already synchronized'
    ctx = ctx or get_context()
    if isinstance(obj, ctypes._SimpleCData):
        return Synchronized(obj, lock, ctx)
    if isinstance(obj, ctypes.Array):
        if obj._type_ is ctypes.c_char:
            return SynchronizedString(obj, lock, ctx)
        return SynchronizedArray(obj, lock, ctx)
    cls = type(obj)
    try:
        scls = class_cache[cls]
    except KeyError:
        fields = {field[0]: make_property(field[0]) for field in cls._fields_}
        scls = class_cache[cls] = type('Synchronized' + cls.__name__, (SynchronizedBase,), fields)
    return scls(obj, lock, ctx)


#
# Pickling: only to start a child, which maps the same block
#

def reduce_ctype(obj):
    assert_spawning(obj)
    if isinstance(obj, ctypes.Array):
        return rebuild_ctype, (obj._type_, obj._wrapper, obj._length_)
    return rebuild_ctype, (type(obj), obj._wrapper, None)


def rebuild_ctype(type_, wrapper, length):
    if length is not None:
        type_ = type_ * length
    _ForkingPickler.register(type_, reduce_ctype)
    obj = type_.from_buffer(wrapper.create_memoryview())
    # Keeps the block (and so the arena's mapping) alive with the object.
    obj._wrapper = wrapper
    return obj


#
# Properties that take the lock
#

prop_cache = {}
class_cache = weakref.WeakKeyDictionary()


def make_property(name):
    """A data descriptor reading and writing attribute `name` of ``self._obj``
    between ``self.acquire()`` and ``self.release()``, as a property with
    those accessors would; native, so that ``v.value`` runs no Python frame."""
    try:
        return prop_cache[name]
    except KeyError:
        prop = prop_cache[name] = _locked_property(name)
        return prop


class SynchronizedBase(object):
    """A ctypes object with the lock that guards it."""

    def __init__(self, obj, lock=None, ctx=None):
        self._obj = obj
        if lock:
            self._lock = lock
        else:
            ctx = ctx or get_context()
            self._lock = ctx.RLock()
        self.acquire = self._lock.acquire
        self.release = self._lock.release

    def __enter__(self):
        return self._lock.__enter__()

    def __exit__(self, *args):
        return self._lock.__exit__(*args)

    def __reduce__(self):
        assert_spawning(self)
        return synchronized, (self._obj, self._lock)

    def get_obj(self):
        return self._obj

    def get_lock(self):
        return self._lock

    def __repr__(self):
        return '<%s wrapper for %s>' % (type(self).__name__, self._obj)


class Synchronized(SynchronizedBase):
    value = make_property('value')


class SynchronizedArray(SynchronizedBase):

    def __len__(self):
        return len(self._obj)

    def __getitem__(self, i):
        with self:
            return self._obj[i]

    def __setitem__(self, i, value):
        with self:
            self._obj[i] = value

    def __getslice__(self, start, stop):
        with self:
            return self._obj[start:stop]

    def __setslice__(self, start, stop, values):
        with self:
            self._obj[start:stop] = values


class SynchronizedString(SynchronizedArray):
    value = make_property('value')
    raw = make_property('raw')
