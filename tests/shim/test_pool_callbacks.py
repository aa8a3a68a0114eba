"""Where and in which order Pool callbacks run: as with the stdlib, in the
pool's result handler thread (``pool._result_handler``), one at a time, in
the order the results complete, and a result is ready only once the
callbacks of the results completed before it have run. Run for worker
threads and for worker processes of each start method; every program here
behaves the same under /usr/bin/python3 (test_same_as_stock checks it)."""

import os
import subprocess
import sys
import threading
import time

import pytest

import multiprocessing
from multiprocessing.pool import ThreadPool

import _helpers_pool as h
from _helpers_pool import TIMEOUT
from _suite_pool import bounded_join

KINDS = ['threads', 'fork', 'spawn', 'forkserver']


@pytest.fixture(scope='module', params=KINDS)
def pool(request):
    if request.param == 'threads':
        p = ThreadPool(2)
    else:
        p = multiprocessing.get_context(request.param).Pool(2)
    yield p
    p.terminate()
    bounded_join(p)


def _bounded(body, timeout=TIMEOUT):
    """Run body() in a thread that plays the caller; a deadlock fails the
    test instead of stalling it."""
    errors = []

    def run():
        try:
            body()
        except BaseException as e:  # noqa: B902 - reported below
            errors.append(e)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), 'the caller deadlocked'
    if errors:
        raise errors[0]


def _recorder(pool, seen):
    def record(value):
        seen.append((threading.current_thread(), value))
    return record


def test_callbacks_run_in_the_result_handler_thread(pool):
    seen = []
    record = _recorder(pool, seen)
    assert pool.apply_async(h.sqr, (2,), callback=record).get(TIMEOUT) == 4
    pool.apply_async(h.raise_key_error, error_callback=record).wait(TIMEOUT)
    assert pool.map_async(h.sqr, range(5), callback=record).get(TIMEOUT) == [0, 1, 4, 9, 16]
    pool.map_async(h.raise_runtime_error, ['m', 'n'], error_callback=record).wait(TIMEOUT)
    assert pool.starmap_async(h.mul, [(2, 3)], callback=record).get(TIMEOUT) == [6]
    pool.starmap_async(h.mul, [(2, 3), (1,)], error_callback=record).wait(TIMEOUT)
    threads = [t for t, _ in seen]
    assert len(seen) == 6
    assert all(t is pool._result_handler for t in threads), threads
    values = [v for _, v in seen]
    assert values[0] == 4 and isinstance(values[1], KeyError)
    assert values[2] == [0, 1, 4, 9, 16] and isinstance(values[3], RuntimeError)
    assert values[4] == [6] and isinstance(values[5], TypeError)


def test_callbacks_run_there_while_callers_wait(pool):
    # Several threads wait on their own results (and read results for each
    # other); no callback runs in any of them.
    seen = []
    record = _recorder(pool, seen)
    results = [pool.apply_async(h.sqr, (i, 0.001), callback=record) for i in range(40)]
    got = []

    def waiter(part):
        got.extend(r.get(TIMEOUT) for r in part)
    threads = [threading.Thread(target=waiter, args=(results[k::4],)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert sorted(got) == [i * i for i in range(40)]
    assert len(seen) == 40 and all(t is pool._result_handler for t, _ in seen)


def test_callback_blocked_on_a_lock_the_waiting_caller_holds(pool):
    # The caller holds `lock` and waits on a result; another result
    # completes meanwhile and its callback waits for the lock in the result
    # handler thread, which therefore delivers nothing else: the wait times
    # out (as with the stdlib) instead of deadlocking the caller, as it did
    # when the waiting caller ran callbacks itself.
    lock = threading.Lock()
    order = []

    def takes_lock(value):
        with lock:
            order.append(value)
    def caller():
        with lock:
            first = pool.apply_async(h.sqr, (3, 0.3), callback=takes_lock)
            second = pool.apply_async(h.sqr, (4, 1.5))
            with pytest.raises(multiprocessing.TimeoutError):
                second.get(2.5)
            order.append('released')
        assert first.get(TIMEOUT) == 9 and second.get(TIMEOUT) == 16
    _bounded(caller)
    assert order == ['released', 9]


def test_callback_takes_a_lock_the_caller_holds_while_waiting(pool):
    # The caller holds the lock while it waits for a result that completes
    # first; the slower result's callback takes the lock later.
    lock = threading.Lock()
    order = []

    def takes_lock(value):
        with lock:
            order.append(value)
    def caller():
        with lock:
            slow = pool.apply_async(h.sqr, (5, 1.5), callback=takes_lock)
            assert pool.apply_async(h.sqr, (6,)).get(TIMEOUT) == 36
            order.append('fast')
        assert slow.get(TIMEOUT) == 25
    _bounded(caller)
    assert order == ['fast', 25]


def test_callbacks_run_in_completion_order(pool):
    order = []
    results = [pool.apply_async(h.identity, (i,), callback=order.append) for i in range(50)]
    for r in results:
        r.get(TIMEOUT)
    assert sorted(order) == list(range(50))
    # With one worker, completion order is submission order.
    order.clear()
    kind = 'threads' if isinstance(pool, ThreadPool) else pool._ctx.get_start_method()
    one = ThreadPool(1) if kind == 'threads' else multiprocessing.get_context(kind).Pool(1)
    try:
        results = [one.apply_async(h.identity, (i,), callback=order.append) for i in range(50)]
        results += [one.map_async(h.identity, [50, 51], callback=order.append)]
        for r in results:
            r.get(TIMEOUT)
        assert order == list(range(50)) + [[50, 51]]
    finally:
        one.terminate()
        bounded_join(one)


def test_ready_only_after_earlier_callbacks_ran(pool):
    # A result that completed after another one becomes ready only once the
    # earlier one's (slow) callback has run, as in the stdlib's single
    # result handler thread.
    kind = 'threads' if isinstance(pool, ThreadPool) else pool._ctx.get_start_method()
    one = ThreadPool(1) if kind == 'threads' else multiprocessing.get_context(kind).Pool(1)
    done = []

    def slow_callback(value):
        time.sleep(0.3)
        done.append(value)
    try:
        first = one.apply_async(h.sqr, (7,), callback=slow_callback)
        second = one.apply_async(h.sqr, (8,))
        assert second.get(TIMEOUT) == 64
        assert done == [49] and first.ready()
    finally:
        one.terminate()
        bounded_join(one)


def test_callback_error_is_reported_in_the_handler(pool, capfd):
    def broken(value):
        raise ZeroDivisionError('callback broke')
    r = pool.apply_async(h.sqr, (3,), callback=broken)
    assert r.get(TIMEOUT) == 9
    assert pool.apply(h.sqr, (4,)) == 16
    assert 'ZeroDivisionError: callback broke' in capfd.readouterr().err


_STOCK_PROGRAM = r'''
import multiprocessing, threading, time
from multiprocessing.pool import ThreadPool

def sq(x, wait=0.0):
    time.sleep(wait)
    return x * x

def bad(x):
    raise ValueError(x)

if __name__ == '__main__':
    for kind in ('threads', 'fork', 'spawn', 'forkserver'):
        p = ThreadPool(2) if kind == 'threads' else multiprocessing.get_context(kind).Pool(2)
        out = []
        rec = lambda v: out.append((threading.current_thread() is p._result_handler,
                                    v if not isinstance(v, Exception) else repr(v)))
        p.apply_async(sq, (2,), callback=rec).get(30)
        p.apply_async(bad, (1,), error_callback=rec).wait(30)
        p.map_async(sq, range(3), callback=rec).get(30)
        p.starmap_async(sq, [(1,), (2,)], callback=rec).get(30)
        lock = threading.Lock()
        with lock:
            x = p.apply_async(sq, (3, 0.3), callback=lambda v: (lock.acquire(), out.append(v), lock.release()))
            y = p.apply_async(sq, (4, 1.5))
            try:
                y.get(2.5)
            except multiprocessing.TimeoutError:
                out.append('timeout')
        x.get(30)
        y.get(30)
        print(kind, out)
        p.terminate()
        p.join()
'''


def test_caller_waiting_behind_a_callback_reads_as_soon_as_it_ran():
    # A caller that reads results hands one with a callback over to the
    # result handler thread and sleeps until that has run. Woken when the
    # callback's result completed but while the hand-over still counted, it
    # must be woken again when the hand-over ends, not at its timeout. The
    # engine's completion is slowed (mphost's engine) to hold that moment.
    p = multiprocessing.get_context('fork').Pool(2)
    try:
        p.map(h.identity, range(4))
        engine = p._engine
        complete = engine._complete

        def slow_complete(results):
            complete(results)
            if threading.get_ident() == engine._bg_ident:
                time.sleep(0.2)
        engine._complete = slow_complete
        for _ in range(3):
            r1 = p.apply_async(h.sqr, (2, 0.02), callback=lambda value: None)
            r2 = p.apply_async(h.sqr, (3, 0.05))
            started = time.monotonic()
            assert r2.get(5) == 9
            assert time.monotonic() - started < 2.0
            assert r1.get(TIMEOUT) == 4
    finally:
        p.terminate()
        bounded_join(p)


def test_same_as_stock(tmp_path, stock_python, mphost_executable):
    prog = tmp_path / 'callbacks.py'
    prog.write_text(_STOCK_PROGRAM)
    outputs = []
    for exe in (stock_python, mphost_executable):
        proc = subprocess.run([exe, str(prog)], capture_output=True, text=True,
                              timeout=TIMEOUT * 2, cwd=tmp_path,
                              env={k: v for k, v in os.environ.items() if k != 'PYTHONPATH'})
        assert proc.returncode == 0, proc.stderr
        outputs.append(proc.stdout)
    assert outputs[0] == outputs[1]
    assert outputs[1].count('timeout') == 4 and 'False' not in outputs[1]
