"""Managers across processes, written once and instantiated per start
method by test_managers_{fork,spawn,forkserver}.py (each sets
START_METHOD): the server process started with the method, SyncManager's
types used from child processes started with it, proxies pickled to
children, reference counts after the children end."""

import os
import time

import pytest

import multiprocessing
from multiprocessing.managers import BaseManager, SyncManager

from _start_method import StartMethodSuite

TIMEOUT = 60


# -- served types and targets run in children (module level for spawn) --

class Tally:
    def __init__(self):
        self.items = []

    def add(self, item):
        self.items.append(item)
        return len(self.items)

    def all(self):
        return list(self.items)

    def where(self):
        return os.getpid()


class TallyManager(BaseManager):
    pass


TallyManager.register('Tally', Tally)


def fill(d, l, ns, value, lock, array, key):
    d[key] = os.getpid()
    l.append(key)
    with lock:
        value.value += 1
    ns.last = key
    array[key] = key * 10


def add_under_lock(lock, counter, times):
    for _ in range(times):
        with lock:
            counter.value = counter.value + 1


def consume(q, results):
    while True:
        item = q.get()
        if item is None:
            q.task_done()
            break
        results.append(item * 2)
        q.task_done()


def wait_for_event_then_report(event, cond, state, barrier, out):
    assert event.wait(TIMEOUT)
    with cond:
        state['arrived'] = state.get('arrived', 0) + 1
        cond.notify_all()
    out.put(barrier.wait(TIMEOUT) is not None)


def use_semaphore(sem, inside, peak, lock):
    with sem:
        with lock:
            inside.value += 1
            peak.value = max(peak.value, inside.value)
        time.sleep(0.05)
        with lock:
            inside.value -= 1


def connect_and_create(address, authkey, out):
    m = TallyManager(address=address, authkey=authkey)
    m.connect()
    t = m.Tally()
    t.add('child')
    out.put(t.where())
    del t


def touch_nested(outer):
    inner = outer[0]
    inner['from child'] = os.getpid()


def raise_remote(d):
    try:
        d['missing']
    except KeyError:
        return
    raise AssertionError('no KeyError')


def check_raises_in_child(d, out):
    try:
        raise_remote(d)
        out.put('ok')
    except BaseException as e:
        out.put(repr(e))


def hold_proxy_and_exit(d):
    d['child saw'] = len(d)


class ManagerSuite(StartMethodSuite):
    @pytest.fixture
    def sync(self):
        m = self.ctx.Manager()
        yield m
        m.shutdown()

    def start(self, target, *args):
        p = self.ctx.Process(target=target, args=args)
        p.start()
        return p

    def finish(self, p):
        p.join(TIMEOUT)
        assert not p.is_alive(), 'child did not end within %ss' % TIMEOUT
        return p.exitcode

    def wait_for_objects(self, manager, count):
        deadline = time.monotonic() + TIMEOUT
        while manager._number_of_objects() != count and time.monotonic() < deadline:
            time.sleep(0.02)
        return manager._number_of_objects()

    def test_server_process_uses_the_start_method(self, sync):
        assert isinstance(sync, SyncManager)
        assert sync._ctx.get_start_method() == self.START_METHOD
        assert sync._process.is_alive()
        assert sync._process.name.startswith('SyncManager-')
        pid = sync._process.pid
        assert pid != os.getpid()
        m = TallyManager(ctx=self.ctx)
        m.start()
        try:
            t = m.Tally()
            assert t.where() == m._process.pid
        finally:
            m.shutdown()
        assert m._process.exitcode == 0

    def test_shared_containers_from_children(self, sync):
        d = sync.dict()
        l = sync.list()
        ns = sync.Namespace()
        value = sync.Value('i', 0)
        array = sync.Array('i', [0] * 4)
        lock = sync.Lock()
        children = [self.start(fill, d, l, ns, value, lock, array, key) for key in range(4)]
        assert [self.finish(c) for c in children] == [0] * 4
        assert sorted(d.keys()) == [0, 1, 2, 3]
        assert set(d.values()) == {c.pid for c in children}
        assert sorted(l) == [0, 1, 2, 3]
        assert ns.last in range(4)
        assert value.value == 4
        assert list(array) == [0, 10, 20, 30]

    def test_lock_protects_counter_across_processes(self, sync):
        lock = sync.Lock()
        counter = sync.Value('i', 0)
        children = [self.start(add_under_lock, lock, counter, 50) for _ in range(3)]
        assert [self.finish(c) for c in children] == [0, 0, 0]
        assert counter.value == 150
        rlock = sync.RLock()
        child = self.start(add_under_lock, rlock, counter, 10)
        assert self.finish(child) == 0
        assert counter.value == 160

    def test_joinable_queue_across_processes(self, sync):
        q = sync.JoinableQueue()
        results = sync.list()
        children = [self.start(consume, q, results) for _ in range(2)]
        for i in range(20):
            q.put(i)
        for _ in children:
            q.put(None)
        q.join()
        assert [self.finish(c) for c in children] == [0, 0]
        assert sorted(results) == [i * 2 for i in range(20)]
        assert q.empty()

    def test_event_condition_barrier_across_processes(self, sync):
        event = sync.Event()
        cond = sync.Condition()
        state = sync.dict()
        barrier = sync.Barrier(3)
        out = sync.Queue()
        children = [self.start(wait_for_event_then_report, event, cond, state, barrier, out)
                    for _ in range(2)]
        event.set()
        with cond:
            assert cond.wait_for(lambda: state.get('arrived', 0) == 2, TIMEOUT)
        barrier.wait(TIMEOUT)
        assert [out.get(timeout=TIMEOUT) for _ in children] == [True, True]
        assert [self.finish(c) for c in children] == [0, 0]

    def test_semaphore_bounds_concurrency(self, sync):
        sem = sync.BoundedSemaphore(2)
        inside = sync.Value('i', 0)
        peak = sync.Value('i', 0)
        lock = sync.Lock()
        children = [self.start(use_semaphore, sem, inside, peak, lock) for _ in range(5)]
        assert [self.finish(c) for c in children] == [0] * 5
        assert 1 <= peak.value <= 2
        assert inside.value == 0

    def test_child_connects_with_inherited_authkey(self):
        m = TallyManager(ctx=self.ctx)
        m.start()
        try:
            q = SyncManager(ctx=self.ctx)
            q.start()
            try:
                results = q.Queue()
                child = self.start(connect_and_create, m.address, None, results)
                assert self.finish(child) == 0
                assert results.get(timeout=TIMEOUT) == m._process.pid
                assert self.wait_for_objects(m, 0) == 0
            finally:
                q.shutdown()
        finally:
            m.shutdown()

    def test_nested_proxy_used_by_child(self, sync):
        outer = sync.list()
        inner = sync.dict()
        outer.append(inner)
        child = self.start(touch_nested, outer)
        assert self.finish(child) == 0
        assert inner['from child'] == child.pid

    def test_remote_exceptions_in_child(self, sync):
        d = sync.dict()
        out = sync.Queue()
        child = self.start(check_raises_in_child, d, out)
        assert self.finish(child) == 0
        assert out.get(timeout=TIMEOUT) == 'ok'

    def test_references_released_when_children_end(self, sync):
        d = sync.dict(a=1)
        baseline = sync._number_of_objects()
        children = [self.start(hold_proxy_and_exit, d) for _ in range(3)]
        assert [self.finish(c) for c in children] == [0, 0, 0]
        assert d['child saw'] >= 1
        assert self.wait_for_objects(sync, baseline) == baseline
        del d
        assert self.wait_for_objects(sync, 0) == 0

    def test_manager_pool(self, sync):
        pytest.importorskip('multiprocessing.pool')
        pool = sync.Pool(2)
        try:
            assert pool.map(abs, [-1, -2, 3]) == [1, 2, 3]
        finally:
            pool.terminate()
