"""Strict queues: put() of an item that cannot be pickled raises in the caller.

The stdlib's Queue pickles in a feeder thread, so an item that cannot be
pickled (a lambda, a Lock, an open file) is only reported later, through
``Queue._on_queue_feeder_error``, which prints a traceback on stderr; put()
itself returned as if all was well and the item is silently dropped.
mphost's ``multiprocessing.Queue`` pickles in put() already, and reports
through the same hook at once (the stdlib's behaviour, kept).

``mphost.Queue(strict=True)`` and ``mphost.JoinableQueue(strict=True)``
make queues whose hook raises the pickling error instead: the native put
gives the item's slot back, calls the hook, and the error leaves put() in
the caller's frame with its original type (PicklingError, TypeError,
RuntimeError for a Lock...). Nothing was sent, no task was counted. The
queues are ``multiprocessing.queues.Queue`` / ``JoinableQueue`` instances
in every other respect, and pass to children like them; without strict=True
the factories return the stdlib's own classes.

SimpleQueue needs no strict form: its put() pickles in the caller and
raises there, on the stdlib as on mphost.
"""

from multiprocessing import queues as _queues

__all__ = ['Queue', 'JoinableQueue']


class _RaiseInPut:
    """Turns the feeder-error hook into an error of put() itself."""

    def _on_queue_feeder_error(self, e, obj):
        raise e


class StrictQueue(_RaiseInPut, _queues.Queue):
    """A Queue whose put() raises when the item cannot be pickled."""


class StrictJoinableQueue(_RaiseInPut, _queues.JoinableQueue):
    """A JoinableQueue whose put() raises when the item cannot be pickled."""


def _context(ctx):
    import multiprocessing
    if ctx is None or isinstance(ctx, str):
        return multiprocessing.get_context(ctx)
    return ctx


def Queue(maxsize=0, *, strict=False, ctx=None):
    """A multiprocessing Queue (maxsize <= 0: unbounded). With strict=True,
    put() of an item that cannot be pickled raises that error in the
    caller. `ctx`: a context or a start method name (default: the current
    context)."""
    ctx = _context(ctx)
    if not strict:
        return ctx.Queue(maxsize)
    return StrictQueue(maxsize, ctx=ctx.get_context())


def JoinableQueue(maxsize=0, *, strict=False, ctx=None):
    """A multiprocessing JoinableQueue; strict as for Queue (an item that
    raised is not counted as a task)."""
    ctx = _context(ctx)
    if not strict:
        return ctx.JoinableQueue(maxsize)
    return StrictJoinableQueue(maxsize, ctx=ctx.get_context())
