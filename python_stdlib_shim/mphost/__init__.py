"""mphost: what mphost offers beyond the stdlib's multiprocessing.

Everything here is opt-in: ``import multiprocessing`` behaves as the
stdlib's whether or not this package is used. The user's guide is
docs/mphost-module.md. The package's faces:

- Pool(..., task_timeout=, soft_timeout=, max_memory_per_child=,
  max_restarts=, worker_state=, worker_init=, worker_exit=, serializer=):
  a subclass of ``multiprocessing.pool.Pool`` with time limits, memory
  recycling, worker state and hooks, cloudpickle, ``progress=`` on its map
  calls and ``insights()`` (``mphost._pool``, ``mphost._pool_calls``).
- ProcessPoolExecutor(max_workers, mp_context, initializer, initargs, *,
  max_tasks_per_child, **pool options): a
  ``concurrent.futures.ProcessPoolExecutor`` over an ``mphost.Pool``
  (``mphost._executor``).
- Queue(maxsize, *, strict=False, ctx=None) and JoinableQueue(...): with
  strict=True, put() of an item that cannot be pickled raises in the
  caller (``mphost._queue``).
- state(pid=None, interval=None): this program tree's processes, channels,
  locks and segments, read from the native registry (``mphost._state``);
  ``mphost -m mphost inspect PID`` shows another program's (``mphost._inspect``).
- shared_array(format, count or shape): a block of shared memory that a
  worker of a C++ host_pool can return to the application without a copy
  (``mphost._shared``). The worker loop of host_pool is ``mphost._worker``.
- Semaphore(value, undo=True) and BoundedSemaphore(value, undo=True):
  multiprocessing semaphores that give back what a dead process held, as
  System V's SEM_UNDO does (``mphost._semaphore``).

The package runs only inside mphost (the launcher, its children, or an
application embedding mphost): it stands on the native module ``_mphost``.
Under another interpreter the import fails at once with an ImportError that
says so, rather than later with an obscure one.
"""

try:
    import _mphost  # noqa: F401 - built into the mphost launcher only
except ImportError:
    raise ImportError(
        'mphost can only be imported in a program run by the mphost launcher '
        '(run it as "mphost script.py" instead of "python3 script.py"); '
        'the native module _mphost is missing from this interpreter',
        name=__name__) from None

from ._semaphore import BoundedSemaphore, Semaphore
from ._shared import shared_array
from ._state import TreeState, state

__all__ = ['shared_array', 'Semaphore', 'BoundedSemaphore', 'state', 'TreeState']

# mphost.Pool and the errors of its time limits and restart limit (see
# ``mphost._pool``, ``mphost._pool_watch``).
from ._pool import Pool
from ._pool_errors import PoolBrokenError, SoftTimeLimitExceeded, TaskTimeoutError

__all__ += ['Pool', 'TaskTimeoutError', 'SoftTimeLimitExceeded', 'PoolBrokenError']

# Names whose modules are imported on first use (PEP 562): `import mphost`
# stays light for the workers that only unpickle a function of it.
_LAZY = {
    'ProcessPoolExecutor': '_executor',
    'Queue': '_queue',
    'JoinableQueue': '_queue',
}
__all__ += list(_LAZY)


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    import importlib
    value = getattr(importlib.import_module(f'{__name__}.{module}'), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
