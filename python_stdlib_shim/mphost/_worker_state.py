"""Worker state and the worker_init / worker_exit hooks of mphost.Pool.

A pool with any of them starts its workers with ``start(setup)`` as the
stdlib's initializer: it makes the worker's state dict (worker_state=True),
runs the user's ``initializer(*initargs)``, then ``worker_init`` (given the
state dict, or nothing), and registers ``worker_exit`` to run when the
worker process exits cleanly: after its last task when the pool closes, or
when maxtasksperchild recycles it (a worker killed by terminate() or by a
signal runs nothing). What worker_exit returns is put on the pool's exit
queue (a SimpleQueue: put never blocks); the parent collects it in
``get_exit_results()``.

With worker_state, the task's function travels as a Stateful wrapper that
the worker unpickles as ``functools.partial(func, state)``: no Python frame
is added between the pool and the function.
"""

import functools
import sys

from multiprocessing import util

from . import _serializer

__all__ = []

# The state dict of this worker process (None outside a worker with state).
_state = None


def current():
    if _state is None:
        raise RuntimeError('this process is not a worker of a pool with worker_state=True')
    return _state


class Setup:
    """What start() needs, made by the pool; pickled to spawned workers."""

    __slots__ = ('initializer', 'initargs', 'with_state', 'on_start', 'on_exit', 'exits')

    def __init__(self, initializer, initargs, with_state, on_start, on_exit, exits):
        self.initializer, self.initargs = initializer, initargs
        self.with_state = with_state
        self.on_start, self.on_exit, self.exits = on_start, on_exit, exits

    def __getstate__(self):
        return tuple(getattr(self, name) for name in self.__slots__)

    def __setstate__(self, state):
        for name, value in zip(self.__slots__, state):
            setattr(self, name, value)


def start(setup):
    """The initializer of every worker of the pool."""
    global _state
    reveal = _serializer.reveal
    if setup.with_state:
        _state = {}
    if setup.initializer is not None:
        reveal(setup.initializer)(*[reveal(a) for a in setup.initargs])
    args = (_state,) if setup.with_state else ()
    if setup.on_start is not None:
        reveal(setup.on_start)(*args)
    if setup.on_exit is not None:
        util.Finalize(None, _on_exit, args=(reveal(setup.on_exit), args, setup.exits),
                      exitpriority=100)


def _on_exit(hook, args, exits):
    value = hook(*args)
    try:
        exits.put(_serializer.sendable(value))
    except Exception as e:
        sys.stderr.write(f'mphost.Pool: the result of worker_exit could not be sent: {e!r}\n')


def collect(exits, into):
    """Move what the workers put on `exits` so far into the list `into`."""
    if exits is None:
        return
    reader = exits._reader
    try:
        while reader.poll(0):
            into.append(exits.get())
    except (EOFError, OSError):
        pass


class Stateful:
    """The function of a call of a pool with worker_state: the worker gets
    it as partial(func, its state)."""

    __slots__ = ('func',)

    def __init__(self, func):
        self.func = func

    def __call__(self, *args, **kwds):
        return self.func(current(), *args, **kwds)

    def __reduce__(self):
        return _bind, (self.func,)


def _bind(func):
    return functools.partial(func, current())
