"""Callables the C++ API tests (tests/api) run in host_pool workers."""

import ctypes
import os
import signal
import sys
import time

import mphost

INITIALIZED = []


class CustomError(Exception):
    pass


def init():
    INITIALIZED.append(os.getpid())


def initialized():
    return len(INITIALIZED)


def fail_init():
    raise RuntimeError('initializer refused')


def echo(value):
    return value


def type_name(value):
    return type(value).__name__


def add(a, b):
    return a + b


def pid():
    return os.getpid()


def env(name):
    return os.environ.get(name)


def cwd():
    return os.getcwd()


def raise_value_error(message):
    raise ValueError(message)


def raise_custom():
    raise CustomError('custom failure')


def big_int():
    return 2 ** 70


def a_set():
    return {1, 2, 3}


def int_keys():
    return {1: 'one'}


def die_by_sigkill():
    os.kill(os.getpid(), signal.SIGKILL)


def exit_now(code):
    os._exit(code)


def segfault():
    ctypes.string_at(0)


def sleep(seconds):
    time.sleep(seconds)
    return seconds


def describe(array):
    """What the worker sees of a shared array."""
    import numpy
    a = numpy.asarray(array)
    return (array.format, len(array), str(a.dtype), list(a.shape), float(a.sum()))


def wait_for_flag(array, seconds):
    """Waits until the application writes 42 into array[0] after the call
    was submitted (so only the same memory can show it); returns array[1]."""
    deadline = time.monotonic() + seconds
    while array[0] != 42:
        if time.monotonic() > deadline:
            return None
        time.sleep(0.001)
    return array[1]


def rss_kib():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    return -1


def touch_ends(array):
    """Reads the first and last items and reports the resident size growth."""
    import numpy
    before = rss_kib()
    a = numpy.asarray(array)
    first, last = float(a[0]), float(a[-1])
    return (first, last, rss_kib() - before, a.shape[0])


def scale(array, factor):
    import numpy
    a = numpy.asarray(array)
    a *= factor
    return float(a.sum())


def make_block(count):
    import numpy
    block = mphost.shared_array('d', count)
    numpy.asarray(block)[:] = numpy.arange(count)
    return block


def make_numpy(count):
    import numpy
    a = numpy.asarray(mphost.shared_array('q', count))
    a[:] = 7
    return a


def make_block_and_die(count):
    make_block(count)
    os.kill(os.getpid(), signal.SIGKILL)


def numpy_scalars():
    import numpy
    return [numpy.float64(1.5), numpy.int32(-3), numpy.bool_(True), numpy.float32(0.25)]


def interpreter_flags():
    """What the interpreter took from PYTHON* variables at start-up."""
    return {'hash_randomization': sys.flags.hash_randomization,
            'hash_seed': os.environ.get('PYTHONHASHSEED', '')}


def element(array, index):
    """array[index] (a tuple of ints) as numpy sees it: C order is checked
    against what the application wrote."""
    import numpy
    return float(numpy.asarray(array)[tuple(index)])


def make_grid(rows, cols):
    """A (rows, cols) float64 block: element [i, j] is i * 100 + j."""
    import numpy
    a = numpy.asarray(mphost.shared_array('d', (rows, cols)))
    a[:] = numpy.arange(rows)[:, None] * 100 + numpy.arange(cols)
    return a


def reshaped_block(count, rows):
    """A 1-D block returned as a (rows, count // rows) numpy view."""
    import numpy
    return numpy.asarray(mphost.shared_array('i', count)).reshape(rows, -1)
