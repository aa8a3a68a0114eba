"""Outcomes of one regrtest run, from its junit file completed by its log.

The junit file is the record. The verbose log adds only what 3.11's junit
writer cannot hold (listed in _junit.py): fixture errors and skips, the tests
whose sub-tests failed, skips with an empty reason. When the run left no
junit file (it was killed, or the interpreter died), the statuses the log
shows for the tests that finished are used instead and the result says so
(``source == "log"``).
"""

from __future__ import annotations

import dataclasses
import os

from _junit import JunitError, parse_junit
from _outcomes import FIXTURE_NAMES as _FIXTURE_NAMES
from _outcomes import (PASS, SKIP, Outcome, clip_detail, fixture_id,
                       more_severe)
from _verbose_log import (VerboseLog, parse_error_listing, parse_module_results,
                          warnings)


@dataclasses.dataclass
class Collected:
    outcomes: dict[str, Outcome]
    source: str                     # "junit" or "log"
    running: str | None             # test announced but not finished at the end
    last_finished: str | None
    notes: list[str]


def collect(junit_path: str | None, log_text: str, name: str | None = None,
            module: str | None = None) -> Collected:
    """Outcomes of the run of test module ``name`` (dotted ``module``) from its files."""
    log = VerboseLog()
    log.feed(log_text)
    running = log.finalize()
    listing = parse_error_listing(log_text)
    notes: list[str] = []

    junit = None
    if junit_path and os.path.exists(junit_path):
        try:
            junit = parse_junit(junit_path)
        except JunitError as exc:
            notes.append(f"junit file unreadable: {exc}")

    if junit is not None:
        outcomes = dict(junit.outcomes)
        source = "junit"
        for test_id in log.empty_skips:
            if test_id in outcomes and outcomes[test_id].status == PASS:
                outcomes[test_id] = Outcome(test_id, SKIP, outcomes[test_id].time, "")
        resolved = _add_subtest_failures(outcomes, listing)
        if resolved != junit.anonymous:
            notes.append(f"{junit.anonymous} unnamed junit test records (tests with failing "
                         f"sub-tests), {resolved} matched in the log")
    else:
        outcomes = dict(log.finished)
        source = "log"
        for entry in listing:
            if entry.name not in _FIXTURE_NAMES and entry.owner in outcomes:
                record = outcomes[entry.owner]
                if not record.message:
                    record.message = entry.message
                    record.detail = clip_detail(entry.body)
        if junit_path:
            notes.append("no junit file: statuses taken from the verbose log")

    _add_fixtures(outcomes, log.fixtures, listing)
    if name is not None:
        for record in parse_module_results(log_text, name, module or name):
            outcomes[record.test_id] = record
    found_warnings = warnings(log_text)
    if found_warnings:
        notes.append("regrtest warnings: " + "; ".join(found_warnings))
    return Collected(outcomes, source, running, log.last_finished, notes)


def _add_subtest_failures(outcomes: dict[str, Outcome], listing) -> int:
    """Record tests whose sub-tests failed; how many had no junit record."""
    resolved = 0
    seen = set()
    for entry in listing:
        if not entry.params or entry.name in _FIXTURE_NAMES or entry.flavour not in ("FAIL", "ERROR"):
            continue
        record = Outcome(entry.owner, entry.status, None, entry.message, clip_detail(entry.body))
        previous = outcomes.get(entry.owner)
        if previous is None:
            if entry.owner not in seen:
                resolved += 1
            outcomes[entry.owner] = record
        else:
            if previous.status in (PASS, SKIP) and entry.owner not in seen:
                resolved += 1
            record.time = previous.time
            outcomes[entry.owner] = more_severe(previous, record)
        seen.add(entry.owner)
    return resolved


def _add_fixtures(outcomes: dict[str, Outcome], from_lines: dict[str, Outcome], listing) -> None:
    for record_id, record in from_lines.items():
        outcomes[record_id] = Outcome(record_id, record.status, None, record.message)
    for entry in listing:
        if entry.name not in _FIXTURE_NAMES or entry.flavour not in ("FAIL", "ERROR"):
            continue
        record_id = fixture_id(entry.name, entry.owner)
        outcomes[record_id] = Outcome(record_id, entry.status, None, entry.message,
                                      clip_detail(entry.body))
