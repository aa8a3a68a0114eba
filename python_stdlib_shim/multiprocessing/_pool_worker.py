"""The worker side of multiprocessing.pool: the loop a pool worker runs,
the exceptions that carry a task's failure back to the caller, and the
message tags both sides share. See multiprocessing.pool for the overview;
every public name here is re-exported there (and named after it)."""

# A private module: `from multiprocessing._pool_* import *` exports nothing.
__all__ = []

import itertools
import os
import signal
import time
import traceback

from . import util
from .context import ProcessError

# Tags of the messages workers (and the worker handler) put on the outqueue.
# `ident` is the identity of the inqueue message (task or batch) a reply
# answers, as the channel reported it to the sender and stored it in the
# worker's receipt; 0 when the pool does not track tasks.
_DONE = 1        # (_DONE, pid, ident, job, index, (success, value))
_BATCH = 2       # (_BATCH, pid, ident, seconds spent, job, first index, [(success, value), ...])
_EXITED = 3      # (_EXITED, pid, exitcode, ident, held), put by the parent:
                 # ident is what the dead worker's board slot says it took
                 # last (0: nothing); held is (job, first index, number of
                 # tasks) from the slot when the worker marks its tasks
_UNREADABLE = 4  # (_UNREADABLE, pid, ident, exception): the message could not
                 # be unpickled; the tasks it held fail with the exception
# A worker's slot on the task board (unsigned 64-bit cells): the receipt
# (or the worker's own number of the task it took, see _task_taker), then
# job, first index and number of tasks when the worker marks them itself
# (the first _MARK_CELLS). The cells after them are written only by the
# workers of a supervised pool (mphost.Pool: task start stamps, counters;
# see mphost._pool_slot); a plain pool leaves them at zero.
_MARK_CELLS = 4
_SLOT_CELLS = 20

# How long an idle worker process polls for its next task before it sleeps
# in get(): a task that arrives meanwhile costs no wake-up of a sleeping
# process (tens of microseconds on other cores), which is most of a short
# task's round trip. Each miss halves the budget; after a few misses the
# worker stops polling and tries again every _SPIN_RETRY tasks.
_IDLE_SPIN_SECONDS = 0.0001
_SPIN_RETRY = 64


def mapstar(args):
    return list(map(*args))


def starmapstar(args):
    return list(itertools.starmap(args[0], args[1]))


#
# Exceptions that cross from workers to the caller
#

class RemoteTraceback(Exception):
    """The formatted traceback of an exception raised in a worker; it is
    the ``__cause__`` of the exception re-raised in the caller."""

    def __init__(self, tb):
        self.tb = tb

    def __str__(self):
        return self.tb


class ExceptionWithTraceback:
    """Carries an exception and its formatted traceback to the parent,
    where unpickling rebuilds the exception with a RemoteTraceback cause."""

    def __init__(self, exc, tb):
        text = ''.join(traceback.format_exception(type(exc), exc, tb))
        self.exc = exc
        self.tb = '\n"""\n%s"""' % text

    def __reduce__(self):
        return rebuild_exc, (self.exc, self.tb)


def rebuild_exc(exc, tb):
    exc.__cause__ = RemoteTraceback(tb)
    return exc


class MaybeEncodingError(Exception):
    """A task's result (or exception) could not be pickled back to the
    caller; keeps the reprs of the value and of the pickling error."""

    def __init__(self, exc, value):
        self.exc = repr(exc)
        self.value = repr(value)
        super().__init__(self.exc, self.value)

    def __str__(self):
        return f"Error sending result: '{self.value}'. Reason: '{self.exc}'"

    def __repr__(self):
        return f'<{type(self).__name__}: {self}>'


class WorkerLostError(ProcessError):
    """A pool worker died (killed by a signal, os._exit, a crash...) while it
    held tasks of a call; that call fails with this error. The pool starts a
    replacement worker and stays usable."""

    def __init__(self, pid, exitcode, ntasks=1):
        self.pid = pid
        self.exitcode = exitcode
        self.ntasks = ntasks
        if exitcode is not None and exitcode < 0:
            try:
                how = 'died with ' + signal.Signals(-exitcode).name
            except ValueError:
                how = f'died with signal {-exitcode}'
        else:
            how = f'exited with code {exitcode}'
        what = 'a task' if ntasks == 1 else f'a batch of {ntasks} tasks'
        super().__init__(f'worker {pid} {how} while running {what}')

    def __reduce__(self):
        return type(self), (self.pid, self.exitcode, self.ntasks)



def _helper_reraises_exception(ex):
    """Kept for code that names it; the pool itself never sends it."""
    raise ex


#
# The worker loop
#

def _call(func, args, kwds, wrap_exception):
    try:
        return (True, func(*args, **kwds))
    except Exception as e:
        if not wrap_exception:
            return (False, e)
        if func is not _helper_reraises_exception:
            e = ExceptionWithTraceback(e, e.__traceback__)
        return _sendable_failure(e)


def _sendable_failure(exc):
    """(False, exc), or (False, MaybeEncodingError) if exc would not survive
    the trip to the parent. Exceptions whose __init__ wants other arguments
    than their args pickle fine but fail to unpickle, which would leave the
    parent without any answer for the task."""
    from .reduction import ForkingPickler
    try:
        ForkingPickler.loads(ForkingPickler.dumps(exc))
    except Exception as e:
        return (False, MaybeEncodingError(e, getattr(exc, 'exc', exc)))
    return (False, exc)


def _encodable(result):
    """result, or a failure carrying a MaybeEncodingError if it cannot be
    pickled."""
    from .reduction import ForkingPickler
    try:
        ForkingPickler.dumps(result[1])
        return result
    except Exception as e:
        return (False, MaybeEncodingError(e, result[1]))


def _task_taker(inqueue, tracking):
    """The worker's get(): returns (ident, message), ident naming the
    inqueue message taken in the replies (0 when not tracked).

    With `tracking` (board, slot, 'receipt'), the message is taken from the
    inqueue's channel with a receipt: the channel stores the message's
    identity in the worker's board slot the moment it is taken, so a worker
    that dies at any point after that leaves a record of what it held. The
    message is unpickled afterwards; a failure to unpickle raises
    _Unreadable. With (board, slot, 'mark') (an inqueue of another kind,
    whose writer pickles its own way), the worker gets the task from the
    queue, then marks it in its slot under a number of its own: a death
    while unpickling goes unnoticed there."""
    if tracking is None:
        get = inqueue.get

        def take():
            return 0, get()
        return take
    board, slot, how = tracking
    cells = memoryview(board).cast('B').cast('Q')
    base = slot * _SLOT_CELLS
    if how == 'mark':
        return _task_marker(inqueue.get, cells, base)
    from .reduction import ForkingPickler
    recv = inqueue._reader._inbound.recv
    loads = ForkingPickler.loads
    receipt = (board, base * cells.itemsize)

    def take():
        # A large message is unpickled where it lies in shared memory (the
        # unpickler copies what it keeps), as Connection.recv does.
        data = recv(None, True, receipt)
        ident = cells[base]
        try:
            return ident, loads(data)
        except Exception as e:
            del data                 # the traceback must not keep the block
            raise _Unreadable(ident, e) from e
    return take


def _task_marker(get, cells, base):
    seq = 0

    def take():
        nonlocal seq
        msg = get()
        if msg is not None:
            seq += 1
            first = msg[0] if type(msg) is list else msg
            cells[base + 1] = first[0]
            cells[base + 2] = first[1]
            cells[base + 3] = len(msg) if type(msg) is list else 1
            cells[base] = seq        # written last: it validates the others
        return seq, msg
    return take


class _Unreadable(Exception):
    """A task message that the worker took could not be unpickled."""

    def __init__(self, ident, exc):
        super().__init__(ident, exc)
        self.ident = ident
        self.exc = exc


def _spin_until_readable(poll, budget):
    """Poll (yielding the CPU in between) until there is something to read
    (True) or `budget` seconds passed (False)."""
    if poll(0):
        return True
    deadline = time.perf_counter() + budget
    pause = os.sched_yield
    while time.perf_counter() < deadline:
        pause()
        if poll(0):
            return True
    return False


def _run_batch(tasks, put, pid, ident, wrap_exception):
    job, first = tasks[0][0], tasks[0][1]
    started = time.perf_counter()
    results = [_call(func, args, kwds, wrap_exception) for _, _, func, args, kwds in tasks]
    spent = time.perf_counter() - started
    try:
        put((_BATCH, pid, ident, spent, job, first, results))
    except Exception:
        put((_BATCH, pid, ident, spent, job, first, [_encodable(r) for r in results]))
    return len(tasks)


def worker(inqueue, outqueue, initializer=None, initargs=(), maxtasks=None,
           wrap_exception=False, _tracking=None, _supervision=None):
    """Body of a pool worker: take tasks from inqueue until told to stop
    (None) or maxtasks tasks are done; put their results on outqueue.

    With `_tracking` (given by Pool: the task board and this worker's
    slot on it), the worker takes tasks with a receipt (see _task_taker), so
    that its death fails the task it held instead of losing it, and a task
    that cannot be unpickled fails with the error instead of killing it.
    `_supervision` (a supervised pool's, e.g. mphost.Pool) wraps the take
    and put of messages to keep counters in the slot, may run batches its
    own way (its `run_batch`, with _run_batch's arguments) and may ask the
    worker to leave after a message (its `leaving`).
    """
    if maxtasks is not None and not (isinstance(maxtasks, int) and maxtasks >= 1):
        raise AssertionError(f'Maxtasks {maxtasks!r} is not valid')
    put = outqueue.put
    if hasattr(inqueue, '_writer'):
        # This process only reads tasks and only writes results.
        inqueue._writer.close()
        outqueue._reader.close()
    if initializer is not None:
        initializer(*initargs)
    pid = os.getpid()
    take = _task_taker(inqueue, _tracking)
    run_batch = _run_batch
    if _supervision is not None:
        take, put = _supervision.attach(_tracking, take, put)
        run_batch = getattr(_supervision, 'run_batch', None) or _run_batch
    # Worker processes poll a little before sleeping; threads never do.
    reader = getattr(inqueue, '_reader', None)
    poll = reader.poll if reader is not None and _IDLE_SPIN_SECONDS else None
    budget = _IDLE_SPIN_SECONDS
    skipped = 0
    completed = 0
    while maxtasks is None or completed < maxtasks:
        try:
            if poll is not None:
                if budget:
                    if _spin_until_readable(poll, budget):
                        budget = _IDLE_SPIN_SECONDS
                    elif budget > _IDLE_SPIN_SECONDS / 8:
                        budget /= 2
                    else:
                        budget = 0
                else:
                    skipped += 1
                    if skipped >= _SPIN_RETRY:
                        budget, skipped = _IDLE_SPIN_SECONDS, 0
            ident, msg = take()
        except (EOFError, OSError):
            util.debug('worker got EOFError or OSError -- exiting')
            break
        except _Unreadable as e:
            # Fail the task (or batch) it carried; carry on with the next.
            util.debug(f'worker could not unpickle a task: {e.exc!r}')
            exc = e.exc
            if wrap_exception:
                exc = ExceptionWithTraceback(exc, exc.__traceback__)
            put((_UNREADABLE, pid, e.ident, _sendable_failure(exc)[1]))
            e = exc = None
            completed += 1
            continue
        if msg is None:
            util.debug('worker got sentinel -- exiting')
            break
        if type(msg) is list:
            completed += run_batch(msg, put, pid, ident, wrap_exception)
        else:
            job, i, func, args, kwds = msg
            result = _call(func, args, kwds, wrap_exception)
            try:
                put((_DONE, pid, ident, job, i, result))
            except Exception as e:
                wrapped = MaybeEncodingError(e, result[1])
                util.debug(f'Possible encoding error while sending result: {wrapped}')
                put((_DONE, pid, ident, job, i, (False, wrapped)))
            completed += 1
        # Drop references to the task before waiting for the next one.
        msg = job = func = args = kwds = result = None
        if _supervision is not None and _supervision.leaving:
            break
    util.debug(f'worker exiting after {completed} tasks')


# Their home is multiprocessing.pool, as in the stdlib: that is the module
# pickles and tracebacks name.
for _obj in (mapstar, starmapstar, RemoteTraceback, ExceptionWithTraceback, rebuild_exc,
             MaybeEncodingError, WorkerLostError, worker):
    _obj.__module__ = 'multiprocessing.pool'
del _obj
