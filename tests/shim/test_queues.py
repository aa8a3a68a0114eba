"""Queue behaviour that does not depend on the start method."""

from _suite_queues import (  # noqa: F401  (collected here once)
    test_a_feeder_subclass_keeps_slots_tasks_and_close,
    test_plain_queue_needs_no_thread,
    test_subclass_overriding_the_feeder_gets_a_feeder_thread,
)
