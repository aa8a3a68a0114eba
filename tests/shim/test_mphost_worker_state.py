"""worker_state=, worker_init= and worker_exit= of mphost.Pool (mpire's
model): a dict per worker given to every task as its first argument, hooks
run once per worker at its start and at its clean exit (recycling by
maxtasksperchild included), exit results collected in the parent by
get_exit_results(); the stdlib's initializer runs first."""

import os
import time

import pytest

import multiprocessing
from multiprocessing.pool import RemoteTraceback

from mphost._pool import Pool

TIMEOUT = 60
N = 40

pytestmark = pytest.mark.parametrize('method', ['fork', 'spawn', 'forkserver'])

# What ran in this worker, in order (set by the hooks below).
events = []


def count(state, x):
    state['tasks'] = state.get('tasks', 0) + 1
    return os.getpid(), state['tasks'], x * x


def count_pair(state, x, y):
    state['tasks'] = state.get('tasks', 0) + 1
    return x * y


def state_init(state):
    state['pid'] = os.getpid()
    state['tasks'] = 0
    events.append('worker_init')


def state_exit(state):
    return state['pid'], state['tasks']


def initializer(tag):
    events.append(('initializer', tag))


def plain_init():
    events.append('worker_init')


def plain_exit():
    return os.getpid(), list(events)


def what_ran(state, x):
    return list(events), sorted(state)


def seen_events(x):
    return list(events)


def fail(state, x):
    raise KeyError(f'missing {x}')


def fail_in_exit(state):
    raise RuntimeError('exit hook failed')


def _closed(pool):
    pool.close()
    pool.join()
    return pool.get_exit_results()


def _ctx(method):
    return multiprocessing.get_context(method)


def test_tasks_counted_per_worker(method):
    pool = Pool(3, context=_ctx(method), worker_state=True, worker_init=state_init,
                worker_exit=state_exit)
    try:
        results = pool.map(count, range(N), chunksize=1)
        assert [r[2] for r in results] == [x * x for x in range(N)]
        last = {}
        for pid, tasks, _ in results:
            last[pid] = max(tasks, last.get(pid, 0))
        assert sum(last.values()) == N
    finally:
        exits = _closed(pool)
    assert sorted(exits) == sorted(last.items()) or sum(t for _, t in exits) == N
    assert sum(t for _, t in exits) == N
    assert len(exits) == 3


def test_recycling_runs_the_hooks_of_each_worker(method):
    pool = Pool(2, context=_ctx(method), maxtasksperchild=3, worker_state=True,
                worker_init=state_init, worker_exit=state_exit)
    try:
        results = pool.map(count, range(N), chunksize=1)
        assert [r[2] for r in results] == [x * x for x in range(N)]
        assert all(tasks <= 3 for _, tasks, _ in results)       # a fresh state per worker
        assert len({pid for pid, _, _ in results}) >= N // 3
    finally:
        exits = _closed(pool)
    assert sum(t for _, t in exits) == N
    assert len(exits) >= N // 3
    assert len({pid for pid, _ in exits}) == len(exits)      # once per worker


def test_apply_async_and_starmap_get_the_state(method):
    pool = Pool(2, context=_ctx(method), worker_state=True, worker_exit=state_exit,
                worker_init=state_init)
    try:
        assert pool.apply_async(count, (5,)).get(TIMEOUT)[2] == 25
        assert pool.apply(count_pair, (3, 4)) == 12
        assert pool.starmap(count_pair, [(x, 2) for x in range(N)], 4) == [2 * x for x in range(N)]
        assert sorted(r[2] for r in pool.imap_unordered(count, range(N), 3)) == \
            [x * x for x in range(N)]
    finally:
        exits = _closed(pool)
    assert sum(t for _, t in exits) == 2 + 2 * N


def test_initializer_runs_before_worker_init(method):
    pool = Pool(1, initializer, ('tag',), context=_ctx(method), worker_state=True,
                worker_init=state_init)
    try:
        ran, keys = pool.apply(what_ran, (1,))
    finally:
        pool.terminate()
        pool.join()
    assert ran[-2:] == [('initializer', 'tag'), 'worker_init']
    assert keys == ['pid', 'tasks']


def test_hooks_without_state_take_no_argument(method):
    pool = Pool(2, context=_ctx(method), initializer=initializer, initargs=(7,),
                worker_init=plain_init, worker_exit=plain_exit)
    try:
        assert pool.map(seen_events, range(4))[0][-2:] == [('initializer', 7), 'worker_init']
        pids = {p.pid for p in pool._pool}
    finally:
        exits = _closed(pool)
    assert {pid for pid, _ in exits} == pids
    assert all(ran[-2:] == [('initializer', 7), 'worker_init'] for _, ran in exits)


def test_errors_keep_type_and_traceback(method):
    pool = Pool(1, context=_ctx(method), worker_state=True)
    try:
        with pytest.raises(KeyError, match='missing 3') as info:
            pool.map(fail, [3])
        cause = info.value.__cause__
        assert isinstance(cause, RemoteTraceback)
        assert 'in fail' in str(cause) and "raise KeyError(f'missing {x}')" in str(cause)
        assert '/mphost/_' not in str(cause)     # no frame of mphost's wrappers in between
        with pytest.raises(KeyError):
            pool.apply(fail, (4,))
    finally:
        pool.terminate()
        pool.join()


def test_exit_results_before_close_and_after_terminate(method):
    pool = Pool(2, context=_ctx(method), worker_state=True, worker_init=state_init,
                worker_exit=state_exit, maxtasksperchild=1)
    try:
        pool.map(count, range(6), chunksize=1)
        deadline = time.monotonic() + TIMEOUT
        while len(pool.get_exit_results()) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(pool.get_exit_results()) >= 4     # recycled workers, pool still open
    finally:
        pool.terminate()
        pool.join()
    assert sum(t for _, t in pool.get_exit_results()) <= 6


def test_a_failing_exit_hook_is_reported_and_others_go_on(method, capfd):
    pool = Pool(1, context=_ctx(method), worker_state=True, worker_exit=fail_in_exit)
    assert pool.apply(count, (2,))[2] == 4
    assert _closed(pool) == []


def test_option_errors(method):
    ctx = _ctx(method)
    with pytest.raises(TypeError, match='worker_state must be True or False'):
        Pool(1, context=ctx, worker_state='yes')
    with pytest.raises(TypeError, match='worker_init must be a callable'):
        Pool(1, context=ctx, worker_init=3)
    with pytest.raises(TypeError, match='worker_exit must be a callable'):
        Pool(1, context=ctx, worker_exit='x')
    with pytest.raises(TypeError, match='initializer must be a callable'):
        Pool(1, 5, context=ctx, worker_state=True)
    with pytest.raises(TypeError, match="multiple values for argument 'initializer'"):
        Pool(1, initializer, initializer=initializer, context=ctx)
    with pytest.raises(ValueError, match='Number of processes must be at least 1'):
        Pool(0, context=ctx, worker_state=True)
