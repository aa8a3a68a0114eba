"""The list of tests expected not to pass under mphost, and the check against it.

File format (tests/conformance/expected_failures.txt)::

    # comment lines and blank lines are ignored
    TEST_ID  # REASON

One entry per line; TEST_ID is a result id as in the report (a unittest
test id, or ``setUpClass (CLASS_ID)`` for a failing fixture); REASON is one
line and is required. A test belongs in the list when it passes under stock
python3 and does not pass (fails, errors, hangs, crashes, is skipped or
does not run) under mphost.

``--update-expected`` rewrites the file from a run: entries the run did not
select stay as they are; within the selection, tests that now pass leave
the list and new non-passing ones join it. A reason written by the tool
starts with the status in brackets (``[fail] AssertionError: ...``) and is
refreshed on update; a reason edited by hand (anything else) is kept.

The check: every selected test that passes on stock and is not listed must
pass on mphost, and every selected listed test must still not pass there
(so the list only shrinks).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Callable, Mapping

from _outcomes import Outcome
from _suites import suite_of

_GENERATED = re.compile(r"^\[(\w+)\]")
MISSING = "missing"

HEADER = """\
# Tests that pass under stock python3 but do not pass yet under mphost.
# Format: TEST_ID  # REASON   (one per line; see tools/conformance/README.md)
# Written by tools/conformance/run_conformance.py --update-expected, reviewed by hand.
# A reason starting with "[status]" is regenerated on update; any other reason is kept.
"""


class ExpectedFileError(ValueError):
    """The expected-failures file is malformed."""


def parse_expected(text: str, source: str = "expected failures") -> dict[str, str]:
    """test id -> reason, in file order."""
    entries: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        test_id, sep, reason = line.partition("#")
        test_id, reason = test_id.strip(), reason.strip()
        if not sep or not reason:
            raise ExpectedFileError(f"{source}:{number}: entry without a reason "
                                    f"(expected 'TEST_ID  # REASON'): {line!r}")
        if not test_id:
            raise ExpectedFileError(f"{source}:{number}: reason without a test id")
        if test_id in entries:
            raise ExpectedFileError(f"{source}:{number}: {test_id} is listed twice")
        entries[test_id] = reason
    return entries


def render_expected(entries: Mapping[str, str]) -> str:
    """File text, entries grouped by suite and sorted."""
    by_suite: dict[str, list[str]] = {}
    for test_id in entries:
        by_suite.setdefault(suite_of(test_id), []).append(test_id)
    parts = [HEADER]
    for suite in sorted(by_suite):
        parts.append(f"\n## {suite}\n")
        for test_id in sorted(by_suite[suite]):
            parts.append(f"{test_id}  # {_one_line(entries[test_id])}\n")
    return "".join(parts)


def generated_reason(outcome: Outcome | None) -> str:
    if outcome is None:
        return f"[{MISSING}] did not run under mphost"
    text = outcome.message or {"skip": "skipped"}.get(outcome.status, outcome.status)
    return f"[{outcome.status}] {_one_line(text)}"


def is_generated(reason: str) -> bool:
    return bool(_GENERATED.match(reason))


def regressions(stock: Mapping[str, Outcome], mphost: Mapping[str, Outcome],
                selected: Callable[[str], bool]) -> dict[str, Outcome | None]:
    """Selected tests that pass on stock and not on mphost -> mphost outcome (None: absent)."""
    found: dict[str, Outcome | None] = {}
    for test_id, outcome in stock.items():
        if not outcome.passed or not selected(test_id):
            continue
        other = mphost.get(test_id)
        if other is None or not other.passed:
            found[test_id] = other
    return found


def update_expected(old: Mapping[str, str], found: Mapping[str, Outcome | None],
                    selected: Callable[[str], bool]) -> dict[str, str]:
    """New entries: old ones outside the selection, plus this run's regressions."""
    new = {test_id: reason for test_id, reason in old.items() if not selected(test_id)}
    for test_id, outcome in found.items():
        reason = old.get(test_id)
        if reason is None or is_generated(reason):
            reason = generated_reason(outcome)
        new[test_id] = reason
    return new


@dataclasses.dataclass
class Unexpected:
    kind: str           # "regression", "now-passes"
    test_id: str
    detail: str

    def line(self) -> str:
        label = {"regression": "UNEXPECTED FAILURE", "now-passes": "UNEXPECTED PASS"}[self.kind]
        return f"{label}: {self.test_id}: {self.detail}"


@dataclasses.dataclass
class CheckResult:
    unexpected: list[Unexpected]
    warnings: list[str]


def check_expected(expected: Mapping[str, str], stock: Mapping[str, Outcome],
                   mphost: Mapping[str, Outcome], selected: Callable[[str], bool]) -> CheckResult:
    """Compare an mphost run with stock and the expected-failures list."""
    unexpected: list[Unexpected] = []
    warnings: list[str] = []
    for test_id, other in sorted(regressions(stock, mphost, selected).items()):
        if test_id not in expected:
            unexpected.append(Unexpected("regression", test_id,
                                         generated_reason(other) + " (passes on stock)"))
    for test_id in sorted(expected):
        if not selected(test_id):
            continue
        reference = stock.get(test_id)
        other = mphost.get(test_id)
        if other is not None and other.passed:
            if reference is not None and reference.passed:
                unexpected.append(Unexpected(
                    "now-passes", test_id,
                    "passes under mphost; remove it from the expected failures"))
            else:
                warnings.append(f"{test_id} is listed as expected failure, passes under "
                                "mphost and does not pass on stock; remove it")
        elif reference is None and other is None:
            warnings.append(f"{test_id} is listed as expected failure but ran on neither side")
        elif reference is not None and not reference.passed:
            warnings.append(f"{test_id} is listed as expected failure but does not pass on "
                            f"stock either ({reference.status}); remove it")
    return CheckResult(unexpected, warnings)


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= 200 else line[:197] + "..."
