"""The CPython test suites the harness runs, and the subset run in CI.

Every suite is a module of Debian's libpython3.11-testsuite
(/usr/lib/python3.11/test), run as ``INTERPRETER -m test SUITE``.
"""

from __future__ import annotations

from _outcomes import split_fixture_id

SUITES = (
    "test_multiprocessing_fork",
    "test_multiprocessing_spawn",
    "test_multiprocessing_forkserver",
    "test_multiprocessing_main_handling",
    "test_concurrent_futures",
)

# Seconds one suite takes under stock python3 on the reference machine (2
# cores), used to start the longest suites first when no earlier report
# gives a better figure.
ESTIMATED_SECONDS = {
    "test_concurrent_futures": 130,
    "test_multiprocessing_spawn": 85,
    "test_multiprocessing_forkserver": 70,
    "test_multiprocessing_fork": 65,
    "test_multiprocessing_main_handling": 6,
}

# Classes of the three start-method suites that cover process life cycle,
# queues, locks, shared values, connections, pools and the module surface.
# Patterns without a dot match any part of a test id (regrtest -m), so
# "*TestProcess" selects WithProcessesTestProcess and WithThreadsTestProcess.
_START_METHOD_CI = [
    "*TestProcess",
    "*TestSubclassingProcess",
    "*TestQueue",
    "TestSimpleQueue",
    "*TestLock",
    "*TestSemaphore",
    "*TestEvent",
    "*TestValue",
    "*TestArray",
    "*TestConnection",
    "*TestPool",
    "TestStartMethod",
    "_TestImportStar",
    "TestNoForkBomb",
    "MiscTestCase",
]

# suite -> regrtest -m patterns; an empty list runs the whole suite.
CI_SELECTION: dict[str, list[str]] = {
    "test_multiprocessing_main_handling": [],
    "test_multiprocessing_fork": list(_START_METHOD_CI),
    "test_multiprocessing_spawn": list(_START_METHOD_CI),
    "test_multiprocessing_forkserver": list(_START_METHOD_CI),
    "test_concurrent_futures": ["ProcessPool*ProcessPoolExecutorTest",
                                "ProcessPool*InitializerTest"],
}


def suite_of(test_id: str) -> str:
    """The suite (test module) a result id belongs to."""
    fixture = split_fixture_id(test_id)
    if fixture is not None:
        test_id = fixture[1]
    parts = test_id.split(".")
    if len(parts) >= 2 and parts[0] == "test":
        return parts[1]
    return parts[0]
