"""multiprocessing.Pool with worker processes, written once and instantiated
per start method by test_pool_{fork,spawn,forkserver}.py (each sets
START_METHOD). Every wait is bounded: results are fetched with
get(TIMEOUT) and joins run under bounded_join.
"""

import functools
import gc
import itertools
import math
import os
import pickle
import signal
import threading
import time
import warnings
import weakref

import pytest

import multiprocessing
from multiprocessing import pool as mpool

import _helpers_pool as h
from _helpers_pool import TIMEOUT


def bounded_join(pool, timeout=TIMEOUT):
    """pool.join(), failing the test instead of hanging."""
    errors = []

    def run():
        try:
            pool.join()
        except BaseException as e:  # noqa: B902 - reported below
            errors.append(e)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f'join() did not return within {timeout}s'
    if errors:
        raise errors[0]


def wait_until(predicate, timeout=TIMEOUT, interval=0.02):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, 'condition not reached in time'
        time.sleep(interval)


def pid_gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


class PoolSuite:
    START_METHOD = None

    @pytest.fixture(scope='class')
    def shared(self, request):
        """A pool kept for the tests that leave it as they found it."""
        pool = multiprocessing.get_context(request.cls.START_METHOD).Pool(3)
        yield pool
        pool.terminate()
        bounded_join(pool)

    @pytest.fixture
    def ctx(self):
        return multiprocessing.get_context(self.START_METHOD)

    @pytest.fixture
    def make_pool(self, ctx):
        pools = []

        def make(*args, **kwds):
            p = ctx.Pool(*args, **kwds)
            pools.append(p)
            return p
        yield make
        for p in pools:
            p.terminate()
            bounded_join(p)

    # -- the API ---------------------------------------------------------

    def test_workers_are_processes_of_this_method(self, shared):
        assert len(shared._pool) == 3
        for w in shared._pool:
            assert 'PoolWorker' in w.name and w.daemon and w.is_alive()
        pids = set(shared.map_async(h.pid_after_nap, range(12), 1).get(TIMEOUT))
        assert os.getpid() not in pids
        assert pids <= {w.pid for w in shared._pool}

    def test_apply(self, shared):
        assert shared.apply(h.sqr, (5,)) == 25
        assert shared.apply(h.sqr, (), {'x': 3}) == 9
        assert shared.apply(h.add_kw, (1,), {'plus': 2}) == 3

    def test_map(self, shared):
        assert shared.map(h.sqr, range(10)) == [x * x for x in range(10)]
        assert shared.map(h.sqr, range(100), chunksize=20) == [x * x for x in range(100)]
        assert shared.map(h.sqr, (x for x in range(7))) == [x * x for x in range(7)]
        assert shared.map(h.sqr, []) == []
        assert shared.map_async(h.sqr, []).get(TIMEOUT) == []
        assert shared.map_async(h.sqr, [], chunksize=1).get(TIMEOUT) == []

    def test_starmap(self, shared):
        pairs = list(zip(range(10), range(9, -1, -1)))
        assert shared.starmap(h.mul, pairs) == list(itertools.starmap(h.mul, pairs))
        pairs = list(zip(range(100), range(99, -1, -1)))
        assert shared.starmap(h.mul, pairs, chunksize=20) == list(itertools.starmap(h.mul, pairs))
        expected = list(itertools.starmap(h.mul, pairs))
        assert shared.starmap_async(h.mul, pairs).get(TIMEOUT) == expected

    def test_map_async_callbacks(self, shared):
        calls = []
        shared.map_async(int, ['1'], callback=calls.append,
                         error_callback=calls.append).wait(TIMEOUT)
        assert calls == [[1]]
        shared.map_async(int, ['a'], callback=calls.append,
                         error_callback=calls.append).wait(TIMEOUT)
        assert len(calls) == 2 and isinstance(calls[1], ValueError)

    def test_apply_async_callbacks_run_before_get_returns(self, shared):
        seen = []
        r = shared.apply_async(h.sqr, (4,), callback=seen.append)
        assert r.get(TIMEOUT) == 16 and seen == [16]
        errors = []
        r = shared.apply_async(h.raise_key_error, error_callback=errors.append)
        with pytest.raises(KeyError):
            r.get(TIMEOUT)
        assert len(errors) == 1 and isinstance(errors[0], KeyError)

    def test_async_result_states(self, shared):
        r = shared.apply_async(h.sqr, (6, 1.0))
        assert not r.ready()
        with pytest.raises(ValueError, match='not ready'):
            r.successful()
        with pytest.raises(multiprocessing.TimeoutError):
            r.get(timeout=0.05)
        assert r.wait(0.01) is None
        assert r.get(TIMEOUT) == 36
        assert r.ready() and r.successful()
        r = shared.apply_async(h.raise_key_error)
        r.wait(TIMEOUT)
        assert r.ready() and not r.successful()

    def test_imap(self, shared):
        it = shared.imap(h.sqr, range(10))
        assert isinstance(it, mpool.IMapIterator)
        assert list(it) == [x * x for x in range(10)]
        it = shared.imap(h.sqr, range(10))
        for i in range(10):
            assert it.next(TIMEOUT) == i * i
        with pytest.raises(StopIteration):
            it.next(TIMEOUT)
        it = shared.imap(h.sqr, range(1000), chunksize=100)
        assert list(it) == [x * x for x in range(1000)]

    def test_imap_keeps_input_order(self, shared):
        # Earlier items take longer, so they complete after later ones.
        pairs = [(0, 0.4), (1, 0.3), (2, 0.2), (3, 0.0), (4, 0.0), (5, 0.0)]
        assert list(shared.imap(h.nap_then_return, pairs)) == list(range(6))
        assert sorted(shared.imap_unordered(h.nap_then_return, pairs)) == list(range(6))
        squares = shared.starmap_async(h.sqr, pairs, chunksize=1).get(TIMEOUT)
        assert squares == [i * i for i in range(6)]

    def test_imap_next_timeout(self, shared):
        it = shared.imap(functools.partial(h.sqr, wait=1.0), [7])
        with pytest.raises(multiprocessing.TimeoutError):
            it.next(timeout=0.05)
        assert it.next(timeout=TIMEOUT) == 49
        with pytest.raises(StopIteration):
            it.next(timeout=TIMEOUT)

    def test_imap_unordered(self, shared):
        it = shared.imap_unordered(h.sqr, range(10))
        assert isinstance(it, mpool.IMapUnorderedIterator)
        assert sorted(it) == [x * x for x in range(10)]
        it = shared.imap_unordered(h.sqr, range(1000), chunksize=100)
        assert sorted(it) == [x * x for x in range(1000)]
        assert list(shared.imap_unordered(h.sqr, [])) == []
        assert list(shared.imap(h.sqr, [])) == []

    def test_errors_of_the_iterable(self, shared):
        gen = h.exception_throwing_generator
        with pytest.raises(h.SayWhenError):
            shared.map(h.sqr, gen(1, -1), 1)
        with pytest.raises(h.SayWhenError):
            shared.map(h.sqr, gen(10, 3), 1)
        with pytest.raises(h.SayWhenError):
            shared.map_async(h.sqr, h.SpecialIterable(), 1).get(TIMEOUT)

        it = shared.imap(h.sqr, gen(1, -1), 1)
        with pytest.raises(h.SayWhenError):
            it.next(TIMEOUT)
        it = shared.imap(h.sqr, gen(10, 3), 1)
        assert [it.next(TIMEOUT) for _ in range(3)] == [0, 1, 4]
        with pytest.raises(h.SayWhenError):
            it.next(TIMEOUT)
        with pytest.raises(StopIteration):
            it.next(TIMEOUT)
        # With chunks, the error takes the place of the chunk being built.
        it = shared.imap(h.sqr, gen(20, 7), 2)
        assert [next(it) for _ in range(6)] == [x * x for x in range(6)]
        with pytest.raises(h.SayWhenError):
            next(it)
        it = shared.imap(h.sqr, gen(20, 7), 4)
        assert [next(it) for _ in range(4)] == [x * x for x in range(4)]
        with pytest.raises(h.SayWhenError):
            next(it)

        it = shared.imap_unordered(h.sqr, gen(10, 3), 1)
        expected = [x * x for x in range(10)]
        with pytest.raises(h.SayWhenError):
            for _ in range(10):
                value = it.next(TIMEOUT)
                expected.remove(value)

    def test_not_iterable(self, shared):
        with pytest.raises(TypeError):
            shared.map(h.sqr, 5)
        it = shared.imap(h.sqr, 5)
        with pytest.raises(TypeError):
            it.next(TIMEOUT)

    def test_default_chunksize(self, shared):
        workers = len(shared._pool)
        for n in (1, 11, 12, 13, 100, 1001):
            r = shared.map_async(h.sqr, range(n))
            assert r._chunksize == math.ceil(n / (4 * workers))
            assert r.get(TIMEOUT) == [x * x for x in range(n)]
        assert shared.map_async(h.sqr, [])._chunksize == 0
        with pytest.raises(ValueError, match='Chunksize must be 1\\+, not 0'):
            shared.imap(h.sqr, range(3), chunksize=0)

    def test_many_small_tasks_keep_their_places(self, shared):
        n = 20000
        expected = [x * x for x in range(n)]
        assert shared.map_async(h.sqr, range(n), chunksize=1).get(TIMEOUT) == expected
        it = shared.imap(h.sqr, range(n))
        assert [it.next(TIMEOUT) for _ in range(n)] == expected
        assert sorted(shared.imap_unordered(h.sqr, range(n))) == expected
        pairs = [(x, 3) for x in range(n)]
        products = shared.starmap_async(h.mul, pairs, chunksize=1).get(TIMEOUT)
        assert products == [3 * x for x in range(n)]

    def test_caller_waits_while_results_fill_the_queue(self, make_pool):
        # Results bigger than the pipe keep workers blocked writing them
        # (holding the queue's write lock) until the parent reads; a caller
        # that starts waiting then must take over reading, not deadlock.
        p = make_pool(2)
        it = p.imap(h.big_result, range(1000))
        for i in range(1000):
            if i % 40 == 0:
                time.sleep(0.008)    # let the result handler take over reading
            assert it.next(TIMEOUT) == h.big_result(i)
        r = p.map_async(h.big_result, range(200), 1)
        time.sleep(0.05)
        assert r.get(TIMEOUT) == [h.big_result(i) for i in range(200)]

    def test_apply_async_flood(self, shared):
        results = [shared.apply_async(h.sqr, (i,)) for i in range(500)]
        assert [r.get(TIMEOUT) for r in results] == [i * i for i in range(500)]

    def test_threads_waiting_together(self, shared):
        failures = []

        def run(base):
            try:
                for i in range(200):
                    if shared.apply_async(h.sqr, (base + i,)).get(TIMEOUT) != (base + i) ** 2:
                        failures.append(base + i)
                it = shared.imap(h.sqr, range(base, base + 300))
                if list(it) != [x * x for x in range(base, base + 300)]:
                    failures.append(('imap', base))
            except BaseException as e:  # noqa: B902 - reported below
                failures.append(e)
        threads = [threading.Thread(target=run, args=(k * 1000,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT)
            assert not t.is_alive()
        assert failures == []

    def test_results_are_not_kept_alive(self, shared):
        # Neither the arguments nor the copies that came back stay referenced
        # by the pool, also when the result handler thread read them.
        objs = [h.CountedObject() for _ in range(10)]
        refs = [weakref.ref(o) for o in objs]
        r = shared.map_async(h.identity, objs, 1)
        time.sleep(0.3)              # the result handler reads the answers
        values = r.get(TIMEOUT)
        assert len(values) == 10 and h.CountedObject.n_instances == 20
        del objs, values, r
        gc.collect()
        wait_until(lambda: all(ref() is None for ref in refs) and h.CountedObject.n_instances == 0,
                   timeout=10)

    # -- errors coming back from workers ---------------------------------

    def test_exception_carries_remote_traceback(self, make_pool):
        p = make_pool(1)
        with pytest.raises(RuntimeError) as info:
            p.apply_async(h.raise_runtime_error, (123,)).get(TIMEOUT)
        exc = info.value
        assert type(exc) is RuntimeError and exc.args == (123,)
        cause = exc.__cause__
        assert type(cause) is mpool.RemoteTraceback
        assert 'raise RuntimeError(value)  # a line the remote traceback shows' in cause.tb
        assert str(cause) == cause.tb
        # The iterable's own errors are not remote.
        with pytest.raises(h.SayWhenError) as info:
            p.map_async(h.sqr, h.exception_throwing_generator(1, -1), 1).get(TIMEOUT)
        assert info.value.__cause__ is None

    def test_error_in_one_chunk_fails_the_map(self, shared):
        with pytest.raises(ValueError, match='bad item 37'):
            shared.map_async(functools.partial(h.fail_on, bad=37), range(100), 1).get(TIMEOUT)
        assert shared.map(h.sqr, range(5)) == [0, 1, 4, 9, 16]

    def test_unpicklable_result(self, shared):
        for _ in range(20):
            errors = []
            r = shared.apply_async(h.unpicklable_result, error_callback=errors.append)
            with pytest.raises(mpool.MaybeEncodingError) as info:
                r.get(TIMEOUT)
            assert errors == [info.value]
            assert info.value.exc and info.value.value
            assert 'Error sending result' in str(info.value)
        with pytest.raises(mpool.MaybeEncodingError, match='UnpicklableError'):
            shared.apply_async(h.raise_unpicklable_error).get(TIMEOUT)
        # Nothing was lost: the workers are the same and still serve.
        assert len(shared._pool) == 3
        assert shared.map(h.sqr, range(5)) == [0, 1, 4, 9, 16]

    def test_exception_that_cannot_be_rebuilt(self, shared):
        # The stdlib's result handler dies on such an exception and the call
        # never completes; here the call fails with MaybeEncodingError.
        with pytest.raises(mpool.MaybeEncodingError, match='TwoArgumentError'):
            shared.apply_async(h.raise_two_argument_error, (1,)).get(TIMEOUT)
        with pytest.raises(mpool.MaybeEncodingError, match='missing 1 required positional'):
            shared.map_async(h.raise_two_argument_error, range(50), 1).get(TIMEOUT)
        assert shared.apply_async(h.sqr, (3,)).get(TIMEOUT) == 9

    def test_unpicklable_results_in_a_batch(self, shared):
        n = 3000
        values = shared.map_async(h.identity, range(n), chunksize=1).get(TIMEOUT)
        assert values == list(range(n))
        errors = []
        r = shared.map_async(functools.partial(h.unpicklable_at, bad=1234), range(n), chunksize=1,
                             error_callback=errors.append)
        with pytest.raises(mpool.MaybeEncodingError, match='lambda'):
            r.get(TIMEOUT)
        assert errors == [r._value]
        it = shared.imap(functools.partial(h.unpicklable_at, bad=1234), range(n))
        for i in range(n):
            if i == 1234:
                with pytest.raises(mpool.MaybeEncodingError):
                    it.next(TIMEOUT)
            else:
                assert it.next(TIMEOUT) == i

    def test_unpicklable_argument(self, shared):
        with pytest.raises(RuntimeError, match='cannot pickle'):
            shared.map_async(h.sqr, [h.Unpicklable()] * 10).get(TIMEOUT)
        with pytest.raises(RuntimeError, match='cannot pickle'):
            shared.apply_async(h.sqr, (h.Unpicklable(),)).get(TIMEOUT)
        with pytest.raises(RuntimeError, match='cannot pickle'):
            items = list(range(50)) + [h.Unpicklable()]
            shared.map_async(h.identity, items, chunksize=1).get(TIMEOUT)
        assert shared.map(h.sqr, range(5)) == [0, 1, 4, 9, 16]

    # -- lifecycle ---------------------------------------------------------

    def test_invalid_arguments(self, ctx):
        for n in (-1, 0):
            with pytest.raises(ValueError, match='Number of processes must be at least 1'):
                ctx.Pool(n)
        for value in (0, -1, 0.5, '12'):
            with pytest.raises(ValueError, match='maxtasksperchild'):
                ctx.Pool(3, maxtasksperchild=value)
        with pytest.raises(TypeError, match='initializer must be a callable'):
            ctx.Pool(1, initializer=42)

    def test_default_size_is_cpu_count(self, make_pool):
        p = make_pool()
        assert len(p._pool) == os.cpu_count()
        assert f'pool_size={os.cpu_count()}' in repr(p)

    def test_states_and_repr(self, make_pool):
        p = make_pool(2)
        assert repr(p) == '<multiprocessing.pool.Pool state=RUN pool_size=2>'
        with pytest.raises(ValueError, match='Pool is still running'):
            p.join()
        r = p.apply_async(h.sqr, (3, 0.2))
        p.close()
        assert 'state=CLOSE' in repr(p)
        with pytest.raises(ValueError, match='Pool not running'):
            p.apply_async(h.sqr, (1,))
        with pytest.raises(ValueError, match='Pool not running'):
            p._check_running()
        with pytest.raises(ValueError, match='Pool not running'):
            p.map(h.sqr, [1])
        with pytest.raises(ValueError, match='Pool not running'):
            p.imap(h.sqr, [1])
        bounded_join(p)
        assert r.ready() and r.get(0) == 9
        for w in p._pool:
            assert w.exitcode == 0
        p.terminate()
        assert 'state=TERMINATE' in repr(p)

    def test_close_lets_pending_work_finish(self, make_pool):
        p = make_pool(2)
        results = [p.apply_async(h.sqr, (i, 0.05)) for i in range(6)]
        it = p.imap(h.sqr, range(50))
        p.close()
        bounded_join(p)
        assert [r.get(0) for r in results] == [i * i for i in range(6)]
        assert list(it) == [x * x for x in range(50)]

    def test_context_manager_terminates(self, ctx):
        with ctx.Pool(2) as p:
            assert p.map_async(h.sqr, range(10)).get(TIMEOUT) == [x * x for x in range(10)]
            pids = [w.pid for w in p._pool]
        assert p._state == mpool.TERMINATE
        bounded_join(p)
        # A forkserver child is reaped by the zygote, a moment after join().
        wait_until(lambda: all(pid_gone(pid) for pid in pids))
        with pytest.raises(ValueError):
            p.map_async(h.sqr, [1])
        with pytest.raises(ValueError):
            with p:
                pass

    def test_terminate_while_busy(self, make_pool):
        p = make_pool(2)
        r = p.map_async(time.sleep, [0.1] * 10000, chunksize=1)
        time.sleep(0.2)
        p.terminate()
        bounded_join(p)
        assert not r.ready()
        assert all(w.exitcode is not None for w in p._pool)

    def test_terminate_with_a_waiting_caller(self, make_pool):
        p = make_pool(2)
        r = p.apply_async(time.sleep, (TIMEOUT,))
        waiter = threading.Thread(target=r.wait, args=(2.0,))   # reads the outqueue
        waiter.start()
        time.sleep(0.2)
        p.terminate()
        bounded_join(p)
        waiter.join(TIMEOUT)
        assert not waiter.is_alive() and not r.ready()

    def test_terminate_from_a_callback(self, make_pool):
        p = make_pool(2)
        seen = []
        r = p.apply_async(h.sqr, (5,), callback=lambda v: (seen.append(v), p.terminate()))
        assert r.get(TIMEOUT) == 25 and seen == [25]
        assert p._state == mpool.TERMINATE
        bounded_join(p)
        assert all(w.exitcode is not None for w in p._pool)

    def test_pool_cannot_be_pickled(self, shared):
        with pytest.raises(NotImplementedError, match='pool objects cannot be passed'):
            pickle.dumps(shared)

    def test_resource_warning_for_a_running_pool(self, ctx):
        p = ctx.Pool(1)
        p.terminate()
        bounded_join(p)
        p._state = mpool.RUN   # pretend it still runs
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            p = None
            gc.collect()
        assert any(issubclass(w.category, ResourceWarning)
                   and 'unclosed running multiprocessing pool' in str(w.message) for w in caught)

    def test_forgotten_pool_is_terminated(self, ctx):
        p = ctx.Pool(2)
        value = p.apply_async(h.sqr, (2,)).get(TIMEOUT)
        assert value == 4
        pids = [w.pid for w in p._pool]
        ref = weakref.ref(p)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            p = None
            gc.collect()
        messages = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
        assert any('unclosed running multiprocessing pool' in m for m in messages)
        del caught   # a warning's source is the pool itself
        gc.collect()
        assert ref() is None
        wait_until(lambda: all(pid_gone(pid) for pid in pids))

    # -- workers: initializer, lifetime, replacement ------------------------

    def test_initializer(self, make_pool):
        p = make_pool(2, initializer=h.init_record, initargs=('hello',))
        assert p.map_async(h.read_initialized, range(8), 1).get(TIMEOUT) == ['hello'] * 8
        assert p.apply_async(h.read_initialized).get(TIMEOUT) == 'hello'

    def test_maxtasksperchild_replaces_workers(self, make_pool):
        p = make_pool(3, maxtasksperchild=10)
        assert len(p._pool) == 3
        original = {w.pid for w in p._pool}
        results = [p.apply_async(h.sqr, (i,)) for i in range(100)]
        assert [r.get(TIMEOUT) for r in results] == [i * i for i in range(100)]
        p._repopulate_pool()
        wait_until(lambda: len(p._pool) == 3 and all(w.is_alive() for w in p._pool))
        final = {w.pid for w in p._pool}
        assert None not in original and None not in final
        assert original != final

    def test_maxtasksperchild_bounds_tasks_per_worker(self, make_pool):
        p = make_pool(2, maxtasksperchild=2)
        pids = p.map_async(h.get_pid, range(12), 1).get(TIMEOUT)
        counts = {pid: pids.count(pid) for pid in pids}
        assert len(counts) >= 6 and max(counts.values()) <= 2
        pids = list(p.imap(h.get_pid, range(12)))
        assert max(pids.count(pid) for pid in pids) <= 2

    def test_maxtasksperchild_early_close(self, make_pool):
        p = make_pool(3, maxtasksperchild=1)
        results = [p.apply_async(h.sqr, (i, 0.3)) for i in range(6)]
        p.close()
        bounded_join(p)
        assert [r.get(0) for r in results] == [i * i for i in range(6)]

    # -- mphost: a worker that dies while it holds a task --------------------

    def test_worker_killed_mid_task_fails_that_call(self, make_pool):
        p = make_pool(2)
        original = {w.pid for w in p._pool}
        others = [p.apply_async(h.sqr, (i, 0.05)) for i in range(6)]
        doomed = p.apply_async(h.kill_self, (-1,))
        with pytest.raises(mpool.WorkerLostError) as info:
            doomed.get(TIMEOUT)
        err = info.value
        assert isinstance(err, multiprocessing.ProcessError)
        assert err.pid in original and err.exitcode == -signal.SIGKILL
        assert str(err) == f'worker {err.pid} died with SIGKILL while running a task'
        assert [r.get(TIMEOUT) for r in others] == [i * i for i in range(6)]
        # The pool replaced the worker and serves as before.
        wait_until(lambda: len(p._pool) == 2 and all(w.is_alive() for w in p._pool))
        assert err.pid not in {w.pid for w in p._pool}
        assert p.map_async(h.sqr, range(20)).get(TIMEOUT) == [x * x for x in range(20)]
        assert p.apply_async(h.sqr, (9,)).get(TIMEOUT) == 81

    def test_worker_exit_codes_and_signals_are_named(self, make_pool):
        p = make_pool(2)
        message = r'worker \d+ exited with code 7 while running a task'
        with pytest.raises(mpool.WorkerLostError, match=message):
            p.apply_async(h.exit_now, (7,)).get(TIMEOUT)
        with pytest.raises(mpool.WorkerLostError, match='died with SIGTERM'):
            p.apply_async(h.kill_self, (-1, signal.SIGTERM)).get(TIMEOUT)
        with pytest.raises(mpool.WorkerLostError, match='exited with code 3'):
            p.apply_async(h.raise_system_exit, (3,)).get(TIMEOUT)
        assert p.apply_async(h.sqr, (4,)).get(TIMEOUT) == 16

    def test_worker_killed_during_map(self, make_pool):
        p = make_pool(2)
        items = list(range(20)) + [-1] + list(range(20))
        errors = []
        r = p.map_async(h.kill_self, items, chunksize=1, error_callback=errors.append)
        with pytest.raises(mpool.WorkerLostError, match='SIGKILL'):
            r.get(TIMEOUT)
        assert len(errors) == 1 and isinstance(errors[0], mpool.WorkerLostError)
        assert not r.successful()
        with pytest.raises(mpool.WorkerLostError):
            p.map_async(h.kill_self, [0, 1, -1, 3]).get(TIMEOUT)
        assert p.map_async(h.sqr, range(30), 1).get(TIMEOUT) == [x * x for x in range(30)]

    def test_worker_killed_during_imap(self, make_pool):
        p = make_pool(2)
        items = [0, 1, 2, -1, 4, 5, 6, 7]
        it = p.imap(h.slow_unless_negative, items)
        got = []
        for x in items:
            try:
                got.append(it.next(TIMEOUT))
            except mpool.WorkerLostError as e:
                got.append(type(e))
        assert got == [0, 10, 20, mpool.WorkerLostError, 40, 50, 60, 70]
        with pytest.raises(StopIteration):
            it.next(TIMEOUT)

    # An idle worker may be killed while it waits for tasks holding the
    # inqueue's read lock: the next reader recovers the lock and warns.
    @pytest.mark.filterwarnings('ignore:a process died holding a lock')
    def test_idle_worker_killed(self, make_pool):
        p = make_pool(2)
        assert p.map_async(h.sqr, range(4)).get(TIMEOUT) == [0, 1, 4, 9]
        victim = p._pool[0].pid
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: victim not in {w.pid for w in p._pool} and len(p._pool) == 2
                   and all(w.is_alive() for w in p._pool))
        assert p.map_async(h.sqr, range(40), 1).get(TIMEOUT) == [x * x for x in range(40)]
        values = [p.apply_async(h.sqr, (i,)).get(TIMEOUT) for i in range(20)]
        assert values == [i * i for i in range(20)]

    def test_every_worker_killed(self, make_pool):
        p = make_pool(2)
        doomed = [p.apply_async(h.kill_self, (-1,)) for _ in range(2)]
        for r in doomed:
            with pytest.raises(mpool.WorkerLostError):
                r.get(TIMEOUT)
        assert p.map_async(h.sqr, range(10)).get(TIMEOUT) == [x * x for x in range(10)]
