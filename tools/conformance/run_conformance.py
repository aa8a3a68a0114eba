#!/usr/bin/python3
"""Run CPython's multiprocessing test suites under mphost and stock python3.

Each selected suite runs as ``INTERPRETER -m test -v --junit-xml FILE SUITE``
under both interpreters on this machine; every test's outcome is read from
the junit file (completed by the verbose log where 3.11's junit writer is
silent), compared side by side, checked against
tests/conformance/expected_failures.txt, and written to docs/CONFORMANCE.md
and docs/conformance.json. See tools/conformance/README.md.

Exit status: 0 when every result is as expected, 1 when a test expected to
pass under mphost did not or a listed expected failure now passes, 2 on a
usage or setup error, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import os
import shlex
import signal
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _expected import (ExpectedFileError, check_expected, parse_expected,  # noqa: E402
                       regressions, render_expected, update_expected)
from _json_text import dumps  # noqa: E402
from _machine import interpreter_version, machine  # noqa: E402
from _matching import matcher  # noqa: E402
from _outcomes import FAILED, ERRORED, PASSED, SKIP, Outcome, split_fixture_id  # noqa: E402
from _process_tree import become_subreaper, kill_descendants  # noqa: E402
from _report import (build_document, load_document, merge_side,  # noqa: E402
                     relative_paths, render_markdown, sides_of)
from _runner import CANCEL, RunSpec, SideRun, run_side  # noqa: E402
from _suites import CI_SELECTION, ESTIMATED_SECONDS, SUITES, suite_of  # noqa: E402

ROOT = HERE.parent.parent
STOCK = "/usr/bin/python3"
DEFAULT_MPHOST = ROOT / "build" / "bin" / "mphost"
REFERENCE_FORMAT = 1


class UsageError(Exception):
    pass


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="run_conformance.py",
        description="Run CPython's multiprocessing test suites under mphost and stock "
                    "python3 and report the differences.")
    parser.add_argument("--suites", nargs="+", metavar="SUITE",
                        help=f"suites to run (default: all: {' '.join(SUITES)})")
    parser.add_argument("--match", "-m", action="append", default=[], metavar="PATTERN",
                        help="run only tests matching PATTERN (regrtest -m; repeatable)")
    parser.add_argument("--rerun-failed", action="store_true",
                        help="run only the tests that did not pass last time "
                             "(read from the JSON report)")
    parser.add_argument("--only", choices=("stock", "mphost"),
                        help="run one interpreter only (the other column is kept from the "
                             "previous report)")
    parser.add_argument("--jobs", "-j", type=int, default=2,
                        help="suite runs at a time (default: 2)")
    parser.add_argument("--timeout", type=float, default=120.0, metavar="SECONDS",
                        help="a test that makes no progress for this long is a hang and its "
                             "run is killed (default: 120)")
    parser.add_argument("--suite-timeout", type=float, default=1200.0, metavar="SECONDS",
                        help="time limit of one suite under one interpreter, restarts "
                             "included; also passed to regrtest --timeout (default: 1200)")
    parser.add_argument("--max-restarts", type=int, default=3, metavar="N",
                        help="times a suite is restarted without the test that hung or "
                             "crashed (default: 3)")
    parser.add_argument("--ci", action="store_true",
                        help="run the CI subset under mphost only and compare with the "
                             "stored stock reference; does not write the report")
    parser.add_argument("--mphost", default=str(DEFAULT_MPHOST), metavar="PATH",
                        help="mphost launcher (default: build/bin/mphost)")
    parser.add_argument("--stock", default=STOCK, metavar="PATH",
                        help=f"stock interpreter (default: {STOCK})")
    parser.add_argument("--update-expected", action="store_true",
                        help="rewrite the expected-failures list from this run")
    parser.add_argument("--update-reference", action="store_true",
                        help="store this run's stock results as the CI reference "
                             "(requires unrestricted stock runs)")
    parser.add_argument("--render-only", action="store_true",
                        help="run nothing: rewrite docs/CONFORMANCE.md from "
                             "docs/conformance.json")
    parser.add_argument("--no-report", action="store_true",
                        help="do not write docs/CONFORMANCE.md and docs/conformance.json")
    parser.add_argument("--report-dir", type=Path, default=ROOT / "docs", metavar="DIR")
    parser.add_argument("--expected", type=Path,
                        default=ROOT / "tests" / "conformance" / "expected_failures.txt",
                        metavar="FILE")
    parser.add_argument("--reference", type=Path,
                        default=ROOT / "tests" / "conformance" / "stock_reference.json",
                        metavar="FILE")
    parser.add_argument("--work-dir", type=Path, default=HERE / "work", metavar="DIR",
                        help="logs, junit files and regrtest temporary directories")
    parser.add_argument("--testdir", metavar="DIR",
                        help="regrtest --testdir: run test modules from DIR instead of the "
                             "stdlib's (for checking the harness itself)")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    if args.timeout <= 0 or args.suite_timeout <= 0:
        parser.error("--timeout and --suite-timeout must be positive")
    if args.max_restarts < 0:
        parser.error("--max-restarts must not be negative")
    return args


# -- planning -----------------------------------------------------------------

def _report_paths(args) -> tuple[Path, Path]:
    return args.report_dir / "conformance.json", args.report_dir / "CONFORMANCE.md"


def _failed_last_time(document: dict | None, suites: list[str]) -> dict[str, list[str]]:
    """suite -> regrtest patterns of the tests that did not pass last time."""
    if document is None:
        raise UsageError("--rerun-failed needs a previous report; none found")
    previous = sides_of(document)
    patterns: dict[str, list[str]] = {}
    for suite in suites:
        sides = previous.get(suite, {})
        ids: set[str] = set()
        for run in sides.values():
            ids.update(test_id for test_id, outcome in run.outcomes.items()
                       if outcome.status in FAILED | ERRORED)
        if "stock" in sides and "mphost" in sides:
            ids.update(regressions(sides["stock"].outcomes, sides["mphost"].outcomes,
                                   matcher(sides["mphost"].match)))
        if ids:
            patterns[suite] = sorted({_pattern_of(test_id) for test_id in ids})
    return patterns


def _pattern_of(test_id: str) -> str:
    fixture = split_fixture_id(test_id)
    return fixture[1] + ".*" if fixture else test_id


def plan(args, previous: dict | None) -> tuple[list[str], dict[str, list[str]]]:
    """(sides, suite -> -m patterns) of this invocation."""
    if args.ci and (args.match or args.rerun_failed):
        raise UsageError("--ci runs a fixed selection; it cannot be combined with "
                         "--match or --rerun-failed")
    if args.ci and args.only == "stock":
        raise UsageError("--ci checks mphost; --only stock makes no sense with it")
    if args.rerun_failed and args.match:
        raise UsageError("--rerun-failed selects the tests itself; drop --match")
    if args.suites and not args.testdir:
        unknown = [suite for suite in args.suites if suite not in SUITES]
        if unknown:
            raise UsageError(f"unknown suite(s): {' '.join(unknown)} "
                             f"(known: {' '.join(SUITES)})")
    if args.testdir and not args.suites:
        raise UsageError("--testdir needs --suites naming its test modules")
    if args.ci:
        suites = args.suites or list(CI_SELECTION)
        selection = {suite: list(CI_SELECTION.get(suite, [])) for suite in suites}
        sides = ["mphost"] if args.reference.exists() or args.only else ["stock", "mphost"]
    else:
        suites = args.suites or list(SUITES)
        sides = [args.only] if args.only else ["stock", "mphost"]
        if args.rerun_failed:
            selection = _failed_last_time(previous, suites)
        else:
            selection = {suite: list(args.match) for suite in suites}
    if args.update_reference and ("stock" not in sides or args.ci
                                  or any(selection.values())):
        raise UsageError("--update-reference needs unrestricted stock runs "
                         "(no --ci, --match, --rerun-failed or --only mphost)")
    for side in sides:
        path = args.mphost if side == "mphost" else args.stock
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            hint = " (build it, or pass --mphost PATH)" if side == "mphost" else ""
            raise UsageError(f"{side} interpreter not found or not executable: {path}{hint}")
    return sides, selection


# -- running ------------------------------------------------------------------

_print_lock = threading.Lock()
_t0 = time.monotonic()


def say(text: str) -> None:
    with _print_lock:
        elapsed = time.monotonic() - _t0
        print(f"[{int(elapsed // 60):3d}:{int(elapsed % 60):02d}] {text}", flush=True)


def _estimate(suite: str, side: str, previous: dict | None) -> float:
    runs = sides_of(previous).get(suite, {})
    if side in runs and runs[side].duration:
        return runs[side].duration
    return ESTIMATED_SECONDS.get(suite, 60)


def run_all(args, sides, selection, previous) -> dict[str, dict[str, SideRun]]:
    specs = []
    for suite, patterns in selection.items():
        for side in sides:
            specs.append(RunSpec(
                suite=suite, side=side,
                interpreter=args.mphost if side == "mphost" else args.stock,
                match=patterns, test_timeout=args.timeout, suite_timeout=args.suite_timeout,
                max_restarts=args.max_restarts, work_dir=args.work_dir.resolve(),
                testdir=os.path.abspath(args.testdir) if args.testdir else None))
    specs.sort(key=lambda spec: -_estimate(spec.suite, spec.side, previous))
    results: dict[str, dict[str, SideRun]] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {pool.submit(run_side, spec, say): spec for spec in specs}
        try:
            for future in concurrent.futures.as_completed(futures):
                spec = futures[future]
                run = future.result()
                results.setdefault(spec.suite, {})[spec.side] = run
                say(f"{spec.suite} [{spec.side}]: done in {run.duration:.0f} s: "
                    + _counts_text(run.outcomes.values()))
        except KeyboardInterrupt:
            CANCEL.set()
            for future in futures:
                future.cancel()
            raise
    return results


def _counts_text(outcomes, expected_ids=frozenset()) -> str:
    """The closing counts; failures listed in the expected-failures file are
    counted on their own, so that "failed" means only what is unexpected."""
    outcomes = list(outcomes)
    passed = sum(o.status in PASSED for o in outcomes)
    failing = [o for o in outcomes if o.status in FAILED | ERRORED]
    known = sum(o.test_id in expected_ids for o in failing)
    skipped = sum(o.status == SKIP for o in outcomes)
    text = f"{passed} passed, {len(failing) - known} failed, {skipped} skipped"
    return text + (f", {known} expected failures" if known else "")


# -- reference and expected failures -------------------------------------------

def load_reference(path: Path) -> dict[str, dict[str, Outcome]]:
    data = json.loads(path.read_text())
    if data.get("format") != REFERENCE_FORMAT:
        raise UsageError(f"{path}: unsupported reference format {data.get('format')!r}")
    return {suite: {test_id: Outcome(test_id, record["status"], None, record.get("message", ""))
                    for test_id, record in tests.items()}
            for suite, tests in data["suites"].items()}


def write_reference(path: Path, results, args, generated: str) -> None:
    suites = {suite: {test_id: ({"status": o.status, "message": o.message} if o.message
                                else {"status": o.status})
                      for test_id, o in sorted(sides["stock"].outcomes.items())}
              for suite, sides in results.items() if "stock" in sides}
    if path.exists():
        old = json.loads(path.read_text()).get("suites", {})
        old.update(suites)
        suites = old
    data = {"format": REFERENCE_FORMAT, "generated": generated,
            "interpreter": {"path": args.stock, "version": interpreter_version(args.stock)},
            "machine": machine(), "suites": dict(sorted(suites.items()))}
    path.write_text(dumps(data))


def stock_outcomes(suite, results, reference, previous_sides) -> dict[str, Outcome] | None:
    if "stock" in results.get(suite, {}):
        return results[suite]["stock"].outcomes
    if reference is not None and suite in reference:
        return reference[suite]
    if "stock" in previous_sides.get(suite, {}):
        return previous_sides[suite]["stock"].outcomes
    return None


def _in_suite(suite: str, patterns: list[str]):
    selected = matcher(patterns)
    return lambda test_id: suite_of(test_id) == suite and selected(test_id)


# -- main -----------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join(["/usr/bin/python3", "tools/conformance/run_conformance.py",
                          *(sys.argv[1:] if argv is None else argv)])
    json_path, md_path = _report_paths(args)
    if args.render_only:
        try:
            document = load_document(json_path)
        except ValueError as exc:
            print(f"run_conformance.py: error: {exc}", file=sys.stderr)
            return 2
        if document is None:
            print(f"run_conformance.py: error: no report at {json_path}", file=sys.stderr)
            return 2
        json_path.write_text(dumps(document))
        md_path.write_text(render_markdown(document))
        print(f"conformance: rewrote {md_path} from {json_path}")
        return 0
    try:
        previous = load_document(json_path)
        sides, selection = plan(args, previous)
        expected = (parse_expected(args.expected.read_text(), str(args.expected))
                    if args.expected.exists() else {})
        reference = (load_reference(args.reference)
                     if args.reference.exists() and "stock" not in sides else None)
        if args.ci and reference is not None:
            missing = [suite for suite in selection if suite not in reference]
            if missing:
                raise UsageError(f"{args.reference} has no stock results for "
                                 f"{' '.join(missing)}; refresh it with a full run and "
                                 "--update-reference")
    except (UsageError, ExpectedFileError, ValueError) as exc:
        print(f"run_conformance.py: error: {exc}", file=sys.stderr)
        return 2
    if not selection:
        print("conformance: nothing to run (no test failed last time)")
        return 0

    signal.signal(signal.SIGTERM, _interrupt)
    try:
        become_subreaper()
    except OSError as exc:
        say(f"warning: {exc}; orphaned test processes may escape clean-up")
    args.work_dir.mkdir(parents=True, exist_ok=True)
    generated = datetime.datetime.now(datetime.timezone.utc).astimezone().isoformat(
        timespec="seconds")
    started = time.monotonic()
    say(f"running {len(selection)} suites under {' and '.join(sides)}, "
        f"{args.jobs} at a time; logs in {args.work_dir}")
    try:
        results = run_all(args, sides, selection, previous)
    except KeyboardInterrupt:
        killed = kill_descendants(os.getpid())
        print(f"\nconformance: interrupted; killed {len(killed)} remaining processes",
              file=sys.stderr)
        return 130
    finally:
        leftover = kill_descendants(os.getpid())
        if leftover:
            say(f"warning: killed {len(leftover)} processes that outlived their suite run")
    duration = time.monotonic() - started

    # -- compare with stock and the expected-failures list
    previous_sides = sides_of(previous)
    unexpected, warnings = [], []
    found_regressions: dict[str, dict] = {}
    subject = "mphost" if "mphost" in sides else "stock"
    for suite in selection:
        if "mphost" not in results.get(suite, {}):
            continue
        stock = stock_outcomes(suite, results, reference, previous_sides)
        if stock is None:
            warnings.append(f"{suite}: no stock results to compare with")
            continue
        selected = _in_suite(suite, selection[suite])
        checked = check_expected(expected, stock, results[suite]["mphost"].outcomes, selected)
        unexpected += checked.unexpected
        warnings += checked.warnings
        found_regressions[suite] = (regressions(stock, results[suite]["mphost"].outcomes,
                                                selected), selected)

    if args.update_expected and found_regressions:
        new = dict(expected)
        for suite, (found, selected) in found_regressions.items():
            new = update_expected(new, found, selected)
        args.expected.parent.mkdir(parents=True, exist_ok=True)
        args.expected.write_text(render_expected(new))
        added = sorted(set(new) - set(expected))
        removed = sorted(set(expected) - set(new))
        say(f"updated {args.expected}: {len(new)} entries ({len(added)} added, "
            f"{len(removed)} removed)")

    if args.update_reference:
        write_reference(args.reference, results, args, generated)
        say(f"updated {args.reference}")

    if not (args.ci or args.no_report):
        _write_report(args, results, previous, generated, duration, command, expected,
                      json_path, md_path)
        say(f"report: {md_path} and {json_path}")

    # -- closing summary
    for suite in results:
        run = results[suite].get(subject)
        for outcome in sorted(run.outcomes.values(), key=lambda o: o.test_id) if run else ():
            if split_fixture_id(outcome.test_id) and not outcome.passed and outcome.status != SKIP:
                print(f"SET-UP ERROR: {outcome.test_id}: {outcome.message}")
    for item in unexpected:
        print(item.line())
    for warning in warnings:
        print(f"warning: {warning}")
    subject_outcomes = [outcome for suite in results if subject in results[suite]
                        for outcome in results[suite][subject].outcomes.values()]
    for suite in results:
        for side in sides:
            run = results[suite].get(side)
            for problem in (run.problems if run else []):
                print(f"problem: {suite} [{side}]: {problem}")
    print(f"duration: {duration:.0f} s")
    not_run = sum(outcome is None for found, _ in found_regressions.values()
                  for outcome in found.values())
    print(f"conformance: {_counts_text(subject_outcomes, frozenset(expected))}"
          + (f", {not_run} not run" if not_run else "")
          + (f" ({len(unexpected)} unexpected)" if unexpected else ""))
    if unexpected and not args.update_expected:
        return 1
    return 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def _write_report(args, results, previous, generated, duration, command, expected,
                  json_path, md_path) -> None:
    merged = sides_of(previous)
    partial = any(run.match for sides in results.values() for run in sides.values())
    for suite, sides in results.items():
        for side, run in sides.items():
            merged.setdefault(suite, {})[side] = merge_side(merged.get(suite, {}).get(side),
                                                            relative_paths(run, ROOT))
    interpreters = dict((previous or {}).get("interpreters", {}))
    for side in {side for sides in results.values() for side in sides}:
        path = args.mphost if side == "mphost" else args.stock
        interpreters[side] = {"path": path, "version": interpreter_version(path)}
    replaced_all = not partial and all(side in results.get(suite, {})
                                       for suite, sides in merged.items() for side in sides)
    commands = [] if replaced_all else list((previous or {}).get("commands", []))
    commands.append(command)
    check = {}
    lines, warnings = [], []
    for suite, sides in merged.items():
        if "stock" in sides and "mphost" in sides:
            selected = _in_suite(suite, sides["mphost"].match)
            result = check_expected(expected, sides["stock"].outcomes,
                                    sides["mphost"].outcomes, selected)
            lines += [item.line() for item in result.unexpected]
            warnings += result.warnings
            check = {"unexpected": lines, "warnings": warnings}
    document = build_document(merged, generated=generated, duration=duration,
                              machine=machine(), interpreters=interpreters,
                              commands=commands, expected_check=check)
    args.report_dir.mkdir(parents=True, exist_ok=True)
    json_path.write_text(dumps(document))
    md_path.write_text(render_markdown(document))


if __name__ == "__main__":
    sys.exit(main())
