"""Running one suite under one interpreter, with time limits and restarts.

One *side run* is ``INTERPRETER -m test -v --junit-xml FILE ... SUITE`` under
_reaper.py in a new session, its output streamed to a log file that is read
while it runs. Three limits apply:

* per test (``test_timeout``): when the log shows no progress (no test
  started or finished) for that long, the test announced last is a *hang*:
  regrtest is sent SIGUSR1 (it writes every thread's traceback into the log),
  then the whole process tree is killed;
* per suite (``suite_timeout``): regrtest's own ``--timeout`` (faulthandler;
  in 3.11 it covers the whole test module) gets this value, and the harness
  kills the tree itself 30 seconds later if it is still there;
* restarts: a killed or crashed run writes no junit file, so the suite is run
  again with the culprit excluded (``-i TEST_ID``) until it completes, the
  restart budget is spent or the suite time is up. The culprit is recorded as
  ``hang`` or ``crash`` under its own id. If no complete run is left, the
  statuses of the last run come from its log (see _collect.py).
"""

from __future__ import annotations

import codecs
import dataclasses
import datetime
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from _collect import collect
from _outcomes import CRASH, HANG, Outcome
from _process_tree import kill_descendants
from _verbose_log import VerboseLog

_REAPER = Path(__file__).resolve().with_name("_reaper.py")
_POLL = 0.5
_DUMP_WAIT = 2.0
_KILL_GRACE = 30.0
_FAULTHANDLER_TIMEOUT = re.compile(r"^Timeout \(\d+:\d\d:\d\d(?:\.\d+)?\)!$", re.M)
_FATAL_ERROR = re.compile(r"^Fatal Python error: (.*)$", re.M)

# Set to stop every running suite (the harness was interrupted).
CANCEL = threading.Event()


@dataclasses.dataclass
class RunSpec:
    suite: str
    side: str                       # "stock" or "mphost"
    interpreter: str
    match: list[str]
    test_timeout: float
    suite_timeout: float
    max_restarts: int
    work_dir: Path
    ignore: list[str] = dataclasses.field(default_factory=list)
    testdir: str | None = None      # regrtest --testdir (synthetic suites)


@dataclasses.dataclass
class Attempt:
    command: list[str]
    started: str
    duration: float
    returncode: int | None
    end: str                        # completed | hang | crash | suite-timeout | cancelled
    culprit: str | None
    leftover: list[dict]
    log: str
    junit: str

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class SideRun:
    suite: str
    side: str
    interpreter: str
    match: list[str]
    outcomes: dict[str, Outcome]
    attempts: list[Attempt]
    source: str
    problems: list[str]
    notes: list[str]
    started: str
    duration: float

    def to_json(self) -> dict:
        return {
            "interpreter": self.interpreter,
            "match": self.match,
            "started": self.started,
            "duration": round(self.duration, 1),
            "source": self.source,
            "problems": self.problems,
            "notes": self.notes,
            "attempts": [attempt.to_json() for attempt in self.attempts],
            "tests": {test_id: self.outcomes[test_id].to_json()
                      for test_id in sorted(self.outcomes)},
        }

    @classmethod
    def from_json(cls, suite: str, side: str, data: dict) -> "SideRun":
        return cls(suite, side, data["interpreter"], list(data.get("match", [])),
                   {test_id: Outcome.from_json(test_id, record)
                    for test_id, record in data["tests"].items()},
                   [Attempt(**attempt) for attempt in data.get("attempts", [])],
                   data.get("source", "junit"), list(data.get("problems", [])),
                   list(data.get("notes", [])), data.get("started", ""),
                   float(data.get("duration", 0.0)))


def regrtest_command(spec: RunSpec, junit: Path, tempdir: Path, ignore: list[str]) -> list[str]:
    command = [spec.interpreter, "-m", "test", "-v",
               "--junit-xml", str(junit),
               "--timeout", _seconds(spec.suite_timeout),
               "--tempdir", str(tempdir)]
    if spec.testdir:
        command += ["--testdir", spec.testdir]
    for pattern in spec.match:
        command += ["-m", pattern]
    for pattern in ignore:
        command += ["-i", pattern]
    command.append(spec.suite)
    return command


def child_environment() -> dict[str, str]:
    """The harness' environment without PYTHON* variables, for both sides alike."""
    return {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}


def run_side(spec: RunSpec, report=lambda text: None) -> SideRun:
    """Run spec's suite to completion (with restarts); never raises on test failures."""
    started = _now()
    begin = time.monotonic()
    deadline = begin + spec.suite_timeout + _KILL_GRACE
    # logs and regrtest directories of an earlier run of this suite and side
    shutil.rmtree(spec.work_dir / f"{spec.suite}-{spec.side}", ignore_errors=True)
    ignore = list(spec.ignore)
    casualties: dict[str, Outcome] = {}
    attempts: list[Attempt] = []
    problems: list[str] = []
    collected = None
    for number in range(spec.max_restarts + 1):
        if deadline - time.monotonic() < 5:
            problems.append("suite time limit reached before the suite could be run again")
            break
        attempt, since = _run_attempt(spec, number, ignore, deadline, report)
        attempts.append(attempt)
        log_text = Path(attempt.log).read_text(errors="replace")
        collected = collect(attempt.junit, log_text, spec.suite,
                            spec.suite if spec.testdir else f"test.{spec.suite}")
        if attempt.end == "completed" and collected.source == "junit":
            break
        if attempt.end == "cancelled":
            problems.append("interrupted")
            break
        if attempt.end == "completed":
            attempt.end = "crash"
        culprit = collected.running
        attempt.culprit = culprit
        message = _casualty_message(attempt, log_text, spec)
        if culprit is None:
            after = collected.last_finished or "the start"
            problems.append(f"{attempt.end} outside any test (after {after}): {message}")
            break
        status = CRASH if attempt.end == "crash" else HANG
        elapsed = None if since is None else round(since, 1)
        casualties[culprit] = Outcome(culprit, status, elapsed, message)
        report(f"{spec.suite} [{spec.side}]: {status} in {culprit}: {message}")
        if attempt.end == "suite-timeout":
            problems.append(f"suite time limit ({_seconds(spec.suite_timeout)} s) reached "
                            f"in {culprit}")
            break
        if number == spec.max_restarts:
            problems.append(f"restart limit ({spec.max_restarts}) reached after {status} in "
                            f"{culprit}")
            break
        ignore.append(culprit)
    outcomes = dict(collected.outcomes) if collected else {}
    outcomes.update(casualties)
    notes = list(collected.notes) if collected else []
    for number, attempt in enumerate(attempts, 1):
        if attempt.leftover and attempt.end == "completed":
            names = ", ".join(sorted({_program(entry["cmdline"]) for entry in attempt.leftover}))
            problems.append(f"run {number} left {len(attempt.leftover)} processes behind "
                            f"after it exited ({names}); killed")
    return SideRun(spec.suite, spec.side, spec.interpreter, list(spec.match), outcomes,
                   attempts, collected.source if collected else "none", problems, notes,
                   started, time.monotonic() - begin)


def _casualty_message(attempt: Attempt, log_text: str, spec: RunSpec) -> str:
    if attempt.end == "hang":
        return (f"no progress for {_seconds(spec.test_timeout)} s; run killed "
                "(thread tracebacks in the log)")
    if attempt.end == "suite-timeout":
        return f"still running when the suite time limit ({_seconds(spec.suite_timeout)} s) hit"
    fatal = _FATAL_ERROR.findall(log_text)
    if attempt.returncode is not None and attempt.returncode > 128:
        try:
            name = signal.Signals(attempt.returncode - 128).name
        except ValueError:
            name = f"signal {attempt.returncode - 128}"
        text = f"interpreter killed by {name}"
    else:
        text = f"interpreter exited with status {attempt.returncode} without a junit file"
    if fatal:
        text += f" (Fatal Python error: {fatal[-1]})"
    else:
        lines = [line.strip() for line in log_text.splitlines()
                 if line.strip() and not line.startswith("[conformance]")]
        if len(lines) > 1:          # the first line is the command
            text += f"; last output: {lines[-1][:200]}"
    return text


def _run_attempt(spec: RunSpec, number: int, ignore: list[str], deadline: float, report):
    directory = spec.work_dir / f"{spec.suite}-{spec.side}" / f"attempt-{number + 1}"
    directory.mkdir(parents=True, exist_ok=True)
    tempdir = directory / "tmp"
    tempdir.mkdir(exist_ok=True)
    junit = directory / "junit.xml"
    log_path = directory / "output.log"
    status_path = directory / "reaper.json"
    for stale in (junit, status_path):
        stale.unlink(missing_ok=True)
    command = regrtest_command(spec, junit, tempdir, ignore)
    report(f"{spec.suite} [{spec.side}]: start{' (restart ' + str(number) + ')' if number else ''}")
    started = _now()
    begin = time.monotonic()
    with open(log_path, "wb") as log_out:
        log_out.write(("$ " + shlex.join(command) + "\n").encode())
        log_out.flush()
        process = subprocess.Popen(
            [sys.executable, str(_REAPER), str(status_path), "--", *command],
            stdin=subprocess.DEVNULL, stdout=log_out, stderr=subprocess.STDOUT,
            cwd=directory, env=child_environment(), start_new_session=True)
    end = "completed"
    live = VerboseLog()
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    events = -1
    last_progress = begin
    test_started = None
    current = None
    with open(log_path, "rb") as log_in:
        while process.poll() is None:
            time.sleep(_POLL)
            live.feed(decoder.decode(log_in.read()))
            now = time.monotonic()
            if live.events != events:
                events = live.events
                last_progress = now
            if live.current != current:
                current = live.current
                test_started = now
            if now - last_progress > spec.test_timeout:
                end = "hang"
            elif now > deadline:
                end = "suite-timeout"
            elif CANCEL.is_set():
                end = "cancelled"
            else:
                continue
            _stop(process)
            break
    duration = time.monotonic() - begin
    leftover = []
    if status_path.exists():
        leftover = json.loads(status_path.read_text()).get("leftover", [])
    if end == "completed":
        text = log_path.read_text(errors="replace")
        if not junit.exists() and _FAULTHANDLER_TIMEOUT.search(text):
            end = "suite-timeout"
    since = None if test_started is None or current is None else time.monotonic() - test_started
    return Attempt(command, started, round(duration, 1), process.returncode, end, None,
                   leftover, str(log_path), str(junit)), since


def _stop(process: subprocess.Popen) -> None:
    """Dump tracebacks (SIGUSR1 through the reaper), then kill the process tree."""
    try:
        process.send_signal(signal.SIGUSR1)
        time.sleep(_DUMP_WAIT)
        process.terminate()
        process.wait(timeout=15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    if process.poll() is None:
        kill_descendants(process.pid)
        process.kill()
        process.wait()
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _program(cmdline: str) -> str:
    words = cmdline.split()
    return " ".join(words[:3]) if words else "?"


def _seconds(value: float) -> str:
    return f"{value:g}"


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).astimezone().isoformat(timespec="seconds")
