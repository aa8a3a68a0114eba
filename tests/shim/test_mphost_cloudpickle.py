"""serializer="cloudpickle" of mphost.Pool: lambdas, closures and functions
defined in __main__ or in -c code, and their arguments, reach the workers
of every start method; results come back (a returned lambda too); errors
keep their type and remote traceback; pools without it pickle as the
stdlib's do."""

import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import multiprocessing
from multiprocessing.pool import MaybeEncodingError, RemoteTraceback

from mphost._pool import Pool

TIMEOUT = 60
METHODS = ['fork', 'spawn', 'forkserver']


@pytest.fixture(scope='module', params=METHODS)
def pool(request):
    p = Pool(2, context=multiprocessing.get_context(request.param), serializer='cloudpickle')
    yield p
    p.terminate()
    p.join()


def test_lambdas_and_closures(pool):
    k = 7
    assert pool.map(lambda x: x + k, range(10)) == [x + 7 for x in range(10)]
    assert pool.starmap(lambda x, y: x * y + k, [(1, 2), (3, 4)]) == [9, 19]
    assert list(pool.imap(lambda x: -x, range(5), 2)) == [0, -1, -2, -3, -4]
    assert sorted(pool.imap_unordered(lambda x: x % 3, range(6))) == [0, 0, 1, 1, 2, 2]
    assert pool.apply_async(lambda a, b=1: a - b, (10,), {'b': k}).get(TIMEOUT) == 3

    def make_adder(n):
        return lambda x: x + n
    assert pool.map(make_adder(100), [1, 2], chunksize=1) == [101, 102]


def test_functions_and_lambdas_as_arguments(pool):
    fns = [lambda: 1, lambda: 2, abs]
    assert pool.map(lambda f: f() if f is not abs else f(-3), fns) == [1, 2, 3]
    assert pool.apply(lambda f, x: f(x), (lambda y: y * 3, 4)) == 12
    state = {'scale': 5, 'f': lambda v: v + 1}
    assert pool.apply(lambda d: d['f'](d['scale']), (state,)) == 6


def test_numpy_arrays_both_ways(pool):
    big = np.arange(2_000_000, dtype=np.float64)           # 16 MB
    offset = 0.5
    out = pool.apply_async(lambda a: a * 2 + offset, (big,)).get(TIMEOUT)
    assert out.dtype == np.float64 and np.array_equal(out, big * 2 + 0.5)
    parts = [np.full(1000, i, dtype=np.int32) for i in range(8)]
    assert pool.map(lambda a: int(a.sum()), parts, chunksize=3) == [1000 * i for i in range(8)]
    sums = list(pool.imap(lambda a: (a.shape, a.mean()), parts))
    assert sums == [((1000,), float(i)) for i in range(8)]
    obj = np.array([lambda: 4, 5], dtype=object)
    assert pool.apply(lambda a: a[0]() + a[1], (obj,)) == 9


def test_returned_lambdas_and_classes(pool):
    f = pool.apply(lambda n: (lambda x: x * n), (6,))
    assert f(7) == 42
    fs = pool.map(lambda n: (lambda: n), range(4))
    assert [g() for g in fs] == [0, 1, 2, 3]

    def build():
        class Point:
            def __init__(self, x):
                self.x = x
        return Point(3)
    assert pool.apply(build).x == 3
    assert pool.map(lambda i: {'i': i, 'sq': [i * i] * 20}, range(3))[2]['sq'][0] == 4


def test_errors_keep_type_and_traceback(pool):
    def broken(x):
        raise LookupError(f'no {x}')
    with pytest.raises(LookupError, match='no [12]') as info:   # the first to fail
        pool.map(broken, [1, 2], chunksize=1)
    cause = info.value.__cause__
    assert isinstance(cause, RemoteTraceback)
    assert 'in broken' in str(cause) and "raise LookupError(f'no {x}')" in str(cause)
    with pytest.raises(ZeroDivisionError):
        pool.apply(lambda: 1 / 0)
    it = pool.imap(lambda x: 1 // x, [1, 0, 2])
    assert it.next(TIMEOUT) == 1
    with pytest.raises(ZeroDivisionError):
        it.next(TIMEOUT)
    assert it.next(TIMEOUT) == 0
    assert pool.apply(abs, (-1,)) == 1            # the pool is still fine


def test_unpicklable_arguments_fail_the_call(pool):
    import threading
    with pytest.raises(TypeError, match='lock'):
        pool.apply(lambda lock: 1, (threading.Lock(),))
    with pytest.raises(TypeError):
        pool.map(len, [threading.Lock()])
    assert pool.map(abs, [-1, -2]) == [1, 2]


def test_a_result_that_nothing_can_pickle(pool):
    import threading
    with pytest.raises(MaybeEncodingError):
        pool.apply(lambda: threading.Lock())


@pytest.mark.parametrize('method', METHODS)
def test_hooks_and_state_travel_by_value(method):
    base = 10
    pool = Pool(2, context=multiprocessing.get_context(method), serializer='cloudpickle',
                initializer=lambda v: os.environ.__setitem__('MPHOST_TEST_INIT', str(v)),
                initargs=(base,), worker_state=True,
                worker_init=lambda s: s.update(n=0, f=lambda: base),
                worker_exit=lambda s: (s['n'], lambda: s['n']))
    try:
        def task(s, x):
            s['n'] += 1
            return int(os.environ['MPHOST_TEST_INIT']) + s['f']() + x
        assert pool.map(task, range(6), chunksize=1) == [20 + x for x in range(6)]
        assert pool.apply(task, (1,)) == 21
    finally:
        pool.close()
        pool.join()
    exits = pool.get_exit_results()
    assert sum(n for n, _ in exits) == 7
    assert all(f() == n for n, f in exits)


@pytest.mark.parametrize('method', METHODS)
def test_functions_of_c_code_and_main(method, tmp_path):
    prog = textwrap.dedent(f"""
        import multiprocessing
        from mphost._pool import Pool

        def square(x):
            return x * x

        class Box:
            def __init__(self, v):
                self.v = v

        def unbox(b):
            return Box(b.v + 1)

        if __name__ == '__main__':
            with Pool(2, context=multiprocessing.get_context({method!r}),
                      serializer='cloudpickle') as p:
                print(p.map(square, range(5)))
                print(p.apply_async(unbox, (Box(4),)).get(60).v)
                print(list(p.imap(lambda b: b.v, [Box(1), Box(2)])))
    """)
    expected = '[0, 1, 4, 9, 16]\n5\n[1, 2]\n'
    done = subprocess.run([sys.executable, '-c', prog], capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert (done.returncode, done.stdout) == (0, expected), done.stderr
    script = tmp_path / 'main_prog.py'
    script.write_text(prog)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert (done.returncode, done.stdout) == (0, expected), done.stderr


def test_c_code_without_cloudpickle_fails_as_stock_does(tmp_path):
    # The same -c program on a plain pool under spawn fails as the stdlib's
    # does: the worker has no __main__.square.
    prog = textwrap.dedent("""
        import multiprocessing
        from mphost._pool import Pool

        def square(x):
            return x * x

        if __name__ == '__main__':
            with Pool(1, context=multiprocessing.get_context('spawn')) as p:
                try:
                    p.map(square, range(3))
                except AttributeError as e:
                    print('AttributeError', 'square' in str(e))
    """)
    done = subprocess.run([sys.executable, '-c', prog], capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert done.stdout == 'AttributeError True\n', done.stderr


@pytest.mark.parametrize('method', METHODS)
def test_plain_pools_still_refuse_lambdas(method):
    for p in (Pool(1, context=multiprocessing.get_context(method)),
              Pool(1, context=multiprocessing.get_context(method), serializer='pickle')):
        try:
            with pytest.raises((pickle.PicklingError, AttributeError)):
                p.map(lambda x: x, [1])
            assert p.map(abs, [-1]) == [1]
        finally:
            p.terminate()
            p.join()


def test_option_errors():
    with pytest.raises(ValueError, match="serializer must be 'pickle' or 'cloudpickle'"):
        Pool(1, serializer='json')
    with pytest.raises(TypeError, match='serializer must be a str or None'):
        Pool(1, serializer=pickle)


def test_missing_cloudpickle_is_a_clear_import_error():
    prog = textwrap.dedent("""
        import sys
        sys.modules['cloudpickle'] = None
        from mphost._pool import Pool
        try:
            Pool(1, serializer='cloudpickle')
        except ImportError as e:
            print(e)
    """)
    done = subprocess.run([sys.executable, '-c', prog], capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert "serializer='cloudpickle' needs the cloudpickle package" in done.stdout, done.stderr
