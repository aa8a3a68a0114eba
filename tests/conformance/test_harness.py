"""Tests of the conformance harness itself (tools/conformance).

Run with: /usr/bin/python3 -m pytest tests/conformance -q

Parsing, comparison and the expected-failures rules are tested on small
synthetic junit files and logs written here. The end-to-end tests run the
harness on synthetic test modules (regrtest --testdir) under stock python3
and under a "fake host": a shell script that runs python3 with an
environment variable the synthetic tests react to. No CPython test is run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HARNESS = ROOT / "tools" / "conformance"
sys.path.insert(0, str(HARNESS))

from _collect import collect  # noqa: E402
from _expected import (ExpectedFileError, check_expected, generated_reason,  # noqa: E402
                       parse_expected, regressions, render_expected, update_expected)
from _json_text import dumps  # noqa: E402
from _junit import JunitError, parse_junit  # noqa: E402
from _matching import matcher  # noqa: E402
from _outcomes import Outcome, count, first_error_line, split_fixture_id  # noqa: E402
from _process_tree import descendants, is_zombie, kill_descendants  # noqa: E402
from _report import compare_sides, merge_side, render_markdown, build_document  # noqa: E402
from _runner import SideRun  # noqa: E402
from _suites import CI_SELECTION, SUITES, suite_of  # noqa: E402
from _verbose_log import (VerboseLog, parse_error_listing, parse_module_results,  # noqa: E402
                          parse_status, warnings)

STOCK = "/usr/bin/python3"

# -- synthetic regrtest output --------------------------------------------------

JUNIT = """<?xml version="1.0" ?>
<testsuites tests="9" errors="1" failures="1">
 <testsuite start="2024-01-01 00:00:00" tests="9" errors="1" failures="1">
  <testcase name="test.test_x.A.test_pass" status="run" result="completed" time="0.250000"/>
  <testcase name="test.test_x.A.test_fail" status="run" result="completed" time="0.1">
   <system-out/><system-err/>
   <failure type="AssertionError" message="AssertionError: 1 != 2&#10;">Traceback (most recent call last):
  File "x.py", line 3, in test_fail
    self.assertEqual(1, 2)
AssertionError: 1 != 2
</failure>
  </testcase>
  <testcase name="test.test_x.A.test_error" status="run" result="completed" time="0.1">
   <error type="OSError" message="OSError: [Errno 24] Too many open files&#10;">Traceback (most recent call last):
  File "x.py", line 5, in open_all
    raise KeyError('k')
KeyError: 'k'

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "x.py", line 7, in test_error
    os.open(name)
OSError: [Errno 24] Too many open files
</error>
  </testcase>
  <testcase name="test.test_x.A.test_skip" status="run" result="completed" time="0.0">
   <skipped>needs /dev/shm</skipped>
  </testcase>
  <testcase name="test.test_x.A.test_xfail" status="run" result="completed" time="0.0">
   <output type="AssertionError" message="AssertionError: known">Traceback ...
AssertionError: known</output>
  </testcase>
  <testcase name="test.test_x.A.test_xpass" status="run" result="completed" time="0.0">
   <outcome>UNEXPECTED_SUCCESS</outcome>
  </testcase>
  <testcase/>
  <testcase name="test.test_x.A.test_subskip (proto=2)" status="run" result="completed" time="0.0">
   <skipped>no proto 2</skipped>
  </testcase>
  <testcase name="test.test_x.A.test_emptyskip" status="run" result="completed" time="0.0"/>
 </testsuite>
</testsuites>
"""

SEP1, SEP2 = "=" * 70, "-" * 70

LOG = f"""\
== CPython 3.11.2
0:00:00 load avg: 0.41 [1/1] test_x
test_error (test.test_x.A.test_error) ... ERROR
test_fail (test.test_x.A.test_fail) ... FAIL
test_pass (test.test_x.A.test_pass)
Check the pass path ... ok
test_emptyskip (test.test_x.A.test_emptyskip) ... skipped ''
test_skip (test.test_x.A.test_skip) ... skipped 'needs /dev/shm'
test_sub (test.test_x.A.test_sub) ...
  test_sub (test.test_x.A.test_sub) (i=2) ... FAIL
test_subskip (test.test_x.A.test_subskip) ...
  test_subskip (test.test_x.A.test_subskip) (proto=2) ... skipped 'no proto 2'
test_xfail (test.test_x.A.test_xfail) ... expected failure
test_xpass (test.test_x.A.test_xpass) ... unexpected success
setUpClass (test.test_x.B) ... ERROR
setUpClass (test.test_x.C) ... skipped "can't set up C"

{SEP1}
ERROR: test_error (test.test_x.A.test_error)
{SEP2}
Traceback (most recent call last):
  File "x.py", line 7, in test_error
OSError: [Errno 24] Too many open files

{SEP1}
ERROR: setUpClass (test.test_x.B)
{SEP2}
Traceback (most recent call last):
  File "x.py", line 20, in setUpClass
    raise ValueError("no manager")
ValueError: no manager

{SEP1}
FAIL: test_fail (test.test_x.A.test_fail)
{SEP2}
Traceback (most recent call last):
AssertionError: 1 != 2

{SEP1}
FAIL: test_sub (test.test_x.A.test_sub) (i=2)
{SEP2}
Traceback (most recent call last):
  File "x.py", line 12, in test_sub
    self.assertLess(i, 2)
AssertionError: 2 not less than 2

{SEP1}
UNEXPECTED SUCCESS: test_xpass (test.test_x.A.test_xpass)
{SEP2}
Ran 10 tests in 0.010s

FAILED (failures=2, errors=2, skipped=4, expected failures=1, unexpected successes=1)
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _statuses(outcomes) -> dict[str, str]:
    return {test_id: outcome.status for test_id, outcome in outcomes.items()}


# -- junit ----------------------------------------------------------------------

def test_junit_statuses_times_and_messages(tmp_path):
    result = parse_junit(_write(tmp_path, "j.xml", JUNIT))
    assert _statuses(result.outcomes) == {
        "test.test_x.A.test_pass": "pass",
        "test.test_x.A.test_fail": "fail",
        "test.test_x.A.test_error": "error",
        "test.test_x.A.test_skip": "skip",
        "test.test_x.A.test_xfail": "xfail",
        "test.test_x.A.test_xpass": "xpass",
        "test.test_x.A.test_subskip": "skip",
        # regrtest writes no <skipped> for an empty reason: reads as a pass
        "test.test_x.A.test_emptyskip": "pass",
    }
    outcomes = result.outcomes
    assert outcomes["test.test_x.A.test_pass"].time == pytest.approx(0.25)
    assert outcomes["test.test_x.A.test_fail"].message == "AssertionError: 1 != 2"
    assert "self.assertEqual(1, 2)" in outcomes["test.test_x.A.test_fail"].detail
    # the exception that was finally raised, not the first of the chain
    assert outcomes["test.test_x.A.test_error"].message == "OSError: [Errno 24] Too many open files"
    assert outcomes["test.test_x.A.test_skip"].message == "needs /dev/shm"
    assert outcomes["test.test_x.A.test_subskip"].message == "no proto 2"
    assert result.anonymous == 1


def test_junit_subtest_records_keep_the_most_severe(tmp_path):
    xml = """<testsuites><testsuite>
      <testcase name="test.m.C.t (i=1)" time="0"><skipped>one</skipped></testcase>
      <testcase name="test.m.C.t (i=2)" time="0"><error message="E: x">Traceback (most recent call last):
E: x</error></testcase>
      <testcase name="test.m.C.t (i=3)" time="0"><skipped>three</skipped></testcase>
    </testsuite></testsuites>"""
    result = parse_junit(_write(tmp_path, "j.xml", xml))
    assert _statuses(result.outcomes) == {"test.m.C.t": "error"}
    assert result.outcomes["test.m.C.t"].message == "E: x"


def test_junit_rejects_broken_and_foreign_files(tmp_path):
    with pytest.raises(JunitError, match="not well-formed"):
        parse_junit(_write(tmp_path, "broken.xml", "<testsuites><testsuite>"))
    with pytest.raises(JunitError, match="root element is <html>"):
        parse_junit(_write(tmp_path, "other.xml", "<html></html>"))


def test_first_error_line():
    assert first_error_line("Traceback (most recent call last):\n  File \"a\", line 1\n"
                            "    x()\nValueError: bad\nmore text") == "ValueError: bad"
    assert first_error_line("\n\nplain message\nsecond") == "plain message"
    assert first_error_line("") == ""


# -- verbose log ------------------------------------------------------------------

def test_status_words():
    assert parse_status("ok") == ("pass", "")
    assert parse_status("skipped 'it''s'") == ("skip", "its")
    assert parse_status("skipped \"can't\"") == ("skip", "can't")
    assert parse_status("expected failure") == ("xfail", "")
    assert parse_status("something else") is None


@pytest.mark.parametrize("chunk", [1, 7, 64, 100000])
def test_verbose_log_statuses_in_any_chunking(chunk):
    log = VerboseLog()
    for start in range(0, len(LOG), chunk):
        log.feed(LOG[start:start + chunk])
    assert log.finalize() is None
    assert _statuses(log.finished) == {
        "test.test_x.A.test_error": "error",
        "test.test_x.A.test_fail": "fail",
        "test.test_x.A.test_pass": "pass",        # status on the docstring line
        "test.test_x.A.test_emptyskip": "skip",
        "test.test_x.A.test_skip": "skip",
        "test.test_x.A.test_sub": "fail",          # from its failing sub-test
        "test.test_x.A.test_subskip": "skip",
        "test.test_x.A.test_xfail": "xfail",
        "test.test_x.A.test_xpass": "xpass",
    }
    assert log.empty_skips == {"test.test_x.A.test_emptyskip"}
    assert _statuses(log.fixtures) == {"setUpClass (test.test_x.B)": "error",
                                       "setUpClass (test.test_x.C)": "skip"}
    assert log.fixtures["setUpClass (test.test_x.C)"].message == "can't set up C"


def test_verbose_log_names_the_running_test_despite_child_output():
    log = VerboseLog()
    log.feed("test_a (test.m.C.test_a) ... ok\n"
             "test_b (test.m.C.test_b) ... Process Process-3:\n"
             "Traceback (most recent call last):\n"
             "  File \"child.py\", line 1\n"
             "ok then\n")
    assert log.current == "test.m.C.test_b"
    events = log.events
    log.feed("ok\n")   # the status, on a line of its own after the child's output
    assert log.current is None
    assert log.finished["test.m.C.test_b"].status == "pass"
    assert log.events == events + 1
    log.feed("test_c (test.m.C.test_c) ... ")   # announced, no newline yet
    assert log.current == "test.m.C.test_c"
    assert log.finalize() == "test.m.C.test_c"
    assert log.last_finished == "test.m.C.test_b"


def test_verbose_log_ignores_lookalike_lines():
    log = VerboseLog()
    log.feed("worker (pid 12) ... started\nfoo (bar.baz) ... ok\n")
    assert log.finished == {} and log.events == 0


def test_error_listing():
    entries = parse_error_listing(LOG)
    assert [(e.flavour, e.name, e.owner, e.params) for e in entries] == [
        ("ERROR", "test_error", "test.test_x.A.test_error", ""),
        ("ERROR", "setUpClass", "test.test_x.B", ""),
        ("FAIL", "test_fail", "test.test_x.A.test_fail", ""),
        ("FAIL", "test_sub", "test.test_x.A.test_sub", "(i=2)"),
        ("UNEXPECTED SUCCESS", "test_xpass", "test.test_x.A.test_xpass", ""),
    ]
    assert entries[1].message == "ValueError: no manager"
    assert entries[3].message == "AssertionError: 2 not less than 2"
    assert entries[4].body == ""


def test_module_results_and_warnings():
    text = textwrap.dedent("""\
        0:00:00 load avg: 3.52 [1/1] test_mp_x
        test test_mp_x crashed -- Traceback (most recent call last):
          File "/usr/lib/python3.11/test/test_mp_x.py", line 2, in <module>
            import multiprocessing.dummy
        ModuleNotFoundError: No module named 'multiprocessing.dummy'

        test_mp_x failed (uncaught exception)
        Warning -- Dangling processes: {<Process name='P-1'>}
        Warning -- Dangling processes: {<Process name='P-1'>}
        test_other skipped -- not this one
        """)
    [record] = parse_module_results(text, "test_mp_x", "test.test_mp_x")
    assert (record.test_id, record.status) == ("<module> (test.test_mp_x)", "error")
    assert record.message == "ModuleNotFoundError: No module named 'multiprocessing.dummy'"
    assert record.detail.endswith("No module named 'multiprocessing.dummy'")
    [skip] = parse_module_results("test_mp_y skipped -- fork is not available\n",
                                  "test_mp_y", "test.test_mp_y")
    assert (skip.status, skip.message) == ("skip", "fork is not available")
    assert warnings(text) == ["Dangling processes: {<Process name='P-1'>}"]
    assert matcher(["*TestPool"])("<module> (test.test_mp_x)")
    assert split_fixture_id("<module> (test.test_mp_x)") == ("<module>", "test.test_mp_x")


# -- junit + log ---------------------------------------------------------------------

def test_collect_fills_the_holes_of_junit_from_the_log(tmp_path):
    junit = _write(tmp_path, "j.xml", JUNIT)
    collected = collect(str(junit), LOG)
    assert collected.source == "junit"
    statuses = _statuses(collected.outcomes)
    assert statuses["test.test_x.A.test_emptyskip"] == "skip"
    assert statuses["test.test_x.A.test_sub"] == "fail"
    assert statuses["setUpClass (test.test_x.B)"] == "error"
    assert statuses["setUpClass (test.test_x.C)"] == "skip"
    assert collected.outcomes["setUpClass (test.test_x.B)"].message == "ValueError: no manager"
    assert collected.outcomes["test.test_x.A.test_sub"].message == \
        "AssertionError: 2 not less than 2"
    assert collected.notes == []        # the one unnamed record was matched
    assert count(collected.outcomes.values()) == {
        "run": 11, "pass": 2, "fail": 3, "error": 2, "skip": 4}


def test_collect_without_junit_uses_the_log_and_says_so(tmp_path):
    collected = collect(str(tmp_path / "missing.xml"), LOG)
    assert collected.source == "log"
    assert collected.outcomes["test.test_x.A.test_fail"].status == "fail"
    assert collected.outcomes["test.test_x.A.test_fail"].message == "AssertionError: 1 != 2"
    assert any("no junit file" in note for note in collected.notes)


def test_collect_reports_unmatched_unnamed_records(tmp_path):
    junit = _write(tmp_path, "j.xml", JUNIT)
    log_without_listing = LOG.split(SEP1)[0]
    collected = collect(str(junit), log_without_listing)
    assert collected.notes == ["1 unnamed junit test records (tests with failing sub-tests), "
                               "0 matched in the log"]


# -- selection ---------------------------------------------------------------------

def test_matching_follows_regrtest():
    glob = matcher(["*TestPool"])
    assert glob("test.test_multiprocessing_fork.WithProcessesTestPool.test_map")
    assert not glob("test.test_multiprocessing_fork.WithProcessesTestPoolWorkerErrors.test_x")
    exact = matcher(["test.m.C.test_a"])
    assert exact("test.m.C.test_a") and not exact("test.m.C.test_ab")
    assert matcher(["test_a*"])("test.m.C.test_ab")
    ignoring = matcher([], ["test.m.C.test_a"])
    assert not ignoring("test.m.C.test_a") and ignoring("test.m.C.test_b")
    assert matcher([])("anything.at.all")
    # fixture records go with their class
    assert matcher(["*TestPool"])("setUpClass (test.m.WithManagerTestPool)")
    assert matcher(["test.m.WithManagerTestPool.test_map"])(
        "setUpClass (test.m.WithManagerTestPool)")
    assert not matcher(["*TestQueue"])("setUpClass (test.m.WithManagerTestPool)")
    assert split_fixture_id("tearDownModule (test.m)") == ("tearDownModule", "test.m")
    assert split_fixture_id("test.m.C.test_a") is None


def test_suite_names_and_ci_selection():
    assert suite_of("test.test_multiprocessing_spawn.WithProcessesTestPool.test_map") == \
        "test_multiprocessing_spawn"
    assert suite_of("setUpModule (test.test_concurrent_futures)") == "test_concurrent_futures"
    assert set(CI_SELECTION) <= set(SUITES)


# -- expected failures ------------------------------------------------------------------

def _o(test_id, status, message=""):
    return Outcome(test_id, status, None, message)


def test_expected_file_round_trip_and_errors():
    entries = {"test.test_b.C.test_x": "[fail] AssertionError: x",
               "setUpClass (test.test_a.D)": "manager start-up not implemented"}
    text = render_expected(entries)
    assert parse_expected(text) == entries
    assert text.index("## test_a") < text.index("## test_b")
    with pytest.raises(ExpectedFileError, match=r":2: entry without a reason"):
        parse_expected("# header\ntest.m.C.test_a\n", "f")
    with pytest.raises(ExpectedFileError, match=r":3: test.m.C.a is listed twice"):
        parse_expected("test.m.C.a  # r\n\ntest.m.C.a  # again\n", "f")


def test_check_flags_regressions_and_tests_that_now_pass():
    stock = {i: _o(i, "pass") for i in ("test.m.C.a", "test.m.C.b", "test.m.C.c", "test.m.C.d")}
    stock["test.m.C.e"] = _o("test.m.C.e", "fail")
    mphost = {"test.m.C.a": _o("test.m.C.a", "pass"),
              "test.m.C.b": _o("test.m.C.b", "error", "OSError: x"),
              "test.m.C.c": _o("test.m.C.c", "pass"),
              "test.m.C.e": _o("test.m.C.e", "fail")}
    # d did not run under mphost at all
    expected = {"test.m.C.c": "was broken", "test.m.C.e": "stock fails too",
                "test.m.C.zz": "typo"}
    result = check_expected(expected, stock, mphost, lambda test_id: True)
    assert [(u.kind, u.test_id) for u in result.unexpected] == [
        ("regression", "test.m.C.b"), ("regression", "test.m.C.d"),
        ("now-passes", "test.m.C.c")]
    assert "[error] OSError: x" in result.unexpected[0].detail
    assert "[missing]" in result.unexpected[1].detail
    assert len(result.warnings) == 2
    # listing b and d makes the run as expected
    expected = {"test.m.C.b": "r", "test.m.C.d": "r"}
    assert check_expected(expected, stock, mphost, lambda test_id: True).unexpected == []
    # tests outside the selection are not judged
    only_a = check_expected({}, stock, mphost, lambda test_id: test_id == "test.m.C.a")
    assert only_a.unexpected == []


def test_update_expected_keeps_hand_reasons_and_unselected_entries():
    old = {"test.m.C.hand": "needs robust semaphores (hand-written)",
           "test.m.C.auto": "[fail] AssertionError: old text",
           "test.m.C.fixed": "[error] OSError: gone",
           "test.other.C.kept": "not part of this run"}
    found = {"test.m.C.hand": _o("test.m.C.hand", "fail", "AssertionError: new"),
             "test.m.C.auto": _o("test.m.C.auto", "hang", "no progress for 120 s"),
             "test.m.C.new": None}
    new = update_expected(old, found, lambda test_id: test_id.startswith("test.m."))
    assert new == {"test.other.C.kept": "not part of this run",
                   "test.m.C.hand": "needs robust semaphores (hand-written)",
                   "test.m.C.auto": "[hang] no progress for 120 s",
                   "test.m.C.new": "[missing] did not run under mphost"}
    assert generated_reason(_o("x", "skip")) == "[skip] skipped"


def test_regressions_count_skips_and_absences():
    stock = {"a": _o("a", "pass"), "b": _o("b", "xfail"), "c": _o("c", "pass"),
             "d": _o("d", "skip")}
    mphost = {"a": _o("a", "skip", "no shm"), "b": _o("b", "xfail"), "d": _o("d", "pass")}
    assert regressions(stock, mphost, lambda test_id: True) == {"a": mphost["a"], "c": None}


# -- report ---------------------------------------------------------------------------

def _side(side, outcomes, match=(), started="2024-01-01T00:00:00"):
    return SideRun("test_m", side, f"/bin/{side}", list(match),
                   {o.test_id: o for o in outcomes}, [], "junit", [], [], started, 10.0)


def test_compare_sides():
    stock = _side("stock", [_o("test.m.C.a", "pass"), _o("test.m.C.b", "pass"),
                            _o("test.m.C.c", "skip", "needs fork"), _o("test.m.C.d", "fail"),
                            _o("test.m.C.e", "skip", "same")])
    mphost = _side("mphost", [_o("test.m.C.a", "pass"), _o("test.m.C.c", "skip", "no fork"),
                              _o("test.m.C.d", "pass"), _o("test.m.C.e", "skip", "same")])
    comparison = compare_sides(stock, mphost)
    assert [(i, b) for i, a, b in comparison.regressions] == [("test.m.C.b", None)]
    assert [i for i, a, b in comparison.mphost_only] == ["test.m.C.d"]
    assert comparison.skip_differences == [("test.m.C.c", "needs fork", "no fork")]
    # a restricted mphost run is compared only on what it selected
    narrow = _side("mphost", [_o("test.m.C.a", "pass")], match=["test.m.C.a"])
    assert compare_sides(stock, narrow).regressions == []


def test_merge_of_a_restricted_run_updates_only_its_tests():
    old = _side("mphost", [_o("test.m.C.a", "fail"), _o("test.m.C.b", "pass"),
                           _o("setUpClass (test.m.D)", "error")])
    rerun = _side("mphost", [_o("test.m.C.a", "pass")], match=["test.m.C.a", "test.m.D.*"],
                  started="2024-01-02T00:00:00")
    merged = merge_side(old, rerun)
    assert _statuses(merged.outcomes) == {"test.m.C.a": "pass", "test.m.C.b": "pass"}
    assert merged.match == []
    assert any("re-ran the tests matching" in note for note in merged.notes)
    full = _side("mphost", [_o("test.m.C.z", "pass")])
    assert merge_side(old, full) is full


def test_markdown_report_shows_counts_and_differences():
    stock = _side("stock", [_o("test.m.C.a", "pass"), _o("test.m.C.b", "pass"),
                            _o("test.m.C.c", "skip", "x")])
    mphost = _side("mphost", [_o("test.m.C.a", "hang", "no progress for 120 s"),
                              _o("test.m.C.b", "fail", "AssertionError: 3 != 4"),
                              _o("test.m.C.c", "skip", "y")])
    document = build_document({"test_m": {"stock": stock, "mphost": mphost}},
                              generated="2024-01-01", duration=75, machine={"host": "h"},
                              interpreters={"stock": {"path": "/s", "version": "3.11"},
                                            "mphost": {"path": "/m", "version": "3.11"}},
                              commands=["run it"], expected_check={})
    document = json.loads(json.dumps(document))     # what is written is what is rendered
    text = render_markdown(document)
    assert "| test_m | 3 | 2 | 0 | 0 | 1 | 3 | 0 | 1 | 1 | 1 | 10 s | 10 s |" in text
    assert "## Pass on stock, not on mphost (2)" in text
    assert "- `test.m.C.b`: fail — AssertionError: 3 != 4" in text
    assert "**hang** in `test.m.C.a`: no progress for 120 s" in text
    assert "`test.m.C.c`: stock 'x', mphost 'y'" in text
    assert "1 min 15 s" in text


def test_json_text_puts_each_record_on_one_line():
    document = {"suites": {"s": {"tests": {"a": {"status": "pass", "time": 0.5},
                                          "b": {"status": "skip", "message": "why"}}}},
                "commands": ["x y"], "empty": {}}
    text = dumps(document)
    assert json.loads(text) == document
    lines = text.splitlines()
    assert '    "a": {"status": "pass", "time": 0.5},' in lines
    assert '    "b": {"status": "skip", "message": "why"}' in lines
    assert ' "commands": ["x y"],' in lines


def test_markdown_folds_long_lists_of_tests_that_did_not_run():
    stock = _side("stock", [_o(f"test.m.C.t{i:02d}", "pass") for i in range(25)])
    mphost = _side("mphost", [_o("<module> (test.m)", "error", "ImportError: no dummy")])
    document = json.loads(json.dumps(build_document(
        {"test_m": {"stock": stock, "mphost": mphost}}, generated="d", duration=1,
        machine={}, interpreters={}, commands=[], expected_check={})))
    text = render_markdown(document)
    assert "### test_m (25)" in text
    assert "- 25 tests did not run under mphost" in text
    assert "<details><summary>tests that did not run</summary>" in text
    assert "- `test.m.C.t24`\n" in text
    assert "**hang**" not in text


# -- process tree -------------------------------------------------------------------------

def test_kill_descendants_reaches_grandchildren_in_other_sessions():
    shell = subprocess.Popen(["sh", "-c", "setsid sleep 60 & sleep 60 & wait"])
    try:
        deadline = time.monotonic() + 10
        while len(descendants(shell.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        found = descendants(shell.pid)
        assert len(found) >= 2
        killed = kill_descendants(shell.pid)
        assert set(found) <= set(killed)
        assert all(is_zombie(pid) for pid in descendants(shell.pid))
    finally:
        shell.kill()
        shell.wait()


# -- end to end on synthetic suites ----------------------------------------------------------

FAKE_SUITE = """\
import os
import unittest

FAKE = os.environ.get("CONFORMANCE_FAKE_HOST") == "1"
FIXED = os.environ.get("CONFORMANCE_FIXED") == "1"


class T(unittest.TestCase):
    def test_same(self):
        pass

    def test_regress(self):
        if FAKE and not FIXED:
            self.fail("broken under the fake host")

    def test_skip_reason(self):
        self.skipTest("fake reason" if FAKE else "stock reason")

    def test_only_fake(self):
        if not FAKE:
            self.fail("fails on stock")
"""

BROKEN_SUITE = """\
import os
import unittest

if os.environ.get("CONFORMANCE_FAKE_HOST") == "1":
    import a_module_the_fake_host_lacks  # noqa: F401


class T(unittest.TestCase):
    def test_one(self):
        pass
"""

HANG_SUITE = """\
import os
import signal
import subprocess
import sys
import textwrap
import time
import unittest


class H(unittest.TestCase):
    def test_a_ok(self):
        pass

    def test_b_hang(self):
        # a grandchild in a session of its own that outlives its parent
        subprocess.Popen([sys.executable, "-c",
            "import os, time; os.setsid(); "
            "open(os.environ['GRANDCHILD_PID'], 'w').write(str(os.getpid())); "
            "time.sleep(600)"])
        time.sleep(600)

    def test_c_abort(self):
        os.abort()

    def test_d_fail(self):
        self.fail("d fails")
"""


@pytest.fixture
def workspace(tmp_path):
    suites = tmp_path / "suites"
    suites.mkdir()
    (suites / "test_fakesuite.py").write_text(FAKE_SUITE)
    (suites / "test_hangsuite.py").write_text(HANG_SUITE)
    (suites / "test_brokensuite.py").write_text(BROKEN_SUITE)
    host = tmp_path / "fakehost"
    host.write_text(f"#!/bin/sh\nCONFORMANCE_FAKE_HOST=1 exec {STOCK} \"$@\"\n")
    host.chmod(0o755)
    return tmp_path


def _harness(workspace, *args, env=None, timeout=120):
    command = [STOCK, str(HARNESS / "run_conformance.py"),
               "--testdir", str(workspace / "suites"),
               "--mphost", str(workspace / "fakehost"),
               "--report-dir", str(workspace / "report"),
               "--work-dir", str(workspace / "work"),
               "--expected", str(workspace / "expected.txt"),
               "--reference", str(workspace / "reference.json"), *args]
    environment = dict(os.environ, **(env or {}))
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          env=environment)
    return done


def _summary(done) -> str:
    return done.stdout.strip().splitlines()[-1]


def test_end_to_end_expected_failures_flow(workspace):
    suite = ["--suites", "test_fakesuite"]
    first = _harness(workspace, *suite)
    assert first.returncode == 1, first.stdout + first.stderr
    assert ("UNEXPECTED FAILURE: test_fakesuite.T.test_regress: "
            "[fail] AssertionError: broken under the fake host (passes on stock)") in first.stdout
    assert _summary(first) == "conformance: 2 passed, 1 failed, 1 skipped (1 unexpected)"
    document = json.loads((workspace / "report" / "conformance.json").read_text())
    comparison = document["comparison"]["test_fakesuite"]
    assert [e["id"] for e in comparison["regressions"]] == ["test_fakesuite.T.test_regress"]
    assert [e["id"] for e in comparison["mphost_only"]] == ["test_fakesuite.T.test_only_fake"]
    assert comparison["skip_differences"] == [{"id": "test_fakesuite.T.test_skip_reason",
                                               "stock": "stock reason", "mphost": "fake reason"}]
    assert "## Pass on stock, not on mphost (1)" in (workspace / "report" /
                                                     "CONFORMANCE.md").read_text()

    # record the failure, then give it a reason by hand
    updated = _harness(workspace, *suite, "--update-expected", "--update-reference")
    assert updated.returncode == 0, updated.stdout + updated.stderr
    expected_file = workspace / "expected.txt"
    entries = parse_expected(expected_file.read_text())
    assert entries == {"test_fakesuite.T.test_regress":
                       "[fail] AssertionError: broken under the fake host"}
    expected_file.write_text(render_expected(
        {"test_fakesuite.T.test_regress": "the fake host breaks it on purpose"}))
    reference = json.loads((workspace / "reference.json").read_text())
    assert reference["suites"]["test_fakesuite"]["test_fakesuite.T.test_regress"] == \
        {"status": "pass"}

    # CI: mphost only, against the stored stock reference
    ci = _harness(workspace, *suite, "--ci")
    assert ci.returncode == 0, ci.stdout + ci.stderr
    assert _summary(ci) == "conformance: 2 passed, 0 failed, 1 skipped, 1 expected failures"
    assert "[stock]" not in ci.stdout
    again = _harness(workspace, *suite, "--update-expected")
    assert parse_expected(expected_file.read_text()) == {
        "test_fakesuite.T.test_regress": "the fake host breaks it on purpose"}
    assert again.returncode == 0

    # the listed test starts passing: CI fails until the entry is removed
    fixed = {"CONFORMANCE_FIXED": "1"}
    ci = _harness(workspace, *suite, "--ci", env=fixed)
    assert ci.returncode == 1
    assert ("UNEXPECTED PASS: test_fakesuite.T.test_regress: passes under mphost; "
            "remove it from the expected failures") in ci.stdout
    cleaned = _harness(workspace, *suite, "--update-expected", env=fixed)
    assert cleaned.returncode == 0
    assert parse_expected(expected_file.read_text()) == {}
    assert _harness(workspace, *suite, "--ci", env=fixed).returncode == 0


def test_end_to_end_rerun_failed_updates_only_those_tests(workspace):
    first = _harness(workspace, "--suites", "test_fakesuite")
    assert first.returncode == 1
    rerun = _harness(workspace, "--suites", "test_fakesuite", "--rerun-failed",
                     env={"CONFORMANCE_FIXED": "1"})
    # test_regress passes now; test_only_fake still fails on stock (not a regression)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    regrtest_lines = [line for line in (workspace / "work" / "test_fakesuite-mphost" /
                                        "attempt-1" / "output.log").read_text().splitlines()
                      if line.startswith("$ ")]
    assert " -m test_fakesuite.T.test_only_fake -m test_fakesuite.T.test_regress " in \
        regrtest_lines[0]
    document = json.loads((workspace / "report" / "conformance.json").read_text())
    tests = document["suites"]["test_fakesuite"]["mphost"]["tests"]
    assert {test_id: record["status"] for test_id, record in tests.items()} == {
        "test_fakesuite.T.test_same": "pass", "test_fakesuite.T.test_regress": "pass",
        "test_fakesuite.T.test_skip_reason": "skip", "test_fakesuite.T.test_only_fake": "pass"}
    assert document["comparison"]["test_fakesuite"]["regressions"] == []
    assert len(document["commands"]) == 2


def test_end_to_end_hang_and_crash_are_named_and_nothing_survives(workspace):
    pid_file = workspace / "grandchild.pid"
    done = _harness(workspace, "--suites", "test_hangsuite", "--only", "stock",
                    "--timeout", "3", env={"GRANDCHILD_PID": str(pid_file)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "hang in test_hangsuite.H.test_b_hang" in done.stdout
    assert "crash in test_hangsuite.H.test_c_abort" in done.stdout
    document = json.loads((workspace / "report" / "conformance.json").read_text())
    side = document["suites"]["test_hangsuite"]["stock"]
    assert {test_id: record["status"] for test_id, record in side["tests"].items()} == {
        "test_hangsuite.H.test_a_ok": "pass", "test_hangsuite.H.test_b_hang": "hang",
        "test_hangsuite.H.test_c_abort": "crash", "test_hangsuite.H.test_d_fail": "fail"}
    assert "SIGABRT" in side["tests"]["test_hangsuite.H.test_c_abort"]["message"]
    assert [attempt["end"] for attempt in side["attempts"]] == ["hang", "crash", "completed"]
    assert side["attempts"][2]["command"][-5:] == [
        "-i", "test_hangsuite.H.test_b_hang", "-i", "test_hangsuite.H.test_c_abort",
        "test_hangsuite"]
    # the thread dump of the hung run is in its log
    hung_log = (workspace / "work" / "test_hangsuite-stock" / "attempt-1" /
                "output.log").read_text()
    assert 'in test_b_hang' in hung_log
    grandchild = int(pid_file.read_text())
    assert not Path(f"/proc/{grandchild}").exists() or is_zombie(grandchild)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_killing_the_harness_takes_the_suites_down(workspace, signum):
    pid_file = workspace / "grandchild.pid"
    command = [STOCK, str(HARNESS / "run_conformance.py"), "--testdir",
               str(workspace / "suites"), "--suites", "test_hangsuite", "--only", "stock",
               "--timeout", "300", "--no-report", "--work-dir", str(workspace / "work")]
    harness = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env=dict(os.environ, GRANDCHILD_PID=str(pid_file)))
    try:
        deadline = time.monotonic() + 30
        while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.1)
        grandchild = int(pid_file.read_text())
        harness.send_signal(signum)
        output, _ = harness.communicate(timeout=30)
    finally:
        harness.kill()
    if signum == signal.SIGTERM:
        assert harness.returncode == 130, output
        assert "interrupted" in output
    deadline = time.monotonic() + 15
    while (Path(f"/proc/{grandchild}").exists() and not is_zombie(grandchild)
           and time.monotonic() < deadline):
        time.sleep(0.1)
    survived = Path(f"/proc/{grandchild}").exists() and not is_zombie(grandchild)
    if survived:    # do not leave the suite running when the test fails
        _kill_processes_mentioning(str(workspace))
        os.kill(grandchild, signal.SIGKILL)
    assert not survived


def _kill_processes_mentioning(text: str) -> None:
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if text in cmdline:
                try:
                    os.kill(int(entry), signal.SIGKILL)
                except ProcessLookupError:
                    pass


def test_end_to_end_module_that_fails_to_import(workspace):
    done = _harness(workspace, "--suites", "test_brokensuite")
    assert done.returncode == 1
    assert _summary(done) == "conformance: 0 passed, 1 failed, 0 skipped, 1 not run (1 unexpected)"
    assert ("UNEXPECTED FAILURE: test_brokensuite.T.test_one: [missing] did not run under "
            "mphost (passes on stock)") in done.stdout
    document = json.loads((workspace / "report" / "conformance.json").read_text())
    tests = document["suites"]["test_brokensuite"]["mphost"]["tests"]
    assert tests == {"<module> (test_brokensuite)": {
        "status": "error",
        "message": "ModuleNotFoundError: No module named 'a_module_the_fake_host_lacks'",
        "detail": tests["<module> (test_brokensuite)"]["detail"]}}
    assert document["suites"]["test_brokensuite"]["stock"]["tests"] == {
        "test_brokensuite.T.test_one": {"status": "pass",
                                        "time": document["suites"]["test_brokensuite"]
                                        ["stock"]["tests"]["test_brokensuite.T.test_one"]
                                        ["time"]}}


def test_ci_refuses_a_reference_without_the_suite(workspace):
    (workspace / "reference.json").write_text(json.dumps(
        {"format": 1, "suites": {"test_other": {}}}))
    done = _harness(workspace, "--suites", "test_fakesuite", "--ci")
    assert done.returncode == 2
    assert "has no stock results for test_fakesuite" in done.stderr


def test_render_only_rebuilds_the_page_from_the_json(workspace):
    assert _harness(workspace, "--suites", "test_fakesuite").returncode == 1
    page = workspace / "report" / "CONFORMANCE.md"
    original = page.read_text()
    page.write_text("stale")
    done = _harness(workspace, "--render-only")
    assert done.returncode == 0
    assert page.read_text() == original


def test_usage_errors_exit_2(workspace):
    done = _harness(workspace, "--suites", "test_fakesuite", "--ci", "--match", "x")
    assert done.returncode == 2 and "cannot be combined" in done.stderr
    done = subprocess.run([STOCK, str(HARNESS / "run_conformance.py"), "--suites", "nope",
                           "--no-report"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "unknown suite(s): nope" in done.stderr
    done = _harness(workspace, "--suites", "test_fakesuite", "--mphost", "/nonexistent/mphost")
    assert done.returncode == 2 and "mphost interpreter not found" in done.stderr
