"""Locks, semaphores, conditions, events and barriers across processes,
instantiated per start method by test_synchronize_{fork,spawn,forkserver}.py."""

import os
import signal
import time
import warnings

import pytest

import multiprocessing
from multiprocessing.synchronize import AbandonedLockWarning

from _start_method import StartMethodSuite

TIMEOUT = 60


def hold_and_die(lock, ready):
    lock.acquire()
    ready.set()
    os.kill(os.getpid(), signal.SIGKILL)


def hold_until(lock, ready, release):
    with lock:
        ready.set()
        release.wait(TIMEOUT)


def increment(value, times):
    for _ in range(times):
        with value.get_lock():
            value.value += 1


def wait_on_condition(cond, flag, woken):
    with cond:
        ok = cond.wait_for(lambda: flag.value == 1, TIMEOUT)
    woken.put(ok)


def pass_barrier(barrier, out):
    out.put(barrier.wait(TIMEOUT))


def take_semaphore(sem, out):
    out.put(sem.acquire(timeout=TIMEOUT))


def wait_forever_on_barrier(barrier):
    barrier.wait(None)


def wait_on_event(event, ready, out):
    ready.release()
    out.put(event.wait(TIMEOUT))


def sleep_on_condition(cond, out):
    with cond:
        out.put(cond.wait(TIMEOUT))


def until(predicate, timeout=TIMEOUT):
    """Polls predicate() until it holds (True) or timeout seconds pass."""
    give_up = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > give_up:
            return False
        time.sleep(0.01)
    return True


class SynchronizeSuite(StartMethodSuite):
    @pytest.mark.parametrize('kind', ['Lock', 'RLock'])
    def test_lock_of_a_dead_holder_is_recovered_with_a_warning(self, kind):
        lock, ready = getattr(self.ctx, kind)(), self.ctx.Event()
        p = self.start(hold_and_die, lock, ready)
        assert ready.wait(TIMEOUT)
        p.join(TIMEOUT)
        assert p.exitcode == -signal.SIGKILL
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            assert lock.acquire(timeout=TIMEOUT)
        assert [w.category for w in caught] == [AbandonedLockWarning]
        assert 'died holding' in str(caught[0].message)
        assert lock._semlock._recovered
        lock.release()
        # Recovered once: it works as a plain lock from then on.
        with warnings.catch_warnings():
            warnings.simplefilter('error')
            with lock:
                pass

    def test_lock_excludes_other_processes(self):
        lock, ready, release = self.ctx.Lock(), self.ctx.Event(), self.ctx.Event()
        p = self.start(hold_until, lock, ready, release)
        assert ready.wait(TIMEOUT)
        assert not lock.acquire(timeout=0.05)
        assert not lock.acquire(False)
        release.set()
        assert lock.acquire(timeout=TIMEOUT)
        lock.release()
        p.join(TIMEOUT)
        assert p.exitcode == 0

    def test_value_incremented_under_its_lock_by_two_processes(self):
        value = self.ctx.Value('i', 0)
        children = [self.start(increment, value, 5000) for _ in range(2)]
        for p in children:
            p.join(TIMEOUT)
            assert p.exitcode == 0
        assert value.value == 10000

    def test_condition_wakes_a_waiter_in_another_process(self):
        cond, flag, woken = self.ctx.Condition(), self.ctx.Value('i', 0), self.ctx.Queue()
        p = self.start(wait_on_condition, cond, flag, woken)
        with cond:
            flag.value = 1
            cond.notify_all()
        assert woken.get(timeout=TIMEOUT) is True
        p.join(TIMEOUT)

    def test_barrier_releases_all_parties(self):
        barrier, out = self.ctx.Barrier(3), self.ctx.Queue()
        children = [self.start(pass_barrier, barrier, out) for _ in range(2)]
        mine = barrier.wait(TIMEOUT)
        indices = sorted([mine, out.get(timeout=TIMEOUT), out.get(timeout=TIMEOUT)])
        assert indices == [0, 1, 2]
        for p in children:
            p.join(TIMEOUT)

    # Robustness: a process killed inside a wait holds nothing up. (Stock
    # python3 differs here by design: its Barrier waits out the timeout, and
    # its Event.set() and Condition.notify_all() never return once a waiter
    # has died; see docs/BEHAVIOUR.md.)

    def test_barrier_party_killed_while_waiting_breaks_it_for_the_others(self):
        import threading
        barrier = self.ctx.Barrier(3)
        doomed = self.start(wait_forever_on_barrier, barrier)
        assert until(lambda: barrier.n_waiting == 1)
        doomed.kill()
        doomed.join(TIMEOUT)
        started = time.monotonic()
        with pytest.raises(threading.BrokenBarrierError):
            barrier.wait(30)
        assert time.monotonic() - started < 5, 'the others waited out their timeout'
        assert barrier.broken
        barrier.reset()
        assert not barrier.broken and barrier.n_waiting == 0
        # Whole again: a full cycle passes.
        out = self.ctx.Queue()
        children = [self.start(pass_barrier, barrier, out) for _ in range(2)]
        indices = sorted([barrier.wait(TIMEOUT), out.get(timeout=TIMEOUT), out.get(timeout=TIMEOUT)])
        assert indices == [0, 1, 2]
        for p in children:
            p.join(TIMEOUT)

    def test_event_waiter_killed_blocks_neither_set_nor_other_waiters(self):
        event, ready, out = self.ctx.Event(), self.ctx.Semaphore(0), self.ctx.Queue()
        doomed = self.start(wait_on_event, event, ready, out)
        assert ready.acquire(timeout=TIMEOUT)
        time.sleep(0.1)  # asleep in wait()
        doomed.kill()
        doomed.join(TIMEOUT)
        live = self.start(wait_on_event, event, ready, out)
        assert ready.acquire(timeout=TIMEOUT)
        started = time.monotonic()
        event.set()
        assert time.monotonic() - started < 5
        assert out.get(timeout=TIMEOUT) is True
        live.join(TIMEOUT)
        assert live.exitcode == 0
        event.clear()
        assert event.wait(0.05) is False
        assert event.is_set() is False

    def test_condition_waiter_killed_loses_no_notification(self):
        cond, out = self.ctx.Condition(), self.ctx.Queue()
        doomed = self.start(sleep_on_condition, cond, out)
        assert until(lambda: cond._sleeping_count.get_value() == 1)
        live = [self.start(sleep_on_condition, cond, out) for _ in range(2)]
        assert until(lambda: cond._sleeping_count.get_value() == 3)
        time.sleep(0.1)
        doomed.kill()
        doomed.join(TIMEOUT)
        # The dead waiter is the oldest: notify() must still wake a live one.
        with cond:
            cond.notify()
        assert out.get(timeout=TIMEOUT) is True
        started = time.monotonic()
        with cond:
            cond.notify_all()
        assert time.monotonic() - started < 5
        assert out.get(timeout=TIMEOUT) is True
        for p in live:
            p.join(TIMEOUT)
            assert p.exitcode == 0

    def test_semaphore_counts_across_processes(self):
        sem, out = self.ctx.Semaphore(0), self.ctx.Queue()
        p = self.start(take_semaphore, sem, out)
        sem.release()
        assert out.get(timeout=TIMEOUT) is True
        p.join(TIMEOUT)
        assert sem.get_value() == 0


def test_bounded_semaphore_refuses_over_release():
    sem = multiprocessing.BoundedSemaphore(2)
    sem.acquire()
    sem.release()
    with pytest.raises(ValueError, match='released too many times'):
        sem.release()


def test_rlock_release_by_non_owner_is_an_assertion_error():
    lock = multiprocessing.RLock()
    with pytest.raises(AssertionError):
        lock.release()


def test_event_and_timeouts():
    event = multiprocessing.Event()
    start = time.monotonic()
    assert event.wait(0.05) is False
    assert time.monotonic() - start >= 0.04
    event.set()
    assert event.is_set() and event.wait(0) is True
    event.clear()
    assert not event.is_set()


def test_lock_reprs_name_their_owner():
    lock = multiprocessing.Lock()
    assert repr(lock) == '<Lock(owner=None)>'
    with lock:
        assert repr(lock) == '<Lock(owner=MainProcess)>'
    rlock = multiprocessing.RLock()
    with rlock, rlock:
        assert repr(rlock) == '<RLock(MainProcess, 2)>'


def test_semlock_is_mphosts_own():
    import _multiprocessing
    assert _multiprocessing.__spec__.origin == 'built-in'
    assert multiprocessing.Lock()._semlock.__class__.__module__ == '_multiprocessing'
