"""Queues under the fork start method."""

from _suite_queues import QueueSuite


class TestQueuesFork(QueueSuite):
    START_METHOD = 'fork'
