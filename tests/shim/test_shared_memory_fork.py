"""SharedMemory and ShareableList with children under the fork start method."""

from _suite_shared_memory import SharedMemorySuite


class TestSharedMemoryFork(SharedMemorySuite):
    START_METHOD = 'fork'
