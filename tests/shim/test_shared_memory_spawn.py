"""SharedMemory and ShareableList with children under the spawn start method."""

from _suite_shared_memory import SharedMemorySuite


class TestSharedMemorySpawn(SharedMemorySuite):
    START_METHOD = 'spawn'
