"""ProcessPoolExecutor: submit, map with chunksize and timeout, as_completed,
exceptions with the remote traceback, shutdown(wait) and
shutdown(cancel_futures=True), and a failing initializer breaking the pool."""
import concurrent.futures
import concurrent.futures.process
import time
from concurrent.futures import ProcessPoolExecutor, as_completed, wait

LABEL = None


def cube(x):
    return x ** 3


def pair(a, b):
    return (a, b, a * b)


def explode(x):
    raise RuntimeError(f'task {x} failed')


def nap(x):
    time.sleep(0.1)
    return x


def set_label(label):
    global LABEL
    LABEL = label


def read_label(x):
    return f'{LABEL}-{x}'


def broken_init():
    raise OSError('initializer refused to start')


def main():
    with ProcessPoolExecutor(max_workers=2) as ex:
        f = ex.submit(cube, 7)
        print('submit', f.result(timeout=60), f.done(), f.exception(timeout=0))
        print('submit kwargs', ex.submit(pair, 2, b=5).result(timeout=60))
        print('map', list(ex.map(cube, range(10))))
        print('map chunksize=4', list(ex.map(cube, range(25), chunksize=4)))
        print('map two iterables', list(ex.map(pair, range(5), 'abcde', chunksize=2)))
        print('map with timeout', list(ex.map(cube, range(5), timeout=60)))
        futures = {ex.submit(cube, i): i for i in range(12)}
        print('as_completed', sorted((futures[f], f.result()) for f in as_completed(futures, timeout=60)))
        done, not_done = wait([ex.submit(cube, i) for i in range(4)], timeout=60)
        print('wait', sorted(f.result() for f in done), len(not_done))

        f = ex.submit(explode, 3)
        exc = f.exception(timeout=60)
        cause = exc.__cause__
        print('exception', type(exc).__name__, exc,
              '| cause', type(cause).__name__,
              isinstance(cause, concurrent.futures.process._RemoteTraceback),
              '| names task', 'in explode' in str(cause))
        try:
            list(ex.map(explode, [1, 2], chunksize=2))
        except RuntimeError as err:
            print('map raises', type(err).__name__, err,
                  isinstance(err.__cause__, concurrent.futures.process._RemoteTraceback))
        calls = []
        f = ex.submit(cube, 3)
        f.add_done_callback(lambda fut: calls.append(fut.result()))
        f.result(timeout=60)
        deadline = time.monotonic() + 30
        while not calls and time.monotonic() < deadline:
            time.sleep(0.01)
        print('done callback', calls)

    with ProcessPoolExecutor(max_workers=2, initializer=set_label, initargs=('init',)) as ex:
        print('initializer', list(ex.map(read_label, range(4))))

    ex = ProcessPoolExecutor(max_workers=2)
    fs = [ex.submit(nap, i) for i in range(5)]
    ex.shutdown(wait=True)
    print('shutdown(wait=True)', [f.result(timeout=0) for f in fs], all(f.done() for f in fs))
    try:
        ex.submit(cube, 1)
    except RuntimeError as err:
        print('submit after shutdown', type(err).__name__, err)

    ex = ProcessPoolExecutor(max_workers=1)
    fs = [ex.submit(nap, i) for i in range(40)]
    fs[0].result(timeout=60)
    ex.shutdown(wait=True, cancel_futures=True)
    cancelled = [f.cancelled() for f in fs]
    print('cancel_futures: some cancelled', any(cancelled), 'first ran', not cancelled[0],
          'all done', all(f.done() for f in fs),
          'cancelled are a tail', cancelled == sorted(cancelled))

    ex = ProcessPoolExecutor(max_workers=2)
    fs = [ex.submit(nap, i) for i in range(3)]
    ex.shutdown(wait=False)
    print('shutdown(wait=False) then results', [f.result(timeout=60) for f in fs])

    ex = ProcessPoolExecutor(max_workers=2, initializer=broken_init)
    f = ex.submit(cube, 2)
    try:
        f.result(timeout=60)
    except concurrent.futures.process.BrokenProcessPool as err:
        print('failing initializer', type(err).__name__)
    try:
        ex.submit(cube, 3)
    except concurrent.futures.process.BrokenProcessPool as err:
        print('submit to a broken pool', type(err).__name__)
    ex.shutdown(wait=True)


if __name__ == '__main__':
    main()
