"""Exceptions raised in Pool tasks come back with the remote traceback
(multiprocessing.pool.RemoteTraceback as __cause__, naming the task
function), from apply_async, map, imap and starmap; a task that cannot be
pickled (a lambda) is refused with the stdlib's pickling error; an exception
that cannot be pickled back is reported as MaybeEncodingError."""
import multiprocessing
import multiprocessing.pool
import pickle
import threading


class CustomError(Exception):
    def __init__(self, code, text):
        super().__init__(code, text)
        self.code = code


def explode(x):
    raise ValueError(f'bad value {x}')


def explode_custom(x):
    raise CustomError(x, 'custom failure')


def fail_some(x):
    if x == 5:
        raise KeyError(x)
    return x


def fail_pair(a, b):
    if a == b:
        raise ZeroDivisionError(f'{a} == {b}')
    return a - b


MODULE_LAMBDA = lambda x: x  # noqa: E731


def unpicklable_result(x):
    return threading.Lock()


def report(label, exc):
    cause = exc.__cause__
    print(label, type(exc).__name__, str(exc),
          '| cause', type(cause).__name__,
          isinstance(cause, multiprocessing.pool.RemoteTraceback),
          '| names task', any(name in str(cause) for name in
                              ('in explode', 'in explode_custom', 'in fail_some', 'in fail_pair')),
          '| has Traceback', 'Traceback (most recent call last)' in str(cause))


def main():
    with multiprocessing.Pool(2) as pool:
        try:
            pool.apply_async(explode, (3,)).get(60)
        except ValueError as exc:
            report('apply_async', exc)
        try:
            pool.apply(explode_custom, (42,))
        except CustomError as exc:
            report('custom', exc)
            print('custom attributes', exc.code, exc.args)
        try:
            pool.map(fail_some, range(10), chunksize=2)
        except KeyError as exc:
            report('map', exc)
        it = pool.imap(fail_some, range(8))
        out = []
        for _ in range(8):
            try:
                out.append(it.next(timeout=60))
            except KeyError as exc:
                out.append(f'KeyError {exc}')
                report('imap', exc)
        print('imap goes on after the error', out)
        try:
            pool.starmap(fail_pair, [(3, 1), (2, 2), (5, 4)])
        except ZeroDivisionError as exc:
            report('starmap', exc)
        r = pool.map_async(explode, [1])
        r.wait(60)
        print('failed map_async: ready', r.ready(), 'successful', r.successful())
        try:
            pool.apply(MODULE_LAMBDA, (1,))
        except Exception as exc:
            print('module lambda refused', type(exc).__name__, isinstance(exc, pickle.PicklingError),
                  str(exc).startswith("Can't pickle <function <lambda>"),
                  str(exc).endswith('attribute lookup <lambda> on __main__ failed'))
        try:
            pool.map(MODULE_LAMBDA, range(3))
        except Exception as exc:
            print('module lambda in map refused', type(exc).__name__, isinstance(exc, pickle.PicklingError))
        try:
            pool.apply(lambda: 1)
        except Exception as exc:
            print('local lambda refused', type(exc).__name__, exc)
        try:
            pool.apply(unpicklable_result, (1,))
        except Exception as exc:
            print('unpicklable result', type(exc).__name__,
                  isinstance(exc, multiprocessing.pool.MaybeEncodingError),
                  'Error sending result' in str(exc))
        print('pool still works', pool.map(abs, [-1, -2, -3]))


if __name__ == '__main__':
    main()
