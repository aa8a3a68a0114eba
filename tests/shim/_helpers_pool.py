"""Functions that pool workers run in the pool tests.

They live at module level of an importable module, so that spawn and
forkserver workers can unpickle them.
"""

import os
import signal
import sys
import time

TIMEOUT = 60

# Set in each worker by the initializer tests.
initialized_with = None


def sqr(x, wait=0.0):
    time.sleep(wait)
    return x * x


def mul(x, y):
    return x * y


def identity(x):
    return x


class CountedObject:
    """Counts its live instances in the process that holds them."""
    n_instances = 0

    def __new__(cls):
        cls.n_instances += 1
        return object.__new__(cls)

    def __del__(self):
        type(self).n_instances -= 1


def big_result(x, size=48 * 1024):
    """A result bigger than a pipe's buffer."""
    return bytes([x % 256]) * size


def add_kw(x, *, plus=0):
    return x + plus


def get_pid(x=None):
    return os.getpid()


def nap_then_return(pair):
    value, seconds = pair
    time.sleep(seconds)
    return value


def raise_runtime_error(value):
    raise RuntimeError(value)  # a line the remote traceback shows


def raise_key_error():
    raise KeyError('key')


def fail_on(x, bad):
    if x == bad:
        raise ValueError(f'bad item {x}')
    return x * x


def unpicklable_result():
    return lambda: 42


def unpicklable_at(x, bad):
    return (lambda: x) if x == bad else x


class Unpicklable:
    def __reduce__(self):
        raise RuntimeError('cannot pickle')


class UnpicklableError(Exception):
    """An exception that cannot travel back to the parent."""

    def __init__(self):
        super().__init__('stays here')
        self.handle = lambda: None


def raise_unpicklable_error():
    raise UnpicklableError()


class TwoArgumentError(Exception):
    """Pickles, but cannot be rebuilt from its args by unpickling."""

    def __init__(self, a, b):
        super().__init__(f'{a}-{b}')


def raise_two_argument_error(x):
    raise TwoArgumentError(x, 2)


def init_record(value):
    global initialized_with
    initialized_with = value


def read_initialized(_=None):
    return initialized_with


def kill_self(x, signum=signal.SIGKILL):
    """Die by `signum` when x is negative; otherwise return x after a nap."""
    if x < 0:
        os.kill(os.getpid(), signum)
        time.sleep(TIMEOUT)
    time.sleep(0.01)
    return x


def exit_now(code):
    os._exit(code)


def slow_unless_negative(x, nap=0.02):
    if x < 0:
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(TIMEOUT)
    time.sleep(nap)
    return x * 10


def pid_after_nap(_):
    time.sleep(0.05)
    return os.getpid()


def raise_system_exit(code):
    sys.exit(code)


class SayWhenError(ValueError):
    pass


def exception_throwing_generator(total, when):
    """Yields 0..total-1, raising SayWhenError at position `when` (-1: at once)."""
    if when == -1:
        raise SayWhenError('Somebody said when')
    for i in range(total):
        if i == when:
            raise SayWhenError('Somebody said when')
        yield i


class SpecialIterable:
    """Claims a length but raises on iteration."""

    def __iter__(self):
        return self

    def __next__(self):
        raise SayWhenError

    def __len__(self):
        return 1


def _rebuild_slowly(parent_pid, seconds, payload):
    if os.getpid() != parent_pid:
        time.sleep(seconds)
    return payload


class SlowToLoad:
    """An argument whose unpickling takes `seconds` in any process but the
    one that made it: a worker holds its task for that long before it can
    run it."""

    def __init__(self, seconds, payload=b''):
        self.seconds = seconds
        self.payload = payload
        self.parent_pid = os.getpid()

    def __reduce__(self):
        return _rebuild_slowly, (self.parent_pid, self.seconds, self.payload)


def _refuse_to_rebuild(message):
    raise ValueError(message)


class BrokenToLoad:
    """Pickles fine; unpickling raises ValueError (in any process)."""

    def __reduce__(self):
        return _refuse_to_rebuild, ('cannot be rebuilt here',)
