"""Signals during Event, Condition and Barrier waits: a handler that raises
ends the wait with its exception, a quiet one lets the wait go on with the
time it had left (as the stdlib's semaphore-based waits do)."""

import multiprocessing
import signal
import threading
import time

import pytest


class Alarm(Exception):
    pass


def _raise_alarm(signum, frame):
    raise Alarm()


def _quiet(signum, frame):
    pass


@pytest.fixture
def alarm():
    """alarm(handler, after): SIGALRM to this thread after `after` seconds.

    0.15 s falls mid-way through one of the barrier's 100 ms sleeps: a
    signal that lands between two core sleeps (not in a system call) is
    only seen when the wait ends, as with a semaphore's sem_timedwait."""
    old = signal.getsignal(signal.SIGALRM)

    def arm(handler, after=0.15):
        signal.signal(signal.SIGALRM, handler)
        signal.setitimer(signal.ITIMER_REAL, after)

    yield arm
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, old)


def test_a_raising_handler_ends_an_event_wait(alarm):
    ev = multiprocessing.Event()
    alarm(_raise_alarm)
    with pytest.raises(Alarm):
        ev.wait(5)
    assert not ev.is_set()
    ev.set()
    assert ev.wait(0) is True


def test_a_quiet_handler_resumes_an_event_wait_with_the_time_left(alarm):
    ev = multiprocessing.Event()
    alarm(_quiet, 0.15)
    start = time.monotonic()
    assert ev.wait(0.5) is False
    took = time.monotonic() - start
    assert 0.45 <= took < 2.0


def test_a_raising_handler_ends_a_condition_wait_and_the_waiter_leaves(alarm):
    cond = multiprocessing.Condition()
    alarm(_raise_alarm)
    with cond:
        with pytest.raises(Alarm):
            cond.wait(5)
    # The lock came back to us, and no one is left waiting.
    assert cond._lock.acquire(False)
    cond._lock.release()
    with cond:
        assert cond.wait(0) is False


def test_a_quiet_handler_resumes_a_condition_wait_with_the_time_left(alarm):
    cond = multiprocessing.Condition()
    alarm(_quiet, 0.15)
    start = time.monotonic()
    with cond:
        assert cond.wait(0.5) is False
    assert 0.45 <= time.monotonic() - start < 2.0


def test_a_raising_handler_ends_a_barrier_wait_and_the_party_leaves(alarm):
    bar = multiprocessing.Barrier(2)
    alarm(_raise_alarm)
    with pytest.raises(Alarm):
        bar.wait(5)
    assert bar.n_waiting == 0


def test_a_quiet_handler_resumes_a_barrier_wait_until_its_partner_comes(alarm):
    bar = multiprocessing.Barrier(2)
    got = []
    partner = threading.Thread(target=lambda: (time.sleep(0.3), got.append(bar.wait(5))))
    alarm(_quiet, 0.15)
    partner.start()
    start = time.monotonic()
    mine = bar.wait(5)
    partner.join(5)
    assert time.monotonic() - start >= 0.25
    assert sorted([mine] + got) == [0, 1]
    assert not bar.broken


def test_a_quiet_handler_keeps_a_barrier_timeout(alarm):
    bar = multiprocessing.Barrier(2)
    alarm(_quiet, 0.15)
    start = time.monotonic()
    with pytest.raises(threading.BrokenBarrierError):
        bar.wait(0.4)
    assert 0.35 <= time.monotonic() - start < 2.0
    assert bar.broken


def test_the_native_waits_refuse_a_nan_timeout_with_one_message():
    # The stdlib's waits disagree on NaN (a Condition's semaphore says
    # EINVAL); the native objects all say what a SemLock says.
    import _mphost
    with pytest.raises(ValueError, match=r'^Invalid value NaN \(not a number\)$'):
        _mphost.SharedEvent(unlink=True).wait(float('nan'))
    with pytest.raises(ValueError, match=r'^Invalid value NaN \(not a number\)$'):
        _mphost.SharedBarrier(1, unlink=True).wait(float('nan'))
    cond = _mphost.SharedCondition(unlink=True)
    place = cond.enlist()
    with pytest.raises(ValueError, match=r'^Invalid value NaN \(not a number\)$'):
        cond.wait(place, float('nan'))
    assert not place.active and cond.waiting == 0
