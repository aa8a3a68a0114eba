"""Pool's worker lifecycle: an initializer that sets a global in the worker,
terminate in the middle of a map, and the context manager's exit
terminating a pool with work pending."""
import multiprocessing
import time

TAG = 'unset'
CALLS = 0


def init_worker(tag, base):
    global TAG, CALLS
    TAG = tag
    CALLS = base


def tagged(x):
    global CALLS
    CALLS += 1
    return f'{TAG}:{x}', CALLS > 100


def slow(x):
    time.sleep(0.2)
    return x


def main():
    with multiprocessing.Pool(2, initializer=init_worker, initargs=('ready', 100)) as pool:
        print('initializer', pool.map(tagged, range(6), chunksize=1))
        print('initializer apply', pool.apply(tagged, ('x',)))

    pool = multiprocessing.Pool(2)
    it = pool.imap(slow, range(200))
    first = [next(it), next(it)]
    started = time.monotonic()
    pool.terminate()
    pool.join()
    print('terminate mid-map: first results', first, 'ended within 30 s', time.monotonic() - started < 30)
    try:
        pool.map(abs, [1])
    except ValueError as exc:
        print('map after terminate', type(exc).__name__, exc)

    with multiprocessing.Pool(2) as pool:
        r = pool.map_async(slow, range(100))
        time.sleep(0.5)
    # leaving the with block terminates the pool
    print('context manager exit terminated: ready', r.ready())


if __name__ == '__main__':
    main()
