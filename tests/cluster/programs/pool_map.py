"""Pool's mapping calls with functions defined in __main__: map, imap,
imap_unordered and starmap with chunksizes, the async forms with callbacks
and error_callback, the context manager and close/join."""
import multiprocessing
import threading


def square(x):
    return x * x


def add(a, b):
    return a + b


def describe(name, *, sep='-'):
    return sep.join([name, name.upper()])


def fail_on_seven(x):
    if x == 7:
        raise ValueError(f'seven is not allowed ({x})')
    return x


def main():
    with multiprocessing.Pool(3) as pool:
        print('map', pool.map(square, range(10)))
        print('map chunksize=4', pool.map(square, range(23), chunksize=4))
        print('map empty', pool.map(square, []))
        print('imap', list(pool.imap(square, range(12))))
        print('imap chunksize=5', list(pool.imap(square, range(31), chunksize=5)))
        print('imap_unordered sorted', sorted(pool.imap_unordered(square, range(17), chunksize=3)))
        it = pool.imap(square, iter(range(6)))
        print('imap next', [it.next(timeout=60) for _ in range(6)])
        print('starmap', pool.starmap(add, [(i, 10 * i) for i in range(8)]))
        print('starmap chunksize=2', pool.starmap(add, zip(range(9), range(9, 0, -1)), chunksize=2))
        print('starmap_async', pool.starmap_async(add, [('a', 'b'), ('c', 'd')]).get(60))
        print('apply', pool.apply(describe, ('spam',), {'sep': '+'}))
        print('apply_async', pool.apply_async(square, (12,)).get(60))

        done = threading.Event()
        seen = []

        def collect(value):
            seen.append(value)
            if len(seen) == 5:
                done.set()

        pending = [pool.apply_async(square, (i,), callback=collect) for i in range(5)]
        for r in pending:
            r.wait(60)
        print('callbacks fired', done.wait(60), sorted(seen))

        whole = []
        r = pool.map_async(square, range(7), chunksize=2, callback=whole.append)
        print('map_async', r.get(60), 'ready', r.ready(), 'successful', r.successful())
        print('map_async callback', whole)

        errors = []
        got = threading.Event()

        def on_error(exc):
            errors.append((type(exc).__name__, str(exc)))
            got.set()

        r = pool.apply_async(fail_on_seven, (7,), callback=seen.append, error_callback=on_error)
        r.wait(60)
        print('error_callback', got.wait(60), errors, 'successful', r.successful())
        errors.clear()
        got.clear()
        r = pool.map_async(fail_on_seven, range(10), chunksize=3, error_callback=on_error)
        r.wait(60)
        print('map_async error_callback', got.wait(60), errors)

    pool = multiprocessing.Pool(2)
    results = [pool.apply_async(add, (i, i)) for i in range(6)]
    pool.close()
    pool.join()
    print('after close/join', [r.get(0) for r in results], all(r.ready() for r in results))
    try:
        pool.apply_async(square, (1,))
    except ValueError as exc:
        print('apply after close', type(exc).__name__, exc)


if __name__ == '__main__':
    main()
