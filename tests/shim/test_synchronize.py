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
