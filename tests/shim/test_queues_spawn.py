"""Queues under the spawn start method."""

from _suite_queues import QueueSuite


class TestQueuesSpawn(QueueSuite):
    START_METHOD = 'spawn'
