"""Reading regrtest's verbose (-v) output, as it is written.

unittest's verbose runner announces each test before running it and prints
its status after::

    test_pool (test.test_x.WithProcessesTestPool.test_pool) ... ok
    test_barrier (test.test_x.WithThreadsTestBarrier.test_barrier)
    Test that a barrier is passed in lockstep ... ok        (docstring line)
    test_sub (test.test_x.A.test_sub) ...
      test_sub (test.test_x.A.test_sub) (i=2) ... FAIL      (sub-test)
    setUpClass (test.test_x.B) ... ERROR                     (class fixture)

and at the end lists every failure and error::

    ======================================================================
    FAIL: test_sub (test.test_x.A.test_sub) (i=2)
    ----------------------------------------------------------------------
    Traceback (most recent call last): ...

The harness uses this text for three things only: which test is running now
(to name a hang or a crash), what the junit file cannot hold (fixture errors
and skips, sub-test failures, empty skip reasons; see _junit.py), and, when a
run left no junit file at all, the statuses of the tests it finished.
Output of child processes can land in the middle of these lines; the parser
tolerates it by accepting a status on a later line.
"""

from __future__ import annotations

import ast
import dataclasses
import re

from _outcomes import (ERROR, FAIL, FIXTURE_NAMES, MODULE_RECORD, PASS, SKIP, XFAIL,
                       XPASS, Outcome, clip_detail, first_error_line, fixture_id,
                       more_severe)

SEPARATOR1 = "=" * 70
SEPARATOR2 = "-" * 70

_DESCRIPTION = re.compile(
    r"^(?P<indent>  )?(?P<name>\w+) \((?P<owner>[\w.]+)\)"
    r"(?: (?P<params>\(.*?\)))?(?: \.\.\.(?: (?P<tail>.*))?)?$")
_STATUS_WORDS = {"ok": PASS, "FAIL": FAIL, "ERROR": ERROR,
                 "expected failure": XFAIL, "unexpected success": XPASS}
_STATUS_AT_END = re.compile(
    r" \.\.\. (ok|FAIL|ERROR|expected failure|unexpected success|skipped (?:'.*'|\".*\"))$")
_LISTING_HEADER = re.compile(r"^(FAIL|ERROR|UNEXPECTED SUCCESS): (.*)$")
_WARNING = re.compile(r"^Warning -- (.*)$", re.M)


def parse_status(text: str) -> tuple[str, str] | None:
    """(status, skip reason) of a verbose status word, None if it is not one."""
    text = text.strip()
    if text in _STATUS_WORDS:
        return _STATUS_WORDS[text], ""
    if text.startswith("skipped "):
        literal = text[len("skipped "):]
        try:
            reason = ast.literal_eval(literal)
        except (ValueError, SyntaxError):
            reason = literal
        return SKIP, str(reason)
    return None


@dataclasses.dataclass
class _Description:
    name: str
    owner: str
    subtest: bool
    tail: str | None  # None: no " ... " on the line (a docstring line follows)

    @property
    def is_fixture(self) -> bool:
        return self.name in FIXTURE_NAMES and not self.owner.endswith("." + self.name)

    @property
    def is_test(self) -> bool:
        return self.owner.endswith("." + self.name)


def _describe(line: str) -> _Description | None:
    match = _DESCRIPTION.match(line)
    if not match:
        return None
    subtest = match["params"] is not None
    if bool(match["indent"]) != subtest:
        return None
    tail = match["tail"]
    if tail is None and line.endswith(" ..."):
        tail = ""
    return _Description(match["name"], match["owner"], subtest, tail)


class VerboseLog:
    """Incremental parser of the verbose output of one regrtest run."""

    def __init__(self) -> None:
        self._partial = ""
        self.current: str | None = None      # test announced, no status yet
        self.last_finished: str | None = None
        self.finished: dict[str, Outcome] = {}
        self.fixtures: dict[str, Outcome] = {}
        self.empty_skips: set[str] = set()
        self.events = 0                       # grows on every start/status
        self._subtests: dict[str, Outcome] = {}
        self._pending_subtest: str | None = None  # sub-test with a docstring line
        self._announced: str | None = None        # started from an incomplete line

    def feed(self, text: str) -> None:
        text = self._partial + text
        lines = text.split("\n")
        self._partial = lines.pop()
        for line in lines:
            self._line(line.rstrip("\r"))
        self._peek_partial()

    def _peek_partial(self) -> None:
        # "test_x (id) ... " stays without a newline while the test runs:
        # count the test as started before its line is complete.
        description = _describe(self._partial)
        if (description is None or not description.is_test or description.subtest
                or description.tail or self._announced == description.owner):
            return
        self._test_line(description)
        self._announced = description.owner

    def close(self) -> None:
        """Consume a last line without newline (the process ended)."""
        if self._partial:
            partial, self._partial = self._partial, ""
            self._line(partial)

    # -- state machine -------------------------------------------------

    def _line(self, line: str) -> None:
        description = _describe(line)
        if description is not None and description.is_fixture and not description.subtest:
            status = parse_status(description.tail or "")
            if status is not None:
                self.events += 1
                owner_id = fixture_id(description.name, description.owner)
                self.fixtures[owner_id] = Outcome(owner_id, status[0], None, status[1])
            return
        if description is not None and description.is_test:
            self._test_line(description)
            return
        if self.current is None:
            return
        status = parse_status(line)
        if status is None:
            match = _STATUS_AT_END.search(line)
            if match:
                status = parse_status(match.group(1))
        if status is None:
            return
        self.events += 1
        if self._pending_subtest is not None:
            self._record_subtest(self._pending_subtest, status)
        else:
            self._finish(self.current, status)

    def _test_line(self, description: _Description) -> None:
        test_id = description.owner
        status = parse_status(description.tail) if description.tail else None
        if self._announced == test_id and not description.subtest:
            # the completed line of a test already counted as started
            self._announced = None
            if status is not None:
                self._finish(test_id, status)
                self.events += 1
            return
        self._announced = None
        self.events += 1
        if description.subtest:
            if status is not None:
                self._record_subtest(test_id, status)
            elif description.tail is None:
                self._pending_subtest = test_id
            return
        self._pending_subtest = None
        if self.current is not None and self.current != test_id:
            self._abandon(self.current)
        self.current = test_id
        if status is not None:
            self._finish(test_id, status)

    def _record_subtest(self, test_id: str, status: tuple[str, str]) -> None:
        self._pending_subtest = None
        if status[0] == PASS:
            return
        record = Outcome(test_id, status[0], None, status[1])
        previous = self._subtests.get(test_id)
        self._subtests[test_id] = record if previous is None else more_severe(previous, record)

    def _finish(self, test_id: str, status: tuple[str, str]) -> None:
        record = Outcome(test_id, status[0], None, status[1])
        if status[0] == SKIP and status[1] == "":
            self.empty_skips.add(test_id)
        sub = self._subtests.pop(test_id, None)
        if sub is not None:
            record = more_severe(record, sub)
        self.finished[test_id] = record
        self.last_finished = test_id
        self.current = None

    def _abandon(self, test_id: str) -> None:
        # A test with failing sub-tests gets no status line of its own.
        sub = self._subtests.pop(test_id, None)
        if sub is not None:
            self.finished[test_id] = sub
            self.last_finished = test_id

    def finalize(self) -> str | None:
        """End of input: settle sub-test results; the test left running, if any."""
        self.close()
        running = self.current
        if running is not None and running in self._subtests:
            self._abandon(running)
            running = None
            self.current = None
        return running


@dataclasses.dataclass
class ListedError:
    """One entry of unittest's closing list of failures and errors."""

    flavour: str        # "FAIL", "ERROR" or "UNEXPECTED SUCCESS"
    name: str           # test method or fixture name
    owner: str          # test id, or the class/module of a fixture
    params: str         # sub-test parameters, "" for the test itself
    body: str

    @property
    def status(self) -> str:
        return {"FAIL": FAIL, "ERROR": ERROR}.get(self.flavour, XPASS)

    @property
    def message(self) -> str:
        return first_error_line(self.body)


def parse_error_listing(text: str) -> list[ListedError]:
    """The closing FAIL/ERROR entries of every unittest run in the text."""
    entries = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        if lines[index] != SEPARATOR1 or index + 1 >= len(lines):
            index += 1
            continue
        header = _LISTING_HEADER.match(lines[index + 1])
        if not header:
            index += 1
            continue
        description = _DESCRIPTION.match(header.group(2))
        index += 2
        if header.group(1) == "UNEXPECTED SUCCESS":
            # listed without a separator or a body
            if description is not None:
                entries.append(ListedError(header.group(1), description["name"],
                                           description["owner"],
                                           description["params"] or "", ""))
            continue
        while index < len(lines) and lines[index] != SEPARATOR2:
            index += 1          # docstring line of the description
        index += 1
        body = []
        while index < len(lines) and lines[index] not in (SEPARATOR1, SEPARATOR2):
            body.append(lines[index])
            index += 1
        if description is None:
            continue
        entries.append(ListedError(header.group(1), description["name"],
                                   description["owner"], description["params"] or "",
                                   "\n".join(body).strip("\n")))
    return entries


def parse_module_results(text: str, name: str, module: str) -> list[Outcome]:
    """regrtest's verdicts on test module ``name`` as a whole, recorded under ``module``.

    regrtest prints ``test NAME crashed -- Traceback ...`` (then the traceback
    and a blank line) when the module raised outside unittest, e.g. on import,
    and ``NAME skipped -- REASON`` when it raised SkipTest on import.
    """
    record_id = fixture_id(MODULE_RECORD, module)
    found = []
    lines = text.splitlines()
    crashed = f"test {name} crashed -- "
    skipped = f"{name} skipped -- "
    for index, line in enumerate(lines):
        if line.startswith(crashed):
            body = [line[len(crashed):]]
            for following in lines[index + 1:]:
                if not following.strip():
                    break
                body.append(following)
            traceback_text = "\n".join(body)
            found.append(Outcome(record_id, ERROR, None, first_error_line(traceback_text),
                                 clip_detail(traceback_text)))
        elif line.startswith(skipped):
            found.append(Outcome(record_id, SKIP, None, line[len(skipped):].strip()))
    return found


def warnings(text: str, limit: int = 10) -> list[str]:
    """Distinct ``Warning -- ...`` lines of regrtest (dangling processes, threads ...)."""
    seen: list[str] = []
    for message in _WARNING.findall(text):
        if message not in seen:
            seen.append(message)
    return seen[:limit]
