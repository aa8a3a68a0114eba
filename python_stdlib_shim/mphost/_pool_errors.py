"""The errors of mphost.Pool's supervision. Each subclasses the stdlib
class a user of multiprocessing already catches, so existing ``except``
clauses keep working."""

import multiprocessing

__all__ = ['TaskTimeoutError', 'SoftTimeLimitExceeded', 'PoolBrokenError']


class TaskTimeoutError(multiprocessing.TimeoutError, TimeoutError):
    """A task ran past its task_timeout: its worker was killed (SIGKILL) and
    replaced, and its result raises this error. Both a TimeoutError (the
    builtin, as pebble's timeouts) and a multiprocessing.TimeoutError (what
    AsyncResult.get(timeout) raises)."""

    def __init__(self, message, limit=None, pid=None):
        super().__init__(message)
        self.limit = limit
        self.pid = pid

    def __str__(self):
        return self.args[0] if self.args else ''

    def __reduce__(self):
        return type(self), (str(self), self.limit, self.pid)


class SoftTimeLimitExceeded(Exception):
    """Raised inside a task that ran past its soft_timeout (billiard's name
    and meaning): the task may catch it and clean up, or go on; its
    task_timeout, if any, still applies."""


class PoolBrokenError(multiprocessing.ProcessError):
    """The pool's workers died unexpectedly (crashes, task_timeout kills)
    more than max_restarts times: the pool no longer replaces them, and its
    outstanding and new calls fail with this error."""


for _cls in (TaskTimeoutError, SoftTimeLimitExceeded, PoolBrokenError):
    _cls.__module__ = 'mphost'
del _cls
