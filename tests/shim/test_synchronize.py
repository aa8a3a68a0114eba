"""Synchronization behaviour that does not depend on the start method."""

import pytest

import multiprocessing

from _suite_synchronize import (  # noqa: F401  (collected here once)
    test_bounded_semaphore_refuses_over_release,
    test_event_and_timeouts,
    test_lock_reprs_name_their_owner,
    test_rlock_release_by_non_owner_is_an_assertion_error,
    test_semlock_is_mphosts_own,
)


def test_with_statement_acquires_and_releases_the_native_semlock():
    lock = multiprocessing.Lock()
    with lock as entered:
        assert entered is True
        assert not lock.acquire(False)
    assert lock.acquire(False)
    lock.release()
    with pytest.raises(KeyError):
        with lock:
            raise KeyError('inside')
    assert lock.acquire(False)
    lock.release()
    # __exit__ of a free Lock is an over-release, as release() is.
    with pytest.raises(ValueError, match='released too many times'):
        lock.__exit__(None, None, None)
    rlock = multiprocessing.RLock()
    with rlock:
        with rlock:
            assert rlock._semlock._count() == 2
        assert rlock._semlock._count() == 1
    assert rlock._semlock._count() == 0 and not rlock._semlock._is_mine()


def test_lock_without_its_semlock_says_so():
    from multiprocessing import synchronize
    bare = synchronize.Lock.__new__(synchronize.Lock)
    with pytest.raises(AttributeError, match="'Lock' object has no attribute '_semlock'"):
        bare.__enter__()
    with pytest.raises(AttributeError, match='_semlock'):
        bare._semlock
    # Any object with __enter__/__exit__ may stand in for the native one.
    events = []

    class Recorder:
        def __enter__(self):
            events.append('enter')
            return 'entered'

        def __exit__(self, *exc):
            events.append(('exit', exc[0]))

    bare._semlock = Recorder()
    with bare as entered:
        assert entered == 'entered'
    assert events == ['enter', ('exit', None)]


def test_condition_wait_lets_a_recursive_lock_go_entirely_and_takes_it_back():
    import threading
    cond = multiprocessing.Condition(multiprocessing.RLock())
    seen = []

    def notifier():
        with cond:  # only possible once wait() let go of both levels
            seen.append(cond._lock._semlock._count())
            cond.notify()

    with cond, cond:
        assert cond._lock._semlock._count() == 2
        thread = threading.Thread(target=notifier)
        thread.start()
        assert cond.wait(60) is True
        assert cond._lock._semlock._count() == 2
    thread.join(60)
    assert seen == [1]
    assert not cond._lock._semlock._is_mine()


def test_condition_refuses_an_unowned_lock_with_the_stdlibs_phrases():
    cond = multiprocessing.Condition(multiprocessing.Lock())
    with pytest.raises(AssertionError, match=r'must acquire\(\) condition before using wait\(\)'):
        cond.wait(0.01)
    with pytest.raises(AssertionError, match='lock is not owned'):
        cond.notify()
    with pytest.raises(AssertionError, match='lock is not owned'):
        cond.notify_all()
    assert cond._sleeping_count.get_value() == 0


def test_condition_wait_for_returns_the_predicates_last_value():
    cond = multiprocessing.Condition()
    with cond:
        assert cond.wait_for(lambda: 0, timeout=0.05) == 0
        assert cond.wait_for(lambda: 'ready', timeout=0.05) == 'ready'
        calls = []
        assert cond.wait_for(lambda: calls.append(1), timeout=0) is None and calls


def test_barrier_action_runs_once_and_a_failing_action_breaks_it():
    import threading
    ran = []
    barrier = multiprocessing.Barrier(2, action=lambda: ran.append(1))
    other = threading.Thread(target=barrier.wait, args=(60,))
    other.start()
    index = barrier.wait(60)
    other.join(60)
    assert index in (0, 1) and ran == [1]

    def fail():
        raise KeyError('action')
    broken = multiprocessing.Barrier(1, action=fail)
    with pytest.raises(KeyError):
        broken.wait()
    assert broken.broken
    with pytest.raises(threading.BrokenBarrierError):
        broken.wait()
    broken.reset()
    assert not broken.broken
    with pytest.raises(ValueError, match='parties must be > 0'):
        multiprocessing.Barrier(0)


def test_barrier_and_event_reprs_follow_threadings():
    barrier = multiprocessing.Barrier(3)
    assert repr(barrier).endswith('waiters=0/3>')
    barrier.abort()
    assert repr(barrier).endswith(': broken>')
    assert barrier._state == -2 and barrier._count == 0
    event = multiprocessing.Event()
    assert repr(event).endswith(' unset>')
    event.set()
    assert repr(event).endswith(' set>')


def test_fork_context_primitives_cannot_be_pickled_for_a_spawned_child():
    import pickle
    from multiprocessing import context
    fork = multiprocessing.get_context('fork')
    for make in (fork.Event, fork.Condition, lambda: fork.Barrier(2)):
        obj = make()
        with pytest.raises(RuntimeError, match='inheritance'):
            pickle.dumps(obj)
        context.set_spawning_popen(object())
        try:
            with pytest.raises(RuntimeError, match='fork context'):
                pickle.dumps(obj)
        finally:
            context.set_spawning_popen(None)
