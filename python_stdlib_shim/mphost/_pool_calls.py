"""The calls of mphost.Pool (apply and the map family) with the options that
travel with each call. A mixin placed before multiprocessing.pool.Pool in
mphost.Pool's bases: every method takes its own keyword options, handles
them and hands the rest to the next class with super().

Pool options (see docs/mphost-module/pool-calls.md):
  worker_state=True      each worker keeps a dict, given to the task's
                         function as its first argument (mphost._worker_state)
  worker_init=, worker_exit=
                         run once per worker, at its start and at its clean
                         exit; what worker_exit returns is collected by
                         get_exit_results()
  serializer='cloudpickle'
                         functions, lambdas, closures and their arguments
                         travel by value (mphost._serializer)
Per-call option of map/imap/imap_unordered/starmap and their _async forms:
  progress=              True, a tqdm bar or a callable (done, total): the
                         items completed (mphost._progress)
"""

import weakref

from . import _progress, _serializer, _worker_state

__all__ = []

# The stdlib Pool's parameters, in their positional order.
_POOL_PARAMETERS = ('processes', 'initializer', 'initargs', 'maxtasksperchild', 'context')


def _named(args, rest):
    """The stdlib Pool's arguments given positionally, merged into rest."""
    if len(args) > len(_POOL_PARAMETERS):
        raise TypeError(f'Pool() takes at most {len(_POOL_PARAMETERS)} positional arguments '
                        f'({len(args)} given)')
    merged = dict(rest)
    for name, value in zip(_POOL_PARAMETERS, args):
        if name in merged:
            raise TypeError(f"Pool() got multiple values for argument '{name}'")
        merged[name] = value
    return merged


def _optional_callable(name, value):
    if value is not None and not callable(value):
        raise TypeError(f'{name} must be a callable or None, not {type(value).__name__}')


def _checked(worker_state, worker_init, worker_exit, serializer):
    """Refuse wrong call-wrapping options; the serializer module or None."""
    if not isinstance(worker_state, bool):
        raise TypeError(f'worker_state must be True or False, not {worker_state!r}')
    _optional_callable('worker_init', worker_init)
    _optional_callable('worker_exit', worker_exit)
    return _serializer.check(serializer)


def _length(iterable):
    try:
        return len(iterable)
    except TypeError:
        return None


class PoolCalls:
    """Per-call options of mphost.Pool's apply/map family, and the pool
    options that change how a call runs in the workers."""

    @classmethod
    def _check_options(cls, options):
        """Refuse, as __init__ would, this class's options in the dict
        `options`, and take them out of it (see Pool._check_options)."""
        _checked(options.pop('worker_state', False), options.pop('worker_init', None),
                 options.pop('worker_exit', None), options.pop('serializer', None))

    def __init__(self, *args, worker_state=False, worker_init=None, worker_exit=None,
                 serializer=None, **rest):
        ship = _checked(worker_state, worker_init, worker_exit, serializer) is not None
        options = _named(args, rest)
        initializer = options.get('initializer')
        initargs = options.get('initargs', ())
        if not (initializer is None or callable(initializer)):
            raise TypeError('initializer must be a callable')     # the stdlib's words
        self._with_state = worker_state
        self._ship = ship
        self._exits = None
        self._exit_results = []
        self._watchers = _progress.Handoff()
        self._tallies = weakref.WeakSet()
        if worker_state or worker_init or worker_exit or (ship and initializer is not None):
            if worker_exit is not None:
                context = options.get('context')
                if context is None:
                    import multiprocessing
                    context = multiprocessing.get_context()
                self._exits = context.SimpleQueue()
            initargs = tuple(initargs)
            if ship:
                wrap = _serializer.Parcel
                initargs = tuple(map(_serializer.parcel, initargs))
                initializer, worker_init, worker_exit = (
                    None if hook is None else wrap(hook)
                    for hook in (initializer, worker_init, worker_exit))
            setup = _worker_state.Setup(initializer, initargs, worker_state, worker_init,
                                        worker_exit, self._exits)
            options['initializer'] = _worker_state.start
            options['initargs'] = (setup,)
        super().__init__(**options)

    # -- what a call sends ---------------------------------------------------

    def _task_function(self, func):
        if self._ship:
            return _serializer.Task(func, self._with_state)
        if self._with_state:
            return _worker_state.Stateful(func)
        return func

    def _items(self, iterable):
        return _serializer.parcels(iterable) if self._ship else iterable

    def _open_tally(self, progress, total, lists, chunksize, one_failure=False):
        sink = _progress.sink_for(progress, total)
        if sink is None:
            return None
        tally = _progress.Tally(sink, total, lists, chunksize, one_failure)
        self._tallies.add(tally)
        self._watchers.pending = tally
        return tally

    def _submitted(self, tally, call):
        """After the call was made (or failed to be): a tally that no result
        took, or whose result was final at once (an empty map), is
        finished now; the others finish when their call is final."""
        leftover = self._watchers.take()
        if leftover is not None:
            leftover.finish()
        elif tally is not None:
            if call is None or (hasattr(call, 'ready') and call.ready()):
                tally.finish(call)

    def _mapped(self, method, func, iterable, chunksize, progress, args, rest):
        if progress is not None and not hasattr(iterable, '__len__'):
            iterable = list(iterable)   # as map() does: its length is the total
        tally = self._open_tally(progress, _length(iterable), True,
                                 chunksize if chunksize else 1, one_failure=True)
        call = None
        try:
            call = method(self._task_function(func), self._items(iterable), chunksize,
                          *args, **rest)
            return call
        finally:
            self._submitted(tally, call)

    # -- the stdlib's calls, with their options ------------------------------

    def apply_async(self, func, args=(), kwds={}, callback=None, error_callback=None, **rest):
        if self._ship:
            args = tuple(map(_serializer.parcel, args))
            kwds = {key: _serializer.parcel(value) for key, value in kwds.items()}
        return super().apply_async(self._task_function(func), args, kwds, callback,
                                   error_callback, **rest)

    def map_async(self, func, iterable, chunksize=None, callback=None, error_callback=None,
                  *, progress=None, **rest):
        return self._mapped(super().map_async, func, iterable, chunksize, progress,
                            (callback, error_callback), rest)

    def starmap_async(self, func, iterable, chunksize=None, callback=None,
                      error_callback=None, *, progress=None, **rest):
        return self._mapped(super().starmap_async, func, iterable, chunksize, progress,
                            (callback, error_callback), rest)

    def map(self, func, iterable, chunksize=None, *, progress=None, **rest):
        if progress is None:
            return super().map(self._task_function(func), self._items(iterable), chunksize,
                               **rest)
        # super()'s map_async, not self's: the classes before this one in
        # the MRO already took their options in their map().
        return self._mapped(super().map_async, func, iterable, chunksize, progress,
                            (None, None), rest).get()

    def starmap(self, func, iterable, chunksize=None, *, progress=None, **rest):
        if progress is None:
            return super().starmap(self._task_function(func), self._items(iterable),
                                   chunksize, **rest)
        return self._mapped(super().starmap_async, func, iterable, chunksize, progress,
                            (None, None), rest).get()

    def _lazy(self, method, func, iterable, chunksize, progress, rest):
        tally = self._open_tally(progress, _length(iterable), chunksize != 1, chunksize)
        result = None
        try:
            result = method(self._task_function(func), self._items(iterable), chunksize, **rest)
            return result
        finally:
            self._submitted(tally, result)

    def imap(self, func, iterable, chunksize=1, *, progress=None, **rest):
        return self._lazy(super().imap, func, iterable, chunksize, progress, rest)

    def imap_unordered(self, func, iterable, chunksize=1, *, progress=None, **rest):
        return self._lazy(super().imap_unordered, func, iterable, chunksize, progress, rest)

    # -- the workers' exit results -------------------------------------------

    def get_exit_results(self):
        """What worker_exit returned in each worker that exited so far (all
        of them after close() and join()), in the order they exited."""
        _worker_state.collect(self._exits, self._exit_results)
        return list(self._exit_results)

    def terminate(self):
        super().terminate()
        # Calls that will never complete: their bars close as they are.
        for tally in list(self._tallies):
            tally.finish()

