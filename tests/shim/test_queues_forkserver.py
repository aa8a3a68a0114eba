"""Queues under the forkserver start method."""

from _suite_queues import QueueSuite


class TestQueuesForkserver(QueueSuite):
    START_METHOD = 'forkserver'
