"""ThreadPool: the pool's logic with worker threads and in-process queues
(results, ordering, errors, callbacks, timeouts, the reader role shared by
waiting threads, shutdown)."""

import functools
import gc
import itertools
import threading
import time
import warnings
import weakref

import pytest

import multiprocessing
from multiprocessing import pool as mpool
from multiprocessing.pool import ThreadPool

import _helpers_pool as h
from _helpers_pool import TIMEOUT
from _suite_pool import bounded_join


@pytest.fixture(scope='module')
def tp():
    pool = ThreadPool(3)
    yield pool
    pool.terminate()
    bounded_join(pool)


class CountedObject:
    n_instances = 0

    def __new__(cls):
        cls.n_instances += 1
        return object.__new__(cls)

    def __del__(self):
        type(self).n_instances -= 1


def test_workers_are_threads(tp):
    from multiprocessing.dummy import DummyProcess
    assert len(tp._pool) == 3
    assert all(isinstance(w, DummyProcess) and w.daemon for w in tp._pool)
    idents = set(tp.map_async(lambda _: (time.sleep(0.02), threading.get_ident())[1],
                              range(12), 1).get(TIMEOUT))
    assert threading.get_ident() not in idents
    assert repr(tp) == '<multiprocessing.pool.ThreadPool state=RUN pool_size=3>'


def test_signature_and_arguments():
    with pytest.raises(ValueError, match='Number of processes must be at least 1'):
        ThreadPool(0)
    with pytest.raises(TypeError):
        ThreadPool(2, None, (), 5)     # no maxtasksperchild for threads
    with pytest.raises(TypeError, match='initializer must be a callable'):
        ThreadPool(1, initializer='not callable')
    assert multiprocessing.pool.ThreadPool is ThreadPool
    from multiprocessing.dummy import Pool as DummyPool
    p = DummyPool(2)
    try:
        assert isinstance(p, ThreadPool)
    finally:
        p.terminate()
        bounded_join(p)


def test_apply_map_starmap(tp):
    assert tp.apply(h.sqr, (5,)) == 25
    assert tp.apply(h.add_kw, (1,), {'plus': 2}) == 3
    assert tp.map(h.sqr, range(10)) == [x * x for x in range(10)]
    assert tp.map(h.sqr, range(100), chunksize=20) == [x * x for x in range(100)]
    assert tp.map(lambda x: x + 1, (x for x in range(5))) == [1, 2, 3, 4, 5]
    pairs = list(zip(range(50), range(49, -1, -1)))
    assert tp.starmap(h.mul, pairs) == list(itertools.starmap(h.mul, pairs))
    assert tp.starmap_async(h.mul, pairs, 7).get(TIMEOUT) == list(itertools.starmap(h.mul, pairs))


def test_empty_iterables(tp):
    assert tp.map(h.sqr, []) == []
    assert list(tp.imap(h.sqr, [])) == []
    assert list(tp.imap_unordered(h.sqr, [])) == []
    assert tp.map_async(h.sqr, []).get(TIMEOUT) == []
    assert tp.map_async(h.sqr, [], chunksize=1).get(TIMEOUT) == []


def test_chunksize_zero_is_the_stdlib_quirk(tp):
    # As with the stdlib, chunksize=0 sends nothing and gives Nones.
    r = tp.map_async(h.sqr, [1, 2, 3], chunksize=0)
    assert r.ready() and r.get(0) == [None, None, None]


def test_imap_order_and_next(tp):
    pairs = [(0, 0.3), (1, 0.2), (2, 0.1), (3, 0.0), (4, 0.0)]
    assert list(tp.imap(h.nap_then_return, pairs)) == [0, 1, 2, 3, 4]
    assert sorted(tp.imap_unordered(h.nap_then_return, pairs)) == [0, 1, 2, 3, 4]
    it = tp.imap(h.sqr, range(10))
    assert [it.next(TIMEOUT) for _ in range(10)] == [x * x for x in range(10)]
    with pytest.raises(StopIteration):
        it.next(TIMEOUT)
    it = tp.imap(h.sqr, range(1000), chunksize=100)
    assert not isinstance(it, mpool.IMapIterator)       # a generator over chunks
    assert list(it) == [x * x for x in range(1000)]
    unordered = tp.imap_unordered(h.sqr, range(1000), chunksize=100)
    assert sorted(unordered) == [x * x for x in range(1000)]


def test_timeouts(tp):
    gate = threading.Event()
    r = tp.apply_async(gate.wait, (TIMEOUT,))
    assert not r.ready()
    with pytest.raises(multiprocessing.TimeoutError):
        r.get(timeout=0.05)
    with pytest.raises(ValueError, match='not ready'):
        r.successful()
    assert r.wait(0.01) is None
    it = tp.imap(lambda x: gate.wait(TIMEOUT) and x, [5])
    with pytest.raises(multiprocessing.TimeoutError):
        it.next(timeout=0.05)
    gate.set()
    assert r.get(TIMEOUT) is True and r.successful()
    assert it.next(TIMEOUT) == 5


def test_exceptions_are_not_wrapped(tp):
    with pytest.raises(RuntimeError) as info:
        tp.apply(h.raise_runtime_error, ('x',))
    assert info.value.args == ('x',) and info.value.__cause__ is None
    with pytest.raises(ValueError, match='bad item 3'):
        tp.map(functools.partial(h.fail_on, bad=3), range(10), 1)
    r = tp.apply_async(h.raise_key_error)
    r.wait(TIMEOUT)
    assert r.ready() and not r.successful()


def test_errors_of_the_iterable(tp):
    gen = h.exception_throwing_generator
    with pytest.raises(h.SayWhenError):
        tp.map(h.sqr, gen(1, -1), 1)
    with pytest.raises(h.SayWhenError):
        tp.map(h.sqr, gen(10, 3), 1)
    with pytest.raises(h.SayWhenError):
        tp.map(h.sqr, h.SpecialIterable(), 1)
    it = tp.imap(h.sqr, gen(10, 3), 1)
    assert [it.next(TIMEOUT) for _ in range(3)] == [0, 1, 4]
    with pytest.raises(h.SayWhenError):
        it.next(TIMEOUT)
    with pytest.raises(StopIteration):
        it.next(TIMEOUT)
    it = tp.imap(h.sqr, gen(20, 7), 2)
    assert [next(it) for _ in range(6)] == [x * x for x in range(6)]
    with pytest.raises(h.SayWhenError):
        next(it)
    it = tp.imap_unordered(h.sqr, gen(20, 7), 2)
    expected = [x * x for x in range(20)]
    with pytest.raises(h.SayWhenError):
        for _ in range(20):
            expected.remove(next(it))
    it = tp.imap(h.sqr, 5)           # not iterable: fails at the first item
    with pytest.raises(TypeError):
        it.next(TIMEOUT)


def test_callbacks(tp):
    calls = []
    tp.map_async(int, ['1'], callback=calls.append, error_callback=calls.append).wait(TIMEOUT)
    tp.map_async(int, ['a'], callback=calls.append, error_callback=calls.append).wait(TIMEOUT)
    assert calls[0] == [1] and isinstance(calls[1], ValueError) and len(calls) == 2
    seen = []
    assert tp.apply_async(h.sqr, (3,), callback=seen.append).get(TIMEOUT) == 9
    assert seen == [9]


def test_callback_may_use_the_pool(tp):
    # A callback runs in the result handler thread; waiting on the pool from
    # there must not deadlock (it does with the stdlib).
    out = []
    r = tp.apply_async(h.sqr, (2,), callback=lambda v: out.append(tp.apply(h.sqr, (v,))))
    assert r.get(TIMEOUT) == 4 and out == [16]
    out.clear()
    r = tp.map_async(h.sqr, range(4), callback=lambda v: out.append(tp.map(h.sqr, v)))
    r.wait(TIMEOUT)
    assert out == [[0, 1, 16, 81]]


def test_terminate_from_a_callback():
    p = ThreadPool(2)
    r = p.map_async(h.sqr, range(10), callback=lambda v: p.terminate())
    assert r.get(TIMEOUT) == [x * x for x in range(10)]
    assert p._state == mpool.TERMINATE
    bounded_join(p)


def test_failing_callback_is_reported_and_pool_keeps_working(tp, capfd):
    def bad_callback(_):
        raise ZeroDivisionError('callback broke')
    r = tp.apply_async(h.sqr, (3,), callback=bad_callback)
    assert r.get(TIMEOUT) == 9
    err = capfd.readouterr().err
    assert 'Exception in a callback' in err and 'ZeroDivisionError: callback broke' in err
    assert tp.map(h.sqr, range(5)) == [0, 1, 4, 9, 16]


def test_many_small_tasks(tp):
    n = 30000
    expected = [x * x for x in range(n)]
    assert tp.map_async(h.sqr, range(n), chunksize=1).get(TIMEOUT) == expected
    assert list(tp.imap(h.sqr, range(n))) == expected
    assert sorted(tp.imap_unordered(h.sqr, range(n))) == expected
    results = [tp.apply_async(h.sqr, (i,)) for i in range(2000)]
    assert [r.get(TIMEOUT) for r in results] == [i * i for i in range(2000)]


def test_threads_waiting_together(tp):
    failures = []

    def run(base):
        try:
            for i in range(300):
                if tp.apply_async(h.sqr, (base + i,)).get(TIMEOUT) != (base + i) ** 2:
                    failures.append(base + i)
            squares = [x * x for x in range(base, base + 500)]
            if list(tp.imap(h.sqr, range(base, base + 500))) != squares:
                failures.append(('imap', base))
            r = tp.map_async(h.sqr, range(base, base + 200), 3)
            if r.get(TIMEOUT) != [x * x for x in range(base, base + 200)]:
                failures.append(('map', base))
        except BaseException as e:  # noqa: B902 - reported below
            failures.append(e)
    threads = [threading.Thread(target=run, args=(k * 10000,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
        assert not t.is_alive()
    assert failures == []


def test_infinite_iterable_with_imap():
    p = ThreadPool(2)
    try:
        it = p.imap(h.sqr, itertools.count())
        assert [it.next(TIMEOUT) for _ in range(100)] == [x * x for x in range(100)]
    finally:
        p.terminate()
        bounded_join(p)


def test_release_task_refs(tp):
    objs = [CountedObject() for _ in range(10)]
    refs = [weakref.ref(o) for o in objs]
    tp.map(h.identity, objs)
    del objs
    gc.collect()
    deadline = time.monotonic() + TIMEOUT
    while any(r() is not None for r in refs) and time.monotonic() < deadline:
        time.sleep(0.01)
        gc.collect()
    assert {r() for r in refs} == {None}
    assert CountedObject.n_instances == 0


def test_close_and_join():
    p = ThreadPool(2)
    with pytest.raises(ValueError, match='Pool is still running'):
        p.join()
    results = [p.apply_async(h.sqr, (i, 0.02)) for i in range(8)]
    p.close()
    assert 'state=CLOSE' in repr(p)
    with pytest.raises(ValueError, match='Pool not running'):
        p.apply_async(h.sqr, (1,))
    bounded_join(p)
    assert [r.get(0) for r in results] == [i * i for i in range(8)]
    assert all(not w.is_alive() for w in p._pool)


def test_terminate_while_busy():
    p = ThreadPool(3)
    r = p.map_async(time.sleep, [0.1] * 10000, chunksize=1)
    time.sleep(0.15)
    p.terminate()
    assert 'state=TERMINATE' in repr(p)
    bounded_join(p)
    assert not r.ready()
    assert all(not w.is_alive() for w in p._pool)


def test_terminate_does_not_wait_for_running_tasks():
    # As with the stdlib: busy worker threads cannot be stopped, and
    # terminate() leaves them to finish their task (they are daemon threads)
    # instead of waiting for them; their results are never delivered.
    p = ThreadPool(2)
    r = p.map_async(time.sleep, [3, 3, 3])
    time.sleep(0.3)
    started = time.monotonic()
    p.terminate()
    assert time.monotonic() - started < 1.0
    assert p._state == mpool.TERMINATE and not r.ready()
    assert not p._result_handler.is_alive() and not p._task_handler.is_alive()
    assert sum(w.is_alive() for w in p._pool) == 2
    bounded_join(p)               # join() does wait for them, as stock's does
    assert not r.ready() and not any(w.is_alive() for w in p._pool)


def test_context_manager():
    with ThreadPool(2) as p:
        assert p.map(h.sqr, range(4)) == [0, 1, 4, 9]
    assert p._state == mpool.TERMINATE
    bounded_join(p)
    with pytest.raises(ValueError):
        with p:
            pass
    with pytest.raises(ValueError, match='Pool not running'):
        p.apply(h.sqr, (1,))


def test_initializer_runs_in_each_worker():
    seen = []
    lock = threading.Lock()

    def init(tag):
        with lock:
            seen.append((tag, threading.get_ident()))
    p = ThreadPool(3, init, ('t',))
    try:
        assert p.map(h.sqr, range(6)) == [x * x for x in range(6)]
        assert sorted(t for t, _ in seen) == ['t', 't', 't']
        assert len({ident for _, ident in seen}) == 3
    finally:
        p.terminate()
        bounded_join(p)


def test_resource_warning():
    p = ThreadPool(1)
    p.terminate()
    bounded_join(p)
    p._state = mpool.RUN
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        p = None
        gc.collect()
    assert any(issubclass(w.category, ResourceWarning)
               and 'unclosed running multiprocessing pool' in str(w.message) for w in caught)
