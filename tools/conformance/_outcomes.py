"""Outcome of one test id in one run, and how outcomes are grouped.

A test id is unittest's ``TestCase.id()`` as regrtest writes it in its junit
file, e.g. ``test.test_multiprocessing_fork.WithProcessesTestProcess.test_lose_target_ref``.
Class and module fixtures (``setUpClass`` ...) that fail or skip have no id of
their own in unittest; they are recorded under unittest's own description of
them, e.g. ``setUpClass (test.test_multiprocessing_fork.WithManagerTestPool)``.
A test module that fails or skips as a whole, before any test, is recorded as
``<module> (test.test_multiprocessing_fork)``.

Statuses:

=========  ================================================================
pass       the test ran and succeeded
xfail      ``@expectedFailure`` test that failed as expected (counts as pass)
skip       skipped; ``message`` holds the reason
fail       assertion failure
error      any other exception
xpass      ``@expectedFailure`` test that succeeded (unittest calls this a failure)
hang       the harness killed the run because this test made no progress
crash      the interpreter died while this test was running
=========  ================================================================
"""

from __future__ import annotations

import dataclasses

PASS = "pass"
XFAIL = "xfail"
SKIP = "skip"
FAIL = "fail"
ERROR = "error"
XPASS = "xpass"
HANG = "hang"
CRASH = "crash"

STATUSES = (PASS, XFAIL, SKIP, FAIL, ERROR, XPASS, HANG, CRASH)
PASSED = frozenset({PASS, XFAIL})
FAILED = frozenset({FAIL, XPASS})
ERRORED = frozenset({ERROR, HANG, CRASH})

# When one test id has several records (sub-tests), the most severe wins.
_SEVERITY = {PASS: 0, XFAIL: 1, SKIP: 2, XPASS: 3, FAIL: 4, ERROR: 5, CRASH: 6, HANG: 7}

FIXTURE_NAMES = ("setUpModule", "tearDownModule", "setUpClass", "tearDownClass")
# Record of a test module that regrtest could not run at all (it raised on
# import: "test X crashed -- Traceback ...") or that skipped itself on import.
MODULE_RECORD = "<module>"
_RECORD_NAMES = FIXTURE_NAMES + (MODULE_RECORD,)


@dataclasses.dataclass
class Outcome:
    """What happened to one test id."""

    test_id: str
    status: str
    time: float | None = None
    # skip reason, or the one line that names the error
    message: str = ""
    # traceback or longer explanation (failures only)
    detail: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown test status {self.status!r}")

    @property
    def passed(self) -> bool:
        return self.status in PASSED

    def to_json(self) -> dict:
        data = {"status": self.status}
        if self.time is not None:
            data["time"] = round(self.time, 3)
        if self.message:
            data["message"] = self.message
        if self.detail:
            data["detail"] = self.detail
        return data

    @classmethod
    def from_json(cls, test_id: str, data: dict) -> "Outcome":
        return cls(test_id, data["status"], data.get("time"),
                   data.get("message", ""), data.get("detail", ""))


def more_severe(a: Outcome, b: Outcome) -> Outcome:
    """The record that describes the test when it has two (sub-test) records."""
    return b if _SEVERITY[b.status] > _SEVERITY[a.status] else a


def category(status: str) -> str:
    """Column of the summary table a status is counted in."""
    if status in PASSED:
        return "pass"
    if status == SKIP:
        return "skip"
    if status in FAILED:
        return "fail"
    return "error"


def count(outcomes) -> dict:
    """run/pass/fail/error/skip counts of an iterable of Outcome."""
    counts = {"run": 0, "pass": 0, "fail": 0, "error": 0, "skip": 0}
    for outcome in outcomes:
        counts["run"] += 1
        counts[category(outcome.status)] += 1
    return counts


def fixture_id(fixture: str, owner: str) -> str:
    """Record id of a failing class/module fixture, as unittest prints it."""
    return f"{fixture} ({owner})"


def split_fixture_id(test_id: str) -> tuple[str, str] | None:
    """(fixture, owner) of a fixture record id, None for an ordinary test id."""
    name, sep, rest = test_id.partition(" (")
    if sep and name in _RECORD_NAMES and rest.endswith(")"):
        return name, rest[:-1]
    return None


DETAIL_LIMIT = 4000


def clip_detail(text: str) -> str:
    """A traceback cut to its last DETAIL_LIMIT characters (the end matters)."""
    text = text.strip("\n")
    if len(text) <= DETAIL_LIMIT:
        return text
    return "[...]\n" + text[-DETAIL_LIMIT:]


def first_error_line(text: str) -> str:
    """The line naming the final exception of a traceback text.

    For ``Traceback ... ValueError: bad`` this is ``ValueError: bad``. With
    chained exceptions the last traceback is the one that was raised. Text
    without a traceback gives its first non-blank line.
    """
    lines = text.splitlines()
    start = None
    for index, line in enumerate(lines):
        if line.startswith("Traceback (most recent call last):"):
            start = index
    if start is not None:
        for line in lines[start + 1:]:
            if line and not line[0].isspace():
                return line.strip()
    for line in lines:
        if line.strip():
            return line.strip()
    return ""
