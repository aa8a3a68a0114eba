"""Value, Array and raw shared ctypes with children under the forkserver start method."""

from _suite_sharedctypes import SharedCTypesSuite


class TestSharedCTypesForkServer(SharedCTypesSuite):
    START_METHOD = 'forkserver'
