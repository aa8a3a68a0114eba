"""``serializer="cloudpickle"`` of mphost.Pool: what travels by value.

The pool's queues keep pickling as they do (ForkingPickler); what needs
cloudpickle travels inside them wrapped:

- the task's function, as a Task: cloudpickled once per call (the bytes
  are kept and shared by every chunk of the call), revived in the worker
  once per distinct function (a small cache keyed by those bytes) as a
  runner that calls it and readies its result for the trip back;
- each argument (map item, starmap tuple, apply argument) that is not of a
  plain kind, as a Parcel cloudpickled on its own. Plain kinds (numbers,
  strings, bytes, None, numpy arrays of non-object dtype, and short
  tuples and lists of those) go as they are: plain pickle sends them, and
  large arrays keep the channel's zero-copy path;
- a result: as it is when it is of a plain kind; otherwise it is pickled
  with plain pickle if plain pickle takes it, else with cloudpickle (a
  returned lambda, an instance of a class made inside the task).

Cloudpickle's bytes are ordinary pickles that only need the cloudpickle
package on the side that reads them. A failure to cloudpickle happens
where the queue pickles, so the call fails as it does with the stdlib
when a task cannot be pickled.
"""

import pickle

__all__ = []

NAMES = (None, 'pickle', 'cloudpickle')

_SCALARS = frozenset((type(None), bool, int, float, complex, str, bytes))
# Containers whose few items are looked at one by one.
_SHORT = 16


def check(serializer):
    """The serializer option, checked: None (stdlib pickling) or
    'cloudpickle'; 'pickle' is None."""
    if serializer is not None and not isinstance(serializer, str):
        raise TypeError(f'serializer must be a str or None, not {type(serializer).__name__}')
    if serializer not in NAMES:
        raise ValueError(f"serializer must be 'pickle' or 'cloudpickle', not {serializer!r}")
    if serializer == 'cloudpickle':
        _cloudpickle()
        return serializer
    return None


def _cloudpickle():
    try:
        import cloudpickle
    except ImportError as e:
        raise ImportError("serializer='cloudpickle' needs the cloudpickle package "
                          "(Debian: python3-cloudpickle)") from e
    return cloudpickle


def _dumps(obj):
    return _cloudpickle().dumps(obj, protocol=pickle.DEFAULT_PROTOCOL)


def _is_array(obj):
    kind = type(obj)
    return (kind.__name__ == 'ndarray' and kind.__module__ == 'numpy'
            and not obj.dtype.hasobject)


def plain(obj):
    """True when plain pickle sends obj as cloudpickle would."""
    kind = type(obj)
    if kind in _SCALARS:
        return True
    if kind is tuple or kind is list:
        if len(obj) > _SHORT:
            return False
        return all(type(x) in _SCALARS or _is_array(x) for x in obj)
    return _is_array(obj)


class Parcel:
    """A value that travels cloudpickled; it arrives as the value itself."""

    __slots__ = ('value', 'data')

    def __init__(self, value):
        self.value = value
        self.data = None

    def __reduce__(self):
        if self.data is None:
            self.data = _dumps(self.value)
        return pickle.loads, (self.data,)


def parcel(value):
    return value if plain(value) else Parcel(value)


def parcels(iterable):
    """The items of iterable, each made ready to travel (lazily; with its
    len() when it has one)."""
    if hasattr(iterable, '__len__'):
        return _SizedParcels(iterable)
    return map(parcel, iterable)


class _SizedParcels:
    __slots__ = ('items',)

    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __iter__(self):
        return map(parcel, self.items)


def reveal(obj):
    """What a Parcel or Task stands for (a forked worker inherits them
    unpickled)."""
    if isinstance(obj, Parcel):
        return obj.value
    if isinstance(obj, Task):
        return obj.func
    return obj


class Task:
    """The function of a call, cloudpickled once; in the worker it becomes
    a runner (see _revive)."""

    __slots__ = ('func', 'with_state', 'data')

    def __init__(self, func, with_state):
        self.func, self.with_state = func, with_state
        self.data = None

    def __call__(self, *args, **kwds):
        # Called where it was made (a worker inherited it by fork).
        return _revive(_dumps(self.func) if self.data is None else self.data,
                       self.with_state)(*args, **kwds)

    def __reduce__(self):
        if self.data is None:
            self.data = _dumps(self.func)
        return _revive, (self.data, self.with_state)


class _Runner:
    __slots__ = ('func', 'state')

    def __init__(self, func, state):
        self.func, self.state = func, state

    def __call__(self, *args, **kwds):
        if self.state is None:
            return sendable(self.func(*args, **kwds))
        return sendable(self.func(self.state, *args, **kwds))


_runners = {}
_RUNNERS_KEPT = 64


def _revive(data, with_state):
    key = (data, with_state)
    runner = _runners.get(key)
    if runner is None:
        state = None
        if with_state:
            from . import _worker_state
            state = _worker_state.current()
        if len(_runners) >= _RUNNERS_KEPT:
            _runners.clear()
        runner = _runners[key] = _Runner(pickle.loads(data), state)
    return runner


class _Pickled:
    """A result pickled in the worker (plainly or with cloudpickle); the
    parent unpickles it into the value."""

    __slots__ = ('data',)

    def __init__(self, data):
        self.data = data

    def __reduce__(self):
        return pickle.loads, (self.data,)


def sendable(value):
    """value, ready for the trip to the parent (see the module's docstring)."""
    if plain(value):
        return value
    if type(value) is dict and len(value) <= _SHORT and all(map(plain, value.values())) \
            and all(type(k) in _SCALARS for k in value):
        return value
    from multiprocessing.reduction import ForkingPickler
    try:
        return _Pickled(bytes(ForkingPickler.dumps(value)))
    except Exception:
        pass
    try:
        return _Pickled(_dumps(value))
    except Exception:
        return value        # the pool reports it (MaybeEncodingError)
