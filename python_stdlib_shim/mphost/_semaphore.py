"""Semaphores with undo: what a dead process held is given back.

A ``multiprocessing`` Semaphore or BoundedSemaphore is a counter with no
owner (any process may release it), so when a process dies between an
acquire and its release, its units stay taken -- on the stdlib as on mphost,
as with POSIX semaphores. ``mphost.Semaphore`` and ``mphost.BoundedSemaphore``
make the same objects with *undo*, after System V's ``SEM_UNDO``: the
semaphore keeps, in its own shared memory, every process's net acquisitions
(the acquires it made minus the releases it made), and when a process dies,
however it dies (``SIGKILL`` included), its positive balance is given back --
never past a BoundedSemaphore's bound. A process waiting in ``acquire()``
sees the units come back within about 50 ms; ``get_value()`` counts them at
once.

The objects are ``multiprocessing.synchronize.Semaphore`` /
``BoundedSemaphore`` instances with the same API; they pass to children of
every start method like any other (inherited under fork, pickled by name
while a child starts under spawn and forkserver), and undo holds in every
process that uses them.

The table is bounded: about 4000 processes may hold a slot at once (a dead
process's slot is reused). A process that needs one when every slot
belongs to a live process gets ``OSError(ENOSPC)`` from ``acquire()``.
Each acquire and release takes a short robust lock more than a plain
semaphore (a few hundred nanoseconds).

Use it where a unit stands for something a process holds (a licence, a GPU,
a connection slot); a semaphore used to signal (released by a process that
never acquired it) gains nothing from undo: a negative balance is never
taken back.
"""

__all__ = ['Semaphore', 'BoundedSemaphore']


def _context(ctx):
    import multiprocessing
    if ctx is None:
        return multiprocessing.get_context()
    if isinstance(ctx, str):
        return multiprocessing.get_context(ctx)
    return ctx


def Semaphore(value=1, *, undo=True, ctx=None):
    """A multiprocessing Semaphore; with undo (the default here) a dead
    process's net acquisitions are given back. `ctx`: a context or a start
    method name (default: the current context)."""
    from multiprocessing import synchronize
    return synchronize.Semaphore(value, ctx=_context(ctx), _undo=bool(undo))


def BoundedSemaphore(value=1, *, undo=True, ctx=None):
    """A multiprocessing BoundedSemaphore (releasing past `value` raises
    ValueError); with undo a dead process's net acquisitions are given back,
    never past `value`."""
    from multiprocessing import synchronize
    return synchronize.BoundedSemaphore(value, ctx=_context(ctx), _undo=bool(undo))
