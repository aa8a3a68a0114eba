"""mphost.Pool: multiprocessing.pool.Pool with opt-in extras.

A subclass of the stdlib's Pool, so every stdlib method, every isinstance
check and every ``except`` clause keeps working. The bases cooperate: each
__init__ and each call takes its own keyword options and passes the rest on
with super().

This class takes the supervision options (time limits, memory bound,
restart limit) and offers insights(); the policy behind them is
mphost._pool_watch (parent) and mphost._pool_slot (workers), reached by the
pool's engine through its hooks. With none of them set the pool behaves as
the stdlib's."""

import contextlib
import math
import numbers

import multiprocessing.pool

from ._pool_calls import PoolCalls
from ._pool_watch import Supervisor

__all__ = ['Pool']

_NO_LIMITS = contextlib.nullcontext()


def _seconds(name, value):
    """value as a limit in seconds (None: no limit), or the error."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f'{name} must be a number of seconds or None, '
                        f'not {type(value).__name__}')
    if not value > 0 or math.isnan(value):
        raise ValueError(f'{name} must be positive, not {value!r}')
    return None if math.isinf(value) else float(value)


def _count(name, value, least):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f'{name} must be an int or None, not {type(value).__name__}')
    if value < least:
        raise ValueError(f'{name} must be at least {least}, not {value!r}')
    return int(value)


def _time_limits(task_timeout, soft_timeout):
    hard = _seconds('task_timeout', task_timeout)
    soft = _seconds('soft_timeout', soft_timeout)
    if hard is not None and soft is not None and soft >= hard:
        raise ValueError(f'soft_timeout ({soft:g} s) must be shorter than '
                         f'task_timeout ({hard:g} s)')
    return hard, soft


class Pool(PoolCalls, multiprocessing.pool.Pool):
    """A process pool with mphost's extras; without them, the stdlib's Pool.

    task_timeout: seconds a task may run (from its start in a worker)
        before its worker is killed and replaced and its result raises
        TaskTimeoutError; per pool, and per call on apply_async and the map
        family. A map's chunk is the unit that times out.
    soft_timeout: seconds after which SoftTimeLimitExceeded is raised inside
        the task (per pool and per call).
    max_memory_per_child: bytes of resident memory after which a worker
        exits once it has answered its task, and is replaced.
    max_restarts: how many unexpected worker deaths the pool replaces;
        past that, outstanding and new calls raise PoolBrokenError.
    """

    @classmethod
    def _check_options(cls, options):
        """Refuse, as __init__ would, the mphost options in the dict
        `options` without making a pool, and take them out of it: what is
        left is not a Pool option. ProcessPoolExecutor checks its keyword
        options this way when it is made, long before its pool starts."""
        _time_limits(options.pop('task_timeout', None), options.pop('soft_timeout', None))
        _count('max_memory_per_child', options.pop('max_memory_per_child', None), 1)
        _count('max_restarts', options.pop('max_restarts', None), 0)
        super()._check_options(options)

    def __init__(self, processes=None, initializer=None, initargs=(),
                 maxtasksperchild=None, context=None, *, task_timeout=None,
                 soft_timeout=None, max_memory_per_child=None, max_restarts=None,
                 **options):
        # Before anything can fail: __del__ looks at it.
        self._pool, self._state = [], multiprocessing.pool.INIT
        hard, soft = _time_limits(task_timeout, soft_timeout)
        memory = _count('max_memory_per_child', max_memory_per_child, 1)
        restarts = _count('max_restarts', max_restarts, 0)
        # The engine finds it when the stdlib's __init__ makes it.
        self._engine_hooks = Supervisor(hard, soft, memory, restarts)
        self._timed_pool = hard is not None or soft is not None
        super().__init__(processes, initializer, initargs, maxtasksperchild, context,
                         **options)

    def terminate(self):
        self._engine_hooks.stop()
        super().terminate()

    def insights(self):
        """Per worker slot: pid, tasks done, busy and idle time, time spent
        waiting for tasks and sending results, peak RSS and restarts, with
        totals and means (an Insights: str() is a table, as_dict() data)."""
        return self._engine_hooks.insights()

    def _limits(self, func, task_timeout, soft_timeout):
        """The context in which one call is submitted, with its limits."""
        hooks = self._engine_hooks
        hooks.check()
        if task_timeout is None and soft_timeout is None:
            return hooks.limits_for(func, hooks.task_timeout, hooks.soft_timeout) \
                if self._timed_pool else _NO_LIMITS
        hard = hooks.task_timeout if task_timeout is None else _seconds('task_timeout', task_timeout)
        soft = hooks.soft_timeout if soft_timeout is None else _seconds('soft_timeout', soft_timeout)
        if hard is not None and soft is not None and soft >= hard:
            if soft_timeout is not None:
                raise ValueError(f'soft_timeout ({soft:g} s) must be shorter than '
                                 f'task_timeout ({hard:g} s)')
            soft = None               # the pool's soft limit is past this call's hard one
        return hooks.limits_for(func, hard, soft)

    # -- the calls, each with its time limits ---------------------------------

    def apply(self, func, args=(), kwds={}, *, task_timeout=None, soft_timeout=None,
              **options):
        with self._limits(func, task_timeout, soft_timeout):
            return super().apply(func, args, kwds, **options)

    def apply_async(self, func, args=(), kwds={}, callback=None, error_callback=None, *,
                    task_timeout=None, soft_timeout=None, **options):
        with self._limits(func, task_timeout, soft_timeout):
            return super().apply_async(func, args, kwds, callback, error_callback, **options)

    def map(self, func, iterable, chunksize=None, *, task_timeout=None, soft_timeout=None,
            **options):
        with self._limits(func, task_timeout, soft_timeout):
            return super().map(func, iterable, chunksize, **options)

    def map_async(self, func, iterable, chunksize=None, callback=None, error_callback=None,
                  *, task_timeout=None, soft_timeout=None, **options):
        with self._limits(func, task_timeout, soft_timeout):
            return super().map_async(func, iterable, chunksize, callback, error_callback,
                                     **options)

    def starmap(self, func, iterable, chunksize=None, *, task_timeout=None,
                soft_timeout=None, **options):
        with self._limits(func, task_timeout, soft_timeout):
            return super().starmap(func, iterable, chunksize, **options)

    def starmap_async(self, func, iterable, chunksize=None, callback=None,
                      error_callback=None, *, task_timeout=None, soft_timeout=None,
                      **options):
        with self._limits(func, task_timeout, soft_timeout):
            return super().starmap_async(func, iterable, chunksize, callback,
                                         error_callback, **options)

    def imap(self, func, iterable, chunksize=1, *, task_timeout=None, soft_timeout=None,
             **options):
        with self._limits(func, task_timeout, soft_timeout):
            return super().imap(func, iterable, chunksize, **options)

    def imap_unordered(self, func, iterable, chunksize=1, *, task_timeout=None,
                       soft_timeout=None, **options):
        with self._limits(func, task_timeout, soft_timeout):
            return super().imap_unordered(func, iterable, chunksize, **options)
