"""mphost.Pool.insights(): per worker slot, counters the workers keep in
the pool's task board, checked against known work under each start
method. Every wait has a timeout."""

import os
import time

import pytest

import mphost
from _suite_pool import wait_until

TIMEOUT = 60
METHODS = ['fork', 'spawn', 'forkserver']
NAP = 0.02


def nap(x):
    time.sleep(NAP)
    return x


def sleepy(x):
    time.sleep(x)
    return x


def big(n):
    return bytes(n)


_kept = []


def grow(mb):
    _kept.append(bytearray(mb << 20))
    for i in range(0, len(_kept[-1]), 4096):
        _kept[-1][i] = 1
    return os.getpid()


@pytest.mark.parametrize('method', METHODS)
def test_counts_and_times_of_known_work(method, make_mphost_pool):
    p = make_mphost_pool(method, 2)
    n = 40
    started = time.monotonic()
    assert p.map(nap, range(n), chunksize=1) == list(range(n))
    wall = time.monotonic() - started
    time.sleep(0.2)                          # the workers wait for tasks meanwhile
    info = p.insights()
    assert len(info.workers) == 2
    assert {w.pid for w in info.workers} == {w.pid for w in p._pool}
    assert sum(w.tasks for w in info.workers) == n == info.total['tasks']
    assert info.total['busy'] >= n * NAP
    assert info.total['busy'] <= 2 * wall + 0.1
    for w in info.workers:
        assert w.idle >= w.waiting >= 0.15     # includes the 0.2 s pause
        assert w.sending >= 0
        assert w.peak_rss > 4 << 20
        assert w.restarts == 0 and w.deaths == 0
    assert info.mean['tasks'] == n / 2
    assert 0 < info.busy_ratio < 1


@pytest.mark.parametrize('method', METHODS)
def test_batched_and_apply_tasks_are_counted(method, make_mphost_pool):
    p = make_mphost_pool(method, 2)
    assert p.map(abs, range(-5000, 5000)) == [abs(x) for x in range(-5000, 5000)]
    assert [p.apply_async(abs, (-x,)).get(TIMEOUT) for x in range(10)] == list(range(10))
    assert list(p.imap_unordered(abs, range(100), chunksize=7)) is not None
    # A map of 10000 items in chunks counts its chunks' calls as tasks
    # (the pool's unit, as maxtasksperchild counts them).
    info = p.insights()
    assert info.total['tasks'] >= 10 + 15


@pytest.mark.parametrize('method', METHODS)
def test_exited_workers_stay_in_the_insights(method, make_mphost_pool):
    p = make_mphost_pool(method, 2, maxtasksperchild=3)
    assert p.map(nap, range(12), chunksize=1) == list(range(12))
    wait_until(lambda: len(p._pool) == 2)
    info = p.insights()
    assert info.total['tasks'] == 12
    assert info.total['restarts'] >= 2       # 12 tasks, 3 per worker: at least 4 workers
    assert info.total['deaths'] == 0
    assert info.total['busy'] >= 12 * NAP


@pytest.mark.parametrize('method', METHODS)
def test_a_killed_worker_restarts_its_slot(method, make_mphost_pool):
    p = make_mphost_pool(method, 1, task_timeout=0.3)
    assert p.apply(nap, (1,)) == 1
    with pytest.raises(mphost.TaskTimeoutError):
        p.apply(sleepy, (30,))
    assert p.apply(nap, (2,)) == 2
    info = p.insights()
    (row,) = info.workers
    assert row.restarts == 1 and row.deaths == 1
    assert row.pid == p._pool[0].pid
    assert row.tasks == 2                    # the killed task never answered


@pytest.mark.parametrize('method', METHODS)
def test_peak_rss_follows_memory_use(method, make_mphost_pool):
    p = make_mphost_pool(method, 1)
    before = p.insights().workers[0].peak_rss
    p.apply(grow, (80,))
    after = p.insights().workers[0].peak_rss
    assert after >= before + (70 << 20)


def test_table_and_dict(make_mphost_pool):
    p = make_mphost_pool('fork', 2)
    p.map(big, [1 << 20] * 6, chunksize=1)
    info = p.insights()
    text = str(info)
    for word in ('pid', 'tasks', 'busy', 'idle', 'waiting', 'sending', 'peak RSS',
                 'restarts', 'total', 'mean'):
        assert word in text
    for w in info.workers:
        assert str(w.pid) in text
    data = info.as_dict()
    assert set(data) == {'workers', 'total', 'mean', 'busy_ratio'}
    assert data['total']['tasks'] == 6
    assert sorted(data['workers'][0]) == sorted(
        ['slot', 'pid', 'tasks', 'busy', 'idle', 'waiting', 'sending', 'peak_rss',
         'restarts', 'deaths'])
    assert data['total']['sending'] >= 0
