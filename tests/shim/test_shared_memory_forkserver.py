"""SharedMemory and ShareableList with children under the forkserver start method."""

from _suite_shared_memory import SharedMemorySuite


class TestSharedMemoryForkServer(SharedMemorySuite):
    START_METHOD = 'forkserver'
