"""One program for concurrent.futures.ProcessPoolExecutor (under
/usr/bin/python3) and mphost.ProcessPoolExecutor (under mphost): what it
prints must be the same (test_mphost_executor.test_same_as_stock).

    prog.py stock|mphost START_METHOD FILE

FILE is written by a call the program leaves running when it exits without
shutdown(): both executors finish it first.
Also the module of the worker functions of test_mphost_executor."""

import os
import signal
import sys
import time

import concurrent.futures as cf

WAIT = 60


def square(x):
    return x * x


def power(x, y):
    return x ** y


def fail_on(x, bad):
    if x == bad:
        raise ValueError(f'refused {x}')
    return x


def nap(seconds):
    time.sleep(seconds)
    return seconds


def my_pid(_=None):
    return os.getpid()


def kill_me():
    os.kill(os.getpid(), signal.SIGKILL)


def arange_times(n, k):
    import numpy
    return numpy.arange(n, dtype=numpy.float64) * k


_seed = None


def remember(value):
    global _seed
    _seed = value


def recall(_=None):
    return _seed


def refuse_to_start():
    raise RuntimeError('this initializer fails')


def write_later(path, seconds):
    time.sleep(seconds)
    with open(path, 'w') as out:
        out.write('written')


def _error(exc):
    return f'{type(exc).__name__}: {exc}'


def _run(Executor, ctx, path):
    print('subclass', issubclass(Executor, cf.ProcessPoolExecutor))
    with Executor(2, mp_context=ctx) as ex:
        print('submit', ex.submit(square, 12).result(WAIT))
        print('kwargs', ex.submit(power, 2, y=10).result(WAIT))
        error = ex.submit(fail_on, 3, 3).exception(WAIT)
        print('error', _error(error), type(error.__cause__).__name__,
              'fail_on' in str(error.__cause__))
        for size in (1, 3, 7):
            print('map', size, list(ex.map(square, range(23), chunksize=size)))
        print('map2', list(ex.map(power, range(6), [2] * 9, chunksize=4)))
        print('map empty', list(ex.map(square, [])))
        for size in (1, 3):
            got = []
            try:
                for value in ex.map(fail_on, range(10), [5] * 10, chunksize=size):
                    got.append(value)
            except ValueError as exc:
                print('map error', size, got, _error(exc))
        try:
            ex.map(square, range(3), chunksize=0)
        except ValueError as exc:
            print('chunksize', _error(exc))
        results = ex.map(nap, [0.05, 5], timeout=1.0)
        print('first', next(results))
        try:
            next(results)
        except cf.TimeoutError as exc:
            print('timeout', type(exc).__name__)
        calls = [ex.submit(square, i) for i in range(20)]
        print('as_completed', sorted(f.result() for f in cf.as_completed(calls, timeout=WAIT)))
        done, not_done = cf.wait(calls, timeout=WAIT)
        print('wait', len(done), len(not_done))
        early = ex.submit(nap, 0.5)
        first = cf.wait([early, ex.submit(square, 3)], timeout=WAIT,
                        return_when=cf.FIRST_COMPLETED)
        print('first completed', early in first.done, len(first.done) + len(first.not_done))
        print('numpy', float(ex.submit(arange_times, 100_000, 2).result(WAIT).sum()))
    try:
        ex.submit(square, 1)
    except RuntimeError as exc:
        print('after shutdown', _error(exc))
    with Executor(2, mp_context=ctx) as ex:
        lost = ex.submit(kill_me).exception(WAIT)
        # The stdlib's executor is broken from now on; mphost's replaces
        # the worker (test_mphost_executor checks it).
        print('lost', _error(lost), isinstance(lost, cf.process.BrokenProcessPool))

    with Executor(1, mp_context=ctx) as ex:
        calls = [ex.submit(nap, 1.0)] + [ex.submit(square, i) for i in range(6)]
        time.sleep(0.3)
        print('running', calls[0].running(), 'cancel', [f.cancel() for f in calls[3:]])
        print('kept', [f.result(WAIT) for f in calls[1:3]])
    with Executor(1, mp_context=ctx) as ex:
        calls = [ex.submit(nap, 1.0)] + [ex.submit(square, i) for i in range(6)]
        time.sleep(0.3)
        ex.shutdown(wait=True, cancel_futures=True)
        print('cancel_futures', calls[0].result(WAIT), [f.cancelled() for f in calls[3:]])

    with Executor(2, mp_context=ctx, initializer=remember, initargs=('seed',)) as ex:
        print('initializer', list(ex.map(recall, range(4))))
    if ctx.get_start_method() != 'fork':
        with Executor(1, mp_context=ctx, max_tasks_per_child=2) as ex:
            pids = [ex.submit(my_pid).result(WAIT) for _ in range(6)]
            print('max_tasks_per_child', len(set(pids)))
    ex = Executor(1, mp_context=ctx, initializer=refuse_to_start)
    print('failed initializer', type(ex.submit(square, 2).exception(WAIT)).__name__)
    try:
        ex.submit(square, 3)
    except cf.process.BrokenProcessPool:
        print('broken', True)
    ex.shutdown()

    for bad in ({'max_workers': 0}, {'initializer': 3},
                {'max_tasks_per_child': 'x'}, {'max_tasks_per_child': 0}):
        try:
            Executor(**bad)
        except (TypeError, ValueError) as exc:
            print('refused', _error(exc))


def main(argv):
    kind, method, path = argv
    import multiprocessing
    if kind == 'stock':
        Executor = cf.ProcessPoolExecutor
    else:
        import mphost
        Executor = mphost.ProcessPoolExecutor
    ctx = multiprocessing.get_context(method)
    _run(Executor, ctx, path)
    # Left running: the interpreter's exit waits for it.
    Executor(1, mp_context=ctx).submit(write_later, path, 0.3)
    sys.stdout.flush()


if __name__ == '__main__':
    main(sys.argv[1:])
