"""Value, Array and raw shared ctypes with children under the spawn start method."""

from _suite_sharedctypes import SharedCTypesSuite


class TestSharedCTypesSpawn(SharedCTypesSuite):
    START_METHOD = 'spawn'
