"""Synchronization behaviour that does not depend on the start method."""

from _suite_synchronize import (  # noqa: F401  (collected here once)
    test_bounded_semaphore_refuses_over_release,
    test_event_and_timeouts,
    test_lock_reprs_name_their_owner,
    test_rlock_release_by_non_owner_is_an_assertion_error,
    test_semlock_is_mphosts_own,
)
