"""mphost.Pool's supervision options, under each start method:
task_timeout (the worker is killed and replaced, the task's result raises
TaskTimeoutError, no other task is lost), soft_timeout (billiard's
SoftTimeLimitExceeded inside the task), max_memory_per_child (a worker
past the bound leaves after answering, no task lost) and max_restarts
(past it the pool fails its calls with PoolBrokenError). Every wait has a
timeout."""

import os
import signal
import time

import pytest

import multiprocessing
from multiprocessing import pool as mpool

import mphost
from _suite_pool import bounded_join, wait_until

TIMEOUT = 60
METHODS = ['fork', 'spawn', 'forkserver']


# -- what the workers run (module level, for spawn and forkserver) ------------

def sleepy(x):
    time.sleep(x)
    return x


def double(x):
    return 2 * x


def ramp(n):
    import numpy
    return numpy.arange(n, dtype=numpy.float64) * 2


def catches_soft(x):
    try:
        time.sleep(x)
        return 'finished'
    except mphost.SoftTimeLimitExceeded as e:
        return f'cleaned up after: {e}'


def ignores_soft(x):
    try:
        time.sleep(x)
    except mphost.SoftTimeLimitExceeded:
        time.sleep(TIMEOUT)
    return 'unreachable'


_kept = []


def hoard(x):
    """Keeps 50 MB in the worker for good, as a leaky task does."""
    _kept.append(bytearray(50 << 20))
    for i in range(0, len(_kept[-1]), 4096):
        _kept[-1][i] = 1
    return os.getpid(), x * x


def crash_on(x, bad):
    if x == bad:
        os._exit(7)
    return x


def kill_self_on(x, bad):
    if x == bad:
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.01)
    return x


def counted(d, i, kind):
    """Note one run of task i in directory d, then do its kind of work."""
    fd = os.open(os.path.join(d, str(i)), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, b'.')
    finally:
        os.close(fd)
    if kind == 'sleep':            # stuck with the GIL released
        time.sleep(TIMEOUT)
    elif kind == 'spin':           # stuck in C holding the GIL
        import re
        re.match(r'(a+)+$', 'a' * 64 + 'b')
    elif kind == 'array':
        import numpy
        return numpy.full(50_000, i, dtype=numpy.int64)
    elif kind == 'big':            # past the spool's mapped part
        import numpy
        return numpy.full(300_000, i, dtype=numpy.int64)
    elif kind == 'fail':
        raise ValueError(f'task {i} fails')
    return i * 3


def run_counts(d, n):
    counts = []
    for i in range(n):
        try:
            with open(os.path.join(d, str(i)), 'rb') as f:
                counts.append(len(f.read()))
        except FileNotFoundError:
            counts.append(0)
    return counts


# -- options are checked ------------------------------------------------------

@pytest.mark.parametrize('kwds, error', [
    ({'task_timeout': 'soon'}, TypeError),
    ({'task_timeout': 0}, ValueError),
    ({'task_timeout': -1.5}, ValueError),
    ({'task_timeout': float('nan')}, ValueError),
    ({'soft_timeout': True}, TypeError),
    ({'soft_timeout': 2, 'task_timeout': 1}, ValueError),
    ({'max_memory_per_child': 1.5e9}, TypeError),
    ({'max_memory_per_child': 0}, ValueError),
    ({'max_restarts': -1}, ValueError),
    ({'max_restarts': '3'}, TypeError),
])
def test_options_are_checked(kwds, error):
    with pytest.raises(error):
        mphost.Pool(1, **kwds)


def test_per_call_options_are_checked(make_mphost_pool):
    p = make_mphost_pool('fork', 1, task_timeout=1)
    with pytest.raises(TypeError):
        p.map(double, range(3), task_timeout='x')
    with pytest.raises(ValueError):
        p.apply_async(double, (1,), soft_timeout=5)      # past the pool's hard limit
    assert p.map(double, range(3)) == [0, 2, 4]


def test_without_options_it_is_the_stdlib_pool(make_mphost_pool):
    p = make_mphost_pool('fork', 2)
    assert isinstance(p, mpool.Pool)
    assert p.map(double, range(100)) == [2 * x for x in range(100)]
    assert p.apply(double, (21,)) == 42
    assert list(p.imap(double, range(5), chunksize=2)) == [0, 2, 4, 6, 8]
    assert sorted(p.imap_unordered(double, range(5))) == [0, 2, 4, 6, 8]


def test_errors_are_the_stdlib_classes():
    assert issubclass(mphost.TaskTimeoutError, TimeoutError)
    assert issubclass(mphost.TaskTimeoutError, multiprocessing.TimeoutError)
    assert issubclass(mphost.PoolBrokenError, multiprocessing.ProcessError)
    assert issubclass(mphost.SoftTimeLimitExceeded, Exception)


# -- task_timeout ---------------------------------------------------------------

@pytest.mark.parametrize('method', METHODS)
def test_timed_out_task_of_a_map(method, make_mphost_pool):
    p = make_mphost_pool(method, 2)
    started = time.monotonic()
    r = p.map_async(sleepy, [0.05, 30, 0.1, 0.05, 0.2, 0.01], chunksize=1, task_timeout=1)
    with pytest.raises(mphost.TaskTimeoutError, match=r'task 1 of job \d+ \(sleepy\) ran past '
                                                      r'task_timeout=1 s') as info:
        r.get(TIMEOUT)
    assert time.monotonic() - started < 1 + 1
    assert info.value.limit == 1
    # The others of the same call, through imap with the same limit.
    results = list(p.imap(sleepy, [0.05, 0.1, 0.05], task_timeout=1))
    assert results == [0.05, 0.1, 0.05]
    assert p.map(double, range(50)) == [2 * x for x in range(50)]   # still usable


@pytest.mark.parametrize('method', METHODS)
def test_no_other_task_is_lost(method, make_mphost_pool):
    p = make_mphost_pool(method, 2, task_timeout=1)
    it = p.imap(sleepy, [0.01] * 20 + [30] + [0.01] * 20)
    got = []
    for i in range(41):
        try:
            got.append(it.next(TIMEOUT))
        except mphost.TaskTimeoutError as e:
            got.append(e)
    assert isinstance(got[20], mphost.TaskTimeoutError)
    assert got[:20] == [0.01] * 20 and got[21:] == [0.01] * 20
    wait_until(lambda: len(p._pool) == 2)    # the killed worker was replaced
    assert p.map(double, range(4)) == [0, 2, 4, 6]


@pytest.mark.parametrize('method', METHODS)
def test_apply_async_timeouts_and_pool_default(method, make_mphost_pool):
    p = make_mphost_pool(method, 2, task_timeout=0.5)
    slow = p.apply_async(sleepy, (30,))
    quick = p.apply_async(sleepy, (0.05,))
    longer = p.apply_async(sleepy, (0.8,), task_timeout=3)   # per call wins
    started = time.monotonic()
    with pytest.raises(mphost.TaskTimeoutError, match='task_timeout=0.5 s'):
        slow.get(TIMEOUT)
    assert time.monotonic() - started < 0.5 + 1
    assert quick.get(TIMEOUT) == 0.05
    assert longer.get(TIMEOUT) == 0.8
    assert p.apply(double, (4,)) == 8


@pytest.mark.parametrize('method', METHODS)
def test_numpy_map_beside_a_timed_out_one(method, make_mphost_pool):
    numpy = pytest.importorskip('numpy')
    p = make_mphost_pool(method, 2)
    doomed = p.map_async(sleepy, [30], task_timeout=0.5)
    arrays = p.map_async(ramp, [10, 100000, 1000, 5], chunksize=1, task_timeout=20)
    for got, n in zip(arrays.get(TIMEOUT), [10, 100000, 1000, 5]):
        assert numpy.array_equal(got, numpy.arange(n, dtype=numpy.float64) * 2)
    with pytest.raises(mphost.TaskTimeoutError):
        doomed.get(TIMEOUT)


@pytest.mark.parametrize('method', METHODS)
def test_a_chunk_is_the_unit_that_times_out(method, make_mphost_pool):
    p = make_mphost_pool(method, 1)
    r = p.map_async(sleepy, [0.3, 0.3, 0.3, 0.01, 0.01, 0.01], chunksize=3, task_timeout=0.6)
    with pytest.raises(mphost.TaskTimeoutError, match=r'chunk 0 \(3 items\)'):
        r.get(TIMEOUT)
    assert p.starmap(pow, [(2, 3), (3, 2)], task_timeout=5) == [8, 9]


# -- soft_timeout ---------------------------------------------------------------

@pytest.mark.parametrize('method', METHODS)
def test_soft_timeout_raised_inside_the_task(method, make_mphost_pool):
    p = make_mphost_pool(method, 2, soft_timeout=0.3)
    assert p.map(catches_soft, [0.01, 5, 0.01], chunksize=1) == [
        'finished', 'cleaned up after: soft time limit (0.3 s) exceeded', 'finished']
    with pytest.raises(mphost.SoftTimeLimitExceeded):
        p.apply(sleepy, (5,))
    assert p.apply(double, (3,)) == 6


@pytest.mark.parametrize('method', METHODS)
def test_task_timeout_after_a_caught_soft_one(method, make_mphost_pool):
    p = make_mphost_pool(method, 1)
    started = time.monotonic()
    with pytest.raises(mphost.TaskTimeoutError):
        p.apply(ignores_soft, (5,), soft_timeout=0.2, task_timeout=0.7)
    assert time.monotonic() - started < 0.7 + 1
    assert p.apply(double, (5,)) == 10


# -- max_memory_per_child ---------------------------------------------------------

@pytest.mark.parametrize('method', METHODS)
def test_memory_recycling(method, make_mphost_pool):
    p = make_mphost_pool(method, 2, max_memory_per_child=120 << 20)
    out = p.map(hoard, range(10), chunksize=1)
    assert [v for _, v in out] == [x * x for x in range(10)]
    pids = {pid for pid, _ in out}
    assert len(pids) > 2                     # workers were replaced
    again = p.map(hoard, range(4), chunksize=1)
    assert [v for _, v in again] == [0, 1, 4, 9]
    insights = p.insights()
    assert insights.total['tasks'] == 14
    assert insights.total['deaths'] == 0     # recycling is no death
    assert insights.total['restarts'] >= len(pids) - 2


# -- max_restarts ----------------------------------------------------------------

@pytest.mark.parametrize('method', METHODS)
def test_restart_limit(method, make_mphost_pool):
    p = make_mphost_pool(method, 2, max_restarts=1)
    with pytest.raises(mpool.WorkerLostError, match='exited with code 7'):
        p.starmap(crash_on, [(x, 3) for x in range(6)], chunksize=1)
    assert p.apply(double, (2,)) == 4        # one death: replaced
    pending = p.apply_async(sleepy, (2,))
    with pytest.raises(mphost.PoolBrokenError, match='max_restarts=1') as info:
        p.starmap(kill_self_on, [(x, 2) for x in range(6)], chunksize=1)
    assert isinstance(info.value.__cause__, mpool.WorkerLostError)
    with pytest.raises(mphost.PoolBrokenError):
        pending.get(TIMEOUT)
    with pytest.raises(mphost.PoolBrokenError):
        p.apply_async(double, (1,))
    with pytest.raises(multiprocessing.ProcessError):
        p.map(double, range(3))
    p.close()
    bounded_join(p)


@pytest.mark.parametrize('method', METHODS)
def test_timeouts_count_as_deaths(method, make_mphost_pool):
    p = make_mphost_pool(method, 1, max_restarts=0, task_timeout=0.3)
    with pytest.raises(mphost.PoolBrokenError) as info:
        p.apply(sleepy, (30,))
    assert isinstance(info.value.__cause__, mphost.TaskTimeoutError)
    with pytest.raises(mphost.PoolBrokenError):
        p.apply(double, (1,))


def test_recycling_does_not_count(make_mphost_pool):
    p = make_mphost_pool('fork', 2, max_restarts=0, maxtasksperchild=1)
    assert p.map(double, range(20), chunksize=1) == [2 * x for x in range(20)]
    assert p.apply(double, (1,)) == 2


# -- timed maps are batched: a killed batch loses no task, runs none twice -----

def _kinds(n, stuck_at, stuck):
    kinds = ['quick'] * n
    kinds[stuck_at] = stuck
    for i in range(7, n, 23):
        if i != stuck_at:
            kinds[i] = 'array'
    kinds[stuck_at - 3] = 'fail'
    return kinds


def _check_imap(p, tmp_path, stuck):
    numpy = pytest.importorskip('numpy')
    n, stuck_at = 200, 130
    kinds = _kinds(n, stuck_at, stuck)
    it = p.imap(counted_star, [(str(tmp_path), i, k) for i, k in enumerate(kinds)],
                task_timeout=1)
    for i, kind in enumerate(kinds):
        if kind == stuck:
            with pytest.raises(mphost.TaskTimeoutError, match=f'task {i} of job'):
                it.next(TIMEOUT)
        elif kind == 'fail':
            with pytest.raises(ValueError, match=f'task {i} fails'):
                it.next(TIMEOUT)
        elif kind == 'array':
            assert numpy.array_equal(it.next(TIMEOUT), numpy.full(50_000, i))
        else:
            assert it.next(TIMEOUT) == 3 * i
    with pytest.raises(StopIteration):
        it.next(TIMEOUT)
    assert run_counts(str(tmp_path), n) == [1] * n


def counted_star(args):
    return counted(*args)


@pytest.mark.parametrize('method', METHODS)
@pytest.mark.parametrize('stuck', ['sleep', 'spin'])
def test_batched_timed_imap_loses_nothing_runs_nothing_twice(method, stuck, make_mphost_pool,
                                                             tmp_path):
    p = make_mphost_pool(method, 2)
    _check_imap(p, tmp_path, stuck)
    assert p.map(double, range(10), task_timeout=5) == [2 * x for x in range(10)]


@pytest.mark.parametrize('method', METHODS)
def test_batched_timed_map_fails_once(method, make_mphost_pool, tmp_path):
    p = make_mphost_pool(method, 2, task_timeout=1)
    kinds = ['quick'] * 200
    kinds[120] = 'spin'
    with pytest.raises(mphost.TaskTimeoutError, match='task 120 of job'):
        p.starmap(counted, [(str(tmp_path), i, k) for i, k in enumerate(kinds)],
                  chunksize=1)
    assert max(run_counts(str(tmp_path), 200)) == 1
    assert p.map(double, range(300)) == [2 * x for x in range(300)]


@pytest.mark.parametrize('method', ['fork', 'forkserver'])
def test_batched_timed_imap_unordered_with_large_results(method, make_mphost_pool, tmp_path):
    numpy = pytest.importorskip('numpy')
    p = make_mphost_pool(method, 2, task_timeout=1)
    kinds = ['quick'] * 160
    kinds[125:129] = ['big'] * 4
    kinds[130] = 'spin'
    got, errors = {}, []
    it = p.imap_unordered(counted_star, [(str(tmp_path), i, k) for i, k in enumerate(kinds)])
    for _ in range(160):
        try:
            value = it.next(TIMEOUT)
        except mphost.TaskTimeoutError as e:
            errors.append(e)
            continue
        key = int(value[0]) if isinstance(value, numpy.ndarray) else value // 3
        got[key] = value
    assert len(errors) == 1 and 'task 130 of job' in str(errors[0])
    assert sorted(got) == [i for i in range(160) if i != 130]
    for i in range(125, 129):
        assert numpy.array_equal(got[i], numpy.full(300_000, i))
    assert run_counts(str(tmp_path), 160) == [1] * 160


@pytest.mark.parametrize('method', METHODS)
def test_soft_timeout_inside_a_batched_map(method, make_mphost_pool):
    p = make_mphost_pool(method, 2)
    delays = [0.001] * 120
    delays[90] = 5
    got = p.map(catches_soft, delays, chunksize=1, soft_timeout=0.5, task_timeout=10)
    assert got[90].startswith('cleaned up after: soft time limit (0.5 s) exceeded')
    assert got[:90] + got[91:] == ['finished'] * 119
