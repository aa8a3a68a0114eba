"""ctypes objects in shared memory: RawValue, RawArray, Value, Array.

The objects live in blocks of the shared heap (heap.BufferWrapper), so a
child sees the parent's writes and the other way round. Value and Array
wrap them with a lock (an RLock of the context unless told otherwise):
``get_lock()``, ``get_obj()``, and attribute access that takes the lock.

Three layers, each a few lines:
- placing: a ctypes type is laid over a fresh block, zero-filled by the
  native arena (``_new_value``), then initialised like an ordinary ctypes
  object;
- guarding: ``synchronized`` picks the wrapper class for the object's
  ctypes kind (scalar, char array, other array, structure) and the wrapper
  takes the lock around every access; attribute access goes through the
  native ``_locked_property`` descriptor, no Python frame per read;
- travelling: shared ctypes objects go to children as the process starts
  (in its arguments, or inherited by fork). The pickled form names the
  block, not the bytes, so the child maps the same memory; pickling one at
  any other time -- into a Queue, say -- raises RuntimeError, as with the
  stdlib.
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


def _ctype(typecode_or_type):
    """The ctypes type a one-letter code stands for; anything else as given."""
    return typecode_to_type.get(typecode_or_type, typecode_or_type)


#
# Placing: ctypes objects over blocks of the shared heap
#

def _new_value(type_):
    """An object of ctypes type `type_` over a fresh shared block, every byte
    zero: the native arena clears reused bytes and leaves fresh pages
    untouched, so a large array costs no memory until it is written."""
    return rebuild_ctype(type_, heap.BufferWrapper(ctypes.sizeof(type_)), None)


def _placed(type_, fill):
    """A shared object of `type_`, zero bytes until `fill(placed)` sets it."""
    placed = _new_value(type_)
    fill(placed)
    return placed


def _constructed(*init_args):
    """A filler that initialises as ``type_(*init_args)`` would."""
    return lambda placed: placed.__init__(*init_args)


def RawValue(typecode_or_type, *args):
    """A ctypes object in shared memory, initialised with `args`."""
    return _placed(_ctype(typecode_or_type), _constructed(*args))


def RawArray(typecode_or_type, size_or_initializer):
    """A ctypes array in shared memory: zeros of a length, or a copy of a
    sequence."""
    zeros = isinstance(size_or_initializer, int)
    length = size_or_initializer if zeros else len(size_or_initializer)
    fill = _constructed() if zeros else _constructed(*size_or_initializer)
    return _placed(_ctype(typecode_or_type) * length, fill)


def copy(obj):
    """A copy of ctypes object `obj` in shared memory: whole-object
    assignment through a pointer copies the bytes and the references that
    keep what they point to alive."""
    return _placed(type(obj), lambda placed: ctypes.pointer(placed).__setitem__(0, obj))


#
# Guarding: wrappers that hold the lock around every access
#

def _guarded(obj, lock, ctx):
    """`obj` itself for lock=False, else `obj` synchronized with `lock` (a
    new RLock of the context when lock is True or None)."""
    if lock is False:
        return obj
    context = ctx or get_context()
    # A fresh raw object is never synchronized already: wrap it directly.
    return _wrapper_class(type(obj))(obj, _usable_lock(lock, context), context)


def _usable_lock(lock, ctx):
    """The lock a Value or Array gets for its `lock` argument: a new RLock
    of `ctx` for True (or 1) and None, else the given lock, which must have
    an ``acquire`` method."""
    if lock is None or lock == True:  # noqa: E712  (1 means True here, as on stock)
        return ctx.RLock()
    if hasattr(lock, 'acquire'):
        return lock
    raise AttributeError(f"{lock!r} has no method 'acquire'")


def Value(typecode_or_type, *args, lock=True, ctx=None):
    """A RawValue wrapped with a lock (lock=False: the RawValue itself)."""
    return _guarded(RawValue(typecode_or_type, *args), lock, ctx)


def Array(typecode_or_type, size_or_initializer, *, lock=True, ctx=None):
    """A RawArray wrapped with a lock (lock=False: the RawArray itself)."""
    return _guarded(RawArray(typecode_or_type, size_or_initializer), lock, ctx)


def _wrapper_class(kind):
    """The synchronized wrapper class for objects of ctypes type `kind`."""
    if issubclass(kind, ctypes._SimpleCData):
        return Synchronized
    if issubclass(kind, ctypes.Array):
        return SynchronizedString if kind._type_ is ctypes.c_char else SynchronizedArray
    # A structure or union: one locked property per field, the class made
    # once per type.
    made = class_cache.get(kind)
    if made is None:
        fields = {field[0]: make_property(field[0]) for field in kind._fields_}
        made = type(f'Synchronized{kind.__name__}', (SynchronizedBase,), fields)
        class_cache[kind] = made
    return made


def synchronized(obj, lock=None, ctx=None):
    """Wrap ctypes object `obj` so that its attributes are used under `lock`."""
    assert not isinstance(obj, SynchronizedBase), 'object already synchronized'
    return _wrapper_class(type(obj))(obj, lock, ctx or get_context())


#
# Travelling: pickled while a child starts, rebuilt over the same block
#

def _travelling(shared, rebuild, *args):
    """The pickled form ``(rebuild, args)`` of `shared`, which may only be
    pickled while a child process starts (RuntimeError otherwise)."""
    assert_spawning(shared)
    return rebuild, args


def reduce_ctype(obj):
    kind, length = type(obj), None
    if issubclass(kind, ctypes.Array):
        # Array types are made on the fly and cannot be pickled by name:
        # send the item type and the length instead.
        kind, length = kind._type_, kind._length_
    return _travelling(obj, rebuild_ctype, kind, obj._wrapper, length)


def rebuild_ctype(type_, wrapper, length):
    kind = type_ if length is None else type_ * length
    if _ForkingPickler._extra_reducers.get(kind) is not reduce_ctype:
        _ForkingPickler.register(kind, reduce_ctype)
    placed = kind.from_buffer(wrapper.create_memoryview())
    # The block (and its arena's mapping) lives as long as the object.
    placed._wrapper = wrapper
    return placed


#
# Properties that take the lock
#

prop_cache = {}
class_cache = weakref.WeakKeyDictionary()


def make_property(name):
    """A data descriptor reading and writing attribute `name` of ``self._obj``
    between ``self.acquire()`` and ``self.release()``, as a property with
    those accessors would; native, so that ``v.value`` runs no Python frame."""
    prop = prop_cache.get(name)
    if prop is None:
        prop = prop_cache[name] = _locked_property(name)
    return prop


class SynchronizedBase(object):
    """A ctypes object with the lock that guards it."""

    def __init__(self, obj, lock=None, ctx=None):
        self._obj = obj
        self._lock = lock or (ctx or get_context()).RLock()
        # Instance attributes, looked up by the native locked properties.
        self.acquire, self.release = self._lock.acquire, self._lock.release

    def __enter__(self):
        return self._lock.__enter__()

    def __exit__(self, *args):
        return self._lock.__exit__(*args)

    def __reduce__(self):
        return _travelling(self, synchronized, self._obj, self._lock)

    def get_obj(self):
        return self._obj

    def get_lock(self):
        return self._lock

    def __repr__(self):
        return f'<{type(self).__name__} wrapper for {self._obj}>'


class Synchronized(SynchronizedBase):
    value = make_property('value')


class SynchronizedArray(SynchronizedBase):
    """Items and slices read and written under the lock."""

    def __len__(self):
        return len(self._obj)

    def __getitem__(self, i):
        with self._lock:
            return self._obj[i]

    def __setitem__(self, i, value):
        with self._lock:
            self._obj[i] = value

    def __getslice__(self, start, stop):
        return self[start:stop]

    def __setslice__(self, start, stop, values):
        self[start:stop] = values


class SynchronizedString(SynchronizedArray):
    value = make_property('value')
    raw = make_property('raw')
