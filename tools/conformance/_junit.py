"""Reading the junit XML file that CPython 3.11's regrtest writes (--junit-xml).

What 3.11 writes (Lib/test/support/testresult.py), and how it is read here:

* ``<testsuites>`` holds one ``<testsuite>`` per test module; each
  ``<testcase name=ID status="run" result="completed" time=SECONDS>`` is one
  test. A passing test has no child element.
* failure: ``<failure type=T message=M>traceback</failure>``; error: the same
  with ``<error>``; skip: ``<skipped>reason</skipped>``; expected failure:
  ``<output type=T message=M>traceback</output>``; unexpected success:
  ``<outcome>UNEXPECTED_SUCCESS</outcome>``. ``<system-out>``/``<system-err>``
  hold captured output and are ignored.

Known holes, which the verbose log fills (see _verbose_log.py):

* a test whose sub-tests failed leaves an empty ``<testcase/>`` without a
  name: unittest reports the sub-test failure to ``addSubTest``, which the
  XML writer does not record, and never reports the test itself;
* a skip inside a sub-test is recorded under the sub-test's name,
  ``ID (param=value)``; it is filed under ID here;
* a skip whose reason is the empty string has no ``<skipped>`` element and
  reads as a pass;
* errors and skips raised by ``setUpClass``/``setUpModule`` (and their
  tear-downs) are not recorded at all;
* nothing is written when the process dies or is killed before the end.
"""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET

from _outcomes import (ERROR, FAIL, PASS, SKIP, XFAIL, XPASS, Outcome,
                       clip_detail, first_error_line, more_severe)


@dataclasses.dataclass
class JunitResult:
    outcomes: dict[str, Outcome]
    # <testcase/> elements without a name (tests whose sub-tests failed)
    anonymous: int = 0


class JunitError(ValueError):
    """The file is not a regrtest junit file."""


def parse_junit(source) -> JunitResult:
    """Parse a regrtest junit file (path or file object) into outcomes."""
    try:
        root = ET.parse(source).getroot()
    except ET.ParseError as exc:
        raise JunitError(f"{source}: not well-formed XML: {exc}") from None
    if root.tag not in ("testsuites", "testsuite"):
        raise JunitError(f"{source}: root element is <{root.tag}>, "
                         "expected <testsuites>")
    result = JunitResult({})
    for case in root.iter("testcase"):
        name = case.get("name")
        if not name:
            result.anonymous += 1
            continue
        outcome = _case_outcome(name, case)
        previous = result.outcomes.get(outcome.test_id)
        result.outcomes[outcome.test_id] = (
            outcome if previous is None else more_severe(previous, outcome))
    return result


def _case_outcome(name: str, case: ET.Element) -> Outcome:
    # "ID (param=1)" is a sub-test record; it belongs to ID.
    test_id = name.partition(" ")[0]
    time = _float(case.get("time"))
    children = {child.tag: child for child in case}
    if "error" in children:
        return _error_outcome(test_id, ERROR, time, children["error"])
    if "failure" in children:
        return _error_outcome(test_id, FAIL, time, children["failure"])
    if "skipped" in children:
        reason = children["skipped"].text or ""
        return Outcome(test_id, SKIP, time, reason)
    if "outcome" in children and (children["outcome"].text or "").strip() == "UNEXPECTED_SUCCESS":
        return Outcome(test_id, XPASS, time, "unexpected success")
    if "output" in children:
        expected = _error_outcome(test_id, XFAIL, time, children["output"])
        expected.detail = ""
        return expected
    return Outcome(test_id, PASS, time)


def _error_outcome(test_id: str, status: str, time, element: ET.Element) -> Outcome:
    traceback_text = element.text or ""
    message = (first_error_line(traceback_text)
               or first_error_line(element.get("message", ""))
               or element.get("type", ""))
    return Outcome(test_id, status, time, message, clip_detail(traceback_text))


def _float(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None
