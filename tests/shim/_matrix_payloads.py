"""Payloads of the payload matrix, and the canonical description a receiver
gives of what it got.

The same module is imported by the matrix runner under /usr/bin/python3 and
under mphost, in the parent and in every child, so a description is
comparable text: two receivers that got the same thing describe it with the
same string, whatever the interpreter.

PAYLOADS maps a name to a builder; builders make a fresh object each time
(a read-only array stays read-only, nothing is shared between cells).
pandas is imported only by the builders and descriptions that need it, so a
spawned child that never sees a DataFrame does not pay for the import.
"""

import hashlib
import pickle

import numpy as np


# ---------------------------------------------------------------- custom reduce

def _rebuild_reduce_ex(value, protocols):
    return ReduceExRecorder(value, protocols)


class ReduceExRecorder:
    """Records, in order, the protocol of every pickling it went through."""

    def __init__(self, value, protocols=()):
        self.value = value
        self.protocols = tuple(protocols)

    def __reduce_ex__(self, protocol):
        return _rebuild_reduce_ex, (self.value, self.protocols + (protocol,))


def _rebuild_reduce(value, count):
    return ReduceRecorder(value, count)


class ReduceRecorder:
    """Only __reduce__ (no protocol given): records how many times it was pickled."""

    def __init__(self, value, count=0):
        self.value = value
        self.count = count

    def __reduce__(self):
        return _rebuild_reduce, (self.value, self.count + 1)


def _rebuild_buffer(data, protocols):
    return BufferRecorder(data, protocols)


class BufferRecorder:
    """Reduces like numpy does: a PickleBuffer from protocol 5 on, bytes below.
    The receiver records what type of data its rebuild function was given."""

    def __init__(self, data, protocols=()):
        self.data = data
        self.protocols = tuple(protocols)

    def __reduce_ex__(self, protocol):
        if protocol >= 5:
            return _rebuild_buffer, (pickle.PickleBuffer(self.data), self.protocols + (protocol,))
        return _rebuild_buffer, (bytes(self.data), self.protocols + (protocol,))


class StateObject:
    """A plain instance with __getstate__/__setstate__."""

    def __init__(self, a, b):
        self.a = a
        self.b = b

    def __getstate__(self):
        return {'a': self.a, 'b': self.b, 'calls': getattr(self, 'calls', 0) + 1}

    def __setstate__(self, state):
        self.__dict__.update(state)


# ---------------------------------------------------------------- payloads

def _readonly(a):
    a.flags.writeable = False
    return a


def _frame_mixed():
    import pandas as pd
    return pd.DataFrame({
        'i': np.arange(5, dtype=np.int64),
        'f': np.linspace(0, 1, 5),
        's': ['a', 'bb', 'ccc', 'd', 'e'],
        'c': pd.Categorical(['x', 'y', 'x', 'z', 'y']),
        't': pd.date_range('2024-01-01', periods=5, freq='D'),
        'b': [True, False, True, True, False],
    }, index=pd.Index([10, 20, 30, 40, 50], name='key'))


def _frame_large():
    import pandas as pd
    n = 60000
    return pd.DataFrame({'x': np.arange(n, dtype=np.float64), 'y': np.arange(n, dtype=np.int32),
                         'z': np.arange(n, dtype=np.float32) * 0.5})


def _frame_multiindex():
    import pandas as pd
    idx = pd.MultiIndex.from_product([['a', 'b'], [1, 2, 3]], names=['l', 'n'])
    return pd.DataFrame({'v': np.arange(6.0)}, index=idx)


def _series():
    import pandas as pd
    return pd.Series(np.arange(7, dtype=np.float32) / 3, name='third', index=list('abcdefg'))


def _series_large():
    import pandas as pd
    return pd.Series(np.arange(200000, dtype=np.int64))


def _structured():
    dt = np.dtype([('a', '<i4'), ('b', '>f8'), ('c', 'U3')])
    return np.array([(1, 2.5, 'x'), (-3, 0.25, 'yz')], dtype=dt)


def _structured_nested():
    dt = np.dtype([('pos', '<f4', (3,)), ('id', '>u2'), ('tag', 'S2')])
    return np.zeros(4, dtype=dt)


def _object_array():
    a = np.empty(4, dtype=object)
    a[:] = [1, 'two', None, (3, 4.0)]
    return a


def _shared_twice():
    a = np.arange(10)
    return (a, a, a[2:5])


PAYLOADS = {
    'np.bool': lambda: np.array([True, False, True]),
    'np.int8': lambda: np.arange(-5, 5, dtype=np.int8),
    'np.int16': lambda: np.arange(-5, 5, dtype=np.int16),
    'np.int32': lambda: np.arange(-5, 5, dtype=np.int32),
    'np.int64': lambda: np.arange(-5, 5, dtype=np.int64),
    'np.uint8': lambda: np.arange(10, dtype=np.uint8),
    'np.uint16': lambda: np.arange(10, dtype=np.uint16),
    'np.uint32': lambda: np.arange(10, dtype=np.uint32),
    'np.uint64': lambda: np.arange(10, dtype=np.uint64),
    'np.float16': lambda: np.linspace(-1, 1, 9, dtype=np.float16),
    'np.float32': lambda: np.linspace(-1, 1, 9, dtype=np.float32),
    'np.float64': lambda: np.linspace(-1, 1, 9),
    'np.complex64': lambda: (np.arange(4) + 1j * np.arange(4)).astype(np.complex64),
    'np.complex128': lambda: np.arange(4) - 2j * np.arange(4),
    'np.datetime64': lambda: np.array(['2024-01-01', '2024-02-29', 'NaT'], dtype='datetime64[ns]'),
    'np.timedelta64': lambda: np.array([1, 2, -3], dtype='timedelta64[s]'),
    'np.unicode': lambda: np.array(['a', 'bé', 'ĉĉĉ'], dtype='<U4'),
    'np.bytes': lambda: np.array([b'ab', b'c'], dtype='S3'),
    'np.structured': _structured,
    'np.structured nested': _structured_nested,
    'np.object': _object_array,
    'np.big-endian int32': lambda: np.arange(6, dtype='>i4'),
    'np.big-endian float64': lambda: np.linspace(0, 1, 6).astype('>f8'),
    'np.big-endian large': lambda: np.arange(300000, dtype='>f8'),
    'np.fortran 2-d': lambda: np.asfortranarray(np.arange(12.0).reshape(3, 4)),
    'np.fortran large': lambda: np.asfortranarray(np.arange(400 * 400, dtype=np.float64).reshape(400, 400)),
    'np.view strided': lambda: np.arange(20)[::3],
    'np.view transposed': lambda: np.arange(12).reshape(3, 4).T,
    'np.view offset': lambda: np.arange(100, dtype=np.int16)[7:40],
    'np.0-d': lambda: np.array(3.5),
    'np.empty': lambda: np.empty(0, dtype=np.float64),
    'np.empty 2-d': lambda: np.zeros((3, 0), dtype=np.int32),
    'np.tiny': lambda: np.array([7], dtype=np.int64),
    'np.64 KiB less 8': lambda: np.ones(8191),
    'np.64 KiB': lambda: np.ones(8192),
    'np.large 2 MiB': lambda: np.arange(262144, dtype=np.float64),
    'np.read-only': lambda: _readonly(np.arange(10.0)),
    'np.read-only large': lambda: _readonly(np.arange(200000, dtype=np.int64)),
    'np.frombuffer bytes': lambda: np.frombuffer(b'\1\0\0\0' * 4, np.int32),
    'np.scalar float32': lambda: np.float32(1.5),
    'np.scalar int64': lambda: np.int64(-7),
    'pd.DataFrame mixed': _frame_mixed,
    'pd.DataFrame large': _frame_large,
    'pd.DataFrame multiindex': _frame_multiindex,
    'pd.Series': _series,
    'pd.Series large': _series_large,
    'bytes small': lambda: b'abc\0def',
    'bytes empty': lambda: b'',
    'bytes 2 MiB': lambda: bytes(range(256)) * 8192,
    'bytearray small': lambda: bytearray(b'xyz'),
    'bytearray 100 KiB': lambda: bytearray(b'\x07' * 102400),
    'memoryview': lambda: memoryview(b'abcdef'),
    'PickleBuffer': lambda: pickle.PickleBuffer(bytearray(b'pb' * 10)),
    'PickleBuffer large': lambda: pickle.PickleBuffer(bytearray(200000)),
    'str large': lambda: 'é' * 600000,
    'list of ints large': lambda: list(range(100000)),
    'nested mixed': lambda: {'arr': np.arange(5), 'raw': [b'x' * 70000, bytearray(b'y')],
                             'meta': ({'k': np.float64(2.0)}, None, 'text')},
    'nested with frame': lambda: [_series(), (np.ones((2, 2), order='F'), {'b': b'q'})],
    'nested shared array': _shared_twice,
    'custom __reduce_ex__': lambda: ReduceExRecorder({'x': 1}),
    'custom __reduce__': lambda: ReduceRecorder([1, 2]),
    'custom buffer reduce': lambda: BufferRecorder(bytearray(b'buf' * 30000)),
    'custom state': lambda: StateObject(np.arange(3), 'b'),
}


def build(name):
    return PAYLOADS[name]()


# ---------------------------------------------------------------- description

def _digest(data):
    return hashlib.sha1(data).hexdigest()[:16]


def _describe_array(a):
    dt = a.dtype
    parts = ['ndarray', 'dtype=%s' % dt.str]
    if dt.fields is not None or dt.subdtype is not None:
        parts.append('descr=%s' % (dt.descr,))
    parts += ['shape=%s' % (a.shape,), 'strides=%s' % (a.strides,),
              'C=%d F=%d' % (a.flags.c_contiguous, a.flags.f_contiguous),
              'writeable=%d aligned=%d' % (a.flags.writeable, a.flags.aligned)]
    if dt.hasobject:
        parts.append('values=%r' % (a.tolist(),))
    else:
        parts.append('data=%s' % _digest(np.ascontiguousarray(a).tobytes()))
    return ' '.join(parts)


def _describe_pandas(x):
    import pandas as pd
    kind = type(x).__name__
    digest = _digest(pd.util.hash_pandas_object(x, index=True).to_numpy().tobytes())
    if isinstance(x, pd.DataFrame):
        cols = [(str(c), str(x[c].dtype), x[c].to_numpy().flags.writeable) for c in x.columns]
        return '%s shape=%s columns=%s index=%s/%s values=%s' % (
            kind, x.shape, cols, type(x.index).__name__, list(x.index.names), digest)
    return '%s name=%r dtype=%s len=%d index=%s writeable=%d values=%s' % (
        kind, x.name, x.dtype, len(x), type(x.index).__name__,
        x.to_numpy().flags.writeable, digest)


def describe(x, seen=None):
    """The canonical text of x as received. An object met twice in one
    payload (pickle keeps identity) is described by its first position."""
    if seen is None:
        seen = {}
    if not isinstance(x, (int, float, complex, str, bytes, type(None))):
        if id(x) in seen:
            return 'same-object-as#%d' % seen[id(x)][0]
        seen[id(x)] = (len(seen), x)
    t = type(x)
    if isinstance(x, np.ndarray):
        return _describe_array(x)
    if isinstance(x, np.generic):
        return '%s dtype=%s value=%r' % (t.__name__, x.dtype.str, x.item())
    if t.__module__.startswith('pandas'):
        return _describe_pandas(x)
    if t in (bytes, bytearray):
        head = bytes(x[:16])
        return '%s len=%d head=%r sha=%s' % (t.__name__, len(x), head, _digest(bytes(x)))
    if t is memoryview:
        return 'memoryview len=%d readonly=%d sha=%s' % (x.nbytes, x.readonly, _digest(x.tobytes()))
    if t is pickle.PickleBuffer:
        m = x.raw()
        return 'PickleBuffer len=%d readonly=%d sha=%s' % (m.nbytes, m.readonly, _digest(m.tobytes()))
    if t is str:
        return 'str len=%d sha=%s' % (len(x), _digest(x.encode('utf-8', 'surrogatepass')))
    if t in (int, float, bool, complex, type(None)):
        return repr(x)
    if t in (list, tuple):
        inner = ', '.join(describe(v, seen) for v in x)
        if len(x) > 32:
            inner = '%d items sha=%s' % (len(x), _digest(inner.encode()))
        return '%s[%s]' % (t.__name__, inner)
    if t is dict:
        return 'dict{%s}' % ', '.join('%r: %s' % (k, describe(v, seen)) for k, v in x.items())
    if t is ReduceExRecorder:
        return 'ReduceExRecorder value=%r protocols=%r' % (x.value, x.protocols)
    if t is ReduceRecorder:
        return 'ReduceRecorder value=%r count=%d' % (x.value, x.count)
    if t is BufferRecorder:
        data = x.data
        ro = memoryview(data).readonly
        return 'BufferRecorder data=%s readonly=%d len=%d protocols=%r' % (
            type(data).__name__, ro, len(memoryview(data).cast('B')), x.protocols)
    if t is StateObject:
        return 'StateObject a=%s b=%r calls=%r' % (describe(x.a, seen), x.b, x.__dict__.get('calls'))
    if isinstance(x, BaseException):
        return describe_error(x)
    return '%s.%s %r' % (t.__module__, t.__qualname__, x)


def describe_error(e):
    """An exception as text: its type and message (what a user reads)."""
    return 'error %s: %s' % (type(e).__name__, str(e)[:300])


def describe_safely(x):
    try:
        return describe(x)
    except Exception as e:  # a description that itself fails is a result too
        return 'describe failed: ' + describe_error(e)
