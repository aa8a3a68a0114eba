"""Progress of a map/imap call of mphost.Pool: ``progress=`` on the call.

A call with progress gets a tally (see multiprocessing.pool._Call): the
pool's engine tells it of every outcome it delivers, under the engine's
lock, and the tally only adds the number of items those outcomes stand
for (a chunk's result list counts its items, so chunksize > 1 counts
tasks, not chunks). What the user sees (a tqdm bar, a callable) is told
outside that lock: by one ticker thread shared by every tally of the
process, at most every ``_TICK`` seconds while a count moved, and once
more when the call is final, by the thread that completes it (before
``get()`` returns and before any callback), which then closes the bar.

The sinks, from the ``progress`` argument:
  True           a new tqdm bar on stderr (tqdm.auto: a widget in a notebook)
  a tqdm bar     (anything with update() and close()): its total is set when
                 it is None and the call's length is known; it is updated
                 and closed
  a callable     called as fn(done, total); total is None for an iterable
                 without len()
"""

import os
import sys
import threading
import weakref

__all__ = []

# Seconds between two looks of the ticker at the running tallies.
_TICK = 0.1


class Handoff(threading.local):
    """What a pool hands the next call made in this thread: the tally that
    the call's result takes when it registers (multiprocessing.pool)."""

    pending = None

    def take(self):
        tally, self.pending = self.pending, None
        return tally


class _Bar:
    """A tqdm bar (or any object with update() and close())."""

    __slots__ = ('bar',)

    def __init__(self, bar, total):
        self.bar = bar
        if total is not None and getattr(bar, 'total', 0) is None:
            bar.total = total
            refresh = getattr(bar, 'refresh', None)
            if refresh is not None:
                refresh()

    def show(self, done, step, total):
        if step:
            self.bar.update(step)

    def close(self, done, step, total):
        self.show(done, step, total)
        self.bar.close()


class _Function:
    """A callable told fn(done, total)."""

    __slots__ = ('fn',)

    def __init__(self, fn):
        self.fn = fn

    def show(self, done, step, total):
        if step:
            self.fn(done, total)

    def close(self, done, step, total):
        self.fn(done, total)


def _new_bar(total):
    try:
        from tqdm.auto import tqdm
    except ImportError as e:
        raise ImportError('progress=True needs the tqdm package (Debian: python3-tqdm); '
                          'or pass a callable progress(done, total)') from e
    return tqdm(total=total, file=sys.stderr, dynamic_ncols=True)


def sink_for(progress, total):
    """The sink that shows `progress` (the call's argument), or None for
    no progress; TypeError for what cannot show one."""
    if progress is None or progress is False:
        return None
    if progress is True:
        return _Bar(_new_bar(total), total)
    if callable(getattr(progress, 'update', None)) and callable(getattr(progress, 'close', None)):
        return _Bar(progress, total)
    if callable(progress):
        return _Function(progress)
    raise TypeError('progress must be True, a tqdm bar (an object with update() and close()) '
                    f'or a callable progress(done, total), not {type(progress).__name__}')


class Tally:
    """Counts the items a call has completed; see the module's docstring.

    `lists`: the call's outcomes are lists of item results (map, starmap,
    imap with chunksize > 1), so an outcome counts as many items as its
    list holds; otherwise each outcome is one item. A failed chunk counts
    `chunksize` items (at most what is left of `total`); with
    `one_failure` (map, starmap) the first failure is the call's outcome
    and counts nothing, nor does anything after it."""

    __slots__ = ('sink', 'total', 'lists', 'chunksize', 'done', 'shown', 'lock', 'closed',
                 'one_failure', '__weakref__')

    def __init__(self, sink, total, lists, chunksize, one_failure=False):
        self.sink, self.total = sink, total
        self.lists, self.chunksize = lists, chunksize
        self.one_failure = one_failure
        self.done = self.shown = 0
        self.lock = threading.Lock()
        self.closed = False
        _ticker.add(self)

    def settled(self, outcomes):
        # Engine lock held: count, nothing else.
        if self.lists is None:
            return
        if not self.lists:
            self.done += len(outcomes)
            return
        done = self.done
        for ok, value in outcomes:
            if ok and type(value) is list:
                done += len(value)
            elif self.one_failure:
                self.lists = None           # counts nothing more
                break
            else:
                done += self.chunksize
        total = self.total
        self.done = done if total is None or done <= total else total

    def tick(self):
        """Show what was counted since the last look (ticker thread)."""
        with self.lock:
            if self.closed:
                return
            done = self.done
            if done != self.shown:
                step, self.shown = done - self.shown, done
                self.sink.show(done, step, self.total)

    def finish(self, call=None):
        """The call is final (or will never be): show the count, close."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
            _ticker.discard(self)
            done = self.done
            step, self.shown = done - self.shown, done
            try:
                self.sink.close(done, step, self.total)
            except Exception:
                _report('closing the progress of a pool call')


def _report(what):
    import traceback
    sys.stderr.write(f'Exception while {what}:\n')
    traceback.print_exc()


class _Ticker:
    """One daemon thread for the whole process: tick() of every running
    tally every _TICK seconds; asleep while there is none."""

    def __init__(self):
        self._reset()

    def _reset(self):
        self.cond = threading.Condition(threading.Lock())
        self.tallies = weakref.WeakSet()
        self.thread = None

    def add(self, tally):
        with self.cond:
            self.tallies.add(tally)
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name='mphost-progress',
                                               daemon=True)
                self.thread.start()
            else:
                self.cond.notify()

    def discard(self, tally):
        with self.cond:
            self.tallies.discard(tally)

    def _run(self):
        cond = self.cond
        while True:
            with cond:
                while not self.tallies:
                    cond.wait()
                cond.wait(_TICK)
                running = list(self.tallies)
            for tally in running:
                try:
                    tally.tick()
                except Exception:
                    _report('showing the progress of a pool call')
            running = tally = None


_ticker = _Ticker()
# A forked child starts without the thread; its copy of the state is stale.
os.register_at_fork(after_in_child=_ticker._reset)
