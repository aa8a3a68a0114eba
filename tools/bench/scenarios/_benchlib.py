"""Plumbing shared by the benchmark scenarios (standard library only).

A scenario is a plain ``multiprocessing`` program. It measures one thing,
checks that the work it timed produced the right answer, prints exactly one
JSON line on stdout and exits with one of these codes:

    0  the result is right; the JSON line holds the metric
    1  the result is WRONG (lost, duplicated or reordered data, bad sum...)
    2  the scenario could not run (unexpected exception, hang, dead child)
    3  a feature it needs raised NotImplementedError or ImportError

Codes 1, 2 and 3 come with one marker line on stderr (``bench-wrong-result:``,
``bench-error:`` or ``bench-not-supported:``) followed by the reason, so a
caller can tell a wrong answer from an interpreter that cannot run the
program yet even when the process dies in some other way.
"""

import argparse
import json
import os
import queue
import statistics
import sys
import time
import traceback

EXIT_OK = 0
EXIT_WRONG = 1
EXIT_ERROR = 2
EXIT_UNSUPPORTED = 3

WRONG_MARK = "bench-wrong-result:"
ERROR_MARK = "bench-error:"
UNSUPPORTED_MARK = "bench-not-supported:"

#: A child process that hits NotImplementedError/ImportError exits with this.
CHILD_UNSUPPORTED_CODE = EXIT_UNSUPPORTED


class WrongResult(Exception):
    """The measured work finished but its result is not the expected one."""


class ScenarioError(Exception):
    """The scenario could not complete (hang, child died, bad state)."""


class Unsupported(Exception):
    """A child reported that a feature it needs is not available."""


def check(condition, message):
    """Raise WrongResult(message) unless condition holds."""
    if not condition:
        raise WrongResult(message)


def parser(description):
    """Argument parser with the options every scenario accepts."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes: proves the scenario works, in well under 2 s")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="seconds any single wait on a child may take (default 60)")
    return p


def emit(metric, value, unit, higher_is_better, **extra):
    """Print the one result line."""
    record = {"metric": metric, "value": value, "unit": unit,
              "higher_is_better": bool(higher_is_better)}
    record.update(extra)
    sys.stdout.write(json.dumps(record, sort_keys=True) + "\n")
    sys.stdout.flush()


def _first_line(exc):
    text = str(exc).strip()
    line = text.splitlines()[0] if text else ""
    name = type(exc).__name__
    return f"{name}: {line}" if line else name


def run(body):
    """Run body() and turn its outcome into the exit codes above."""
    try:
        body()
    except WrongResult as exc:
        sys.stderr.write(f"{WRONG_MARK} {exc}\n")
        sys.stderr.flush()
        sys.exit(EXIT_WRONG)
    except Unsupported as exc:
        sys.stderr.write(f"{UNSUPPORTED_MARK} {exc}\n")
        sys.stderr.flush()
        sys.exit(EXIT_UNSUPPORTED)
    except (NotImplementedError, ImportError) as exc:
        traceback.print_exc()
        sys.stderr.write(f"{UNSUPPORTED_MARK} {_first_line(exc)}\n")
        sys.stderr.flush()
        sys.exit(EXIT_UNSUPPORTED)
    except ScenarioError as exc:
        sys.stderr.write(f"{ERROR_MARK} {exc}\n")
        sys.stderr.flush()
        sys.exit(EXIT_ERROR)
    except Exception as exc:  # anything else: report it, never look like success
        traceback.print_exc()
        sys.stderr.write(f"{ERROR_MARK} {_first_line(exc)}\n")
        sys.stderr.flush()
        sys.exit(EXIT_ERROR)


def child_entry(function, *args):
    """Target wrapper for child processes.

    A child whose body raises NotImplementedError or ImportError says so on
    stderr and exits with CHILD_UNSUPPORTED_CODE, so that the parent can tell
    "not supported" from an ordinary crash (exit code 1).
    """
    try:
        function(*args)
    except (NotImplementedError, ImportError) as exc:
        traceback.print_exc()
        sys.stderr.write(f"{UNSUPPORTED_MARK} {_first_line(exc)}\n")
        sys.stderr.flush()
        sys.exit(CHILD_UNSUPPORTED_CODE)


def join_all(processes, timeout):
    """Join every process within timeout seconds in total; check exit codes.

    A process still alive at the deadline is killed and reported as a hang;
    a non-zero exit code becomes ScenarioError, or Unsupported for
    CHILD_UNSUPPORTED_CODE.
    """
    deadline = time.monotonic() + timeout
    for p in processes:
        p.join(max(0.0, deadline - time.monotonic()))
    alive = [p for p in processes if p.is_alive()]
    if alive:
        for p in alive:
            p.kill()
        for p in alive:
            p.join(5)
        raise ScenarioError(
            f"hang: {len(alive)} child process(es) still running after {timeout:g} s")
    for p in processes:
        if p.exitcode == CHILD_UNSUPPORTED_CODE:
            raise Unsupported(f"child process {p.name} hit an unsupported feature "
                              "(see its traceback above)")
        if p.exitcode != 0:
            raise ScenarioError(f"child process {p.name} exited with {p.exitcode}")


def _check_children(processes):
    """Raise if a child already exited with a failure (it will never answer)."""
    for p in processes:
        code = p.exitcode
        if code == CHILD_UNSUPPORTED_CODE:
            raise Unsupported(f"child process {p.name} hit an unsupported feature "
                              "(see its traceback above)")
        if code not in (None, 0):
            raise ScenarioError(f"child process {p.name} exited with {code}")


def wait_for(poll, processes, timeout, what):
    """Wait until poll(seconds) returns (True, value); return value.

    Polls in short slices so that a child that dies is noticed at once
    (ScenarioError, or Unsupported for CHILD_UNSUPPORTED_CODE) instead of
    after the whole timeout; ScenarioError("hang: ...") after timeout.
    """
    deadline = time.monotonic() + timeout
    while True:
        done, value = poll(0.2)
        if done:
            return value
        _check_children(processes)
        if time.monotonic() > deadline:
            raise ScenarioError(f"hang: {what} after {timeout:g} s")


def get(q, processes, timeout, what):
    """q.get() that notices dead children (see wait_for)."""
    def poll(seconds):
        try:
            return True, q.get(timeout=seconds)
        except queue.Empty:
            return False, None
    return wait_for(poll, processes, timeout, what)


def acquire(semaphore, processes, timeout, what):
    """semaphore.acquire() that notices dead children (see wait_for)."""
    wait_for(lambda seconds: (semaphore.acquire(timeout=seconds), None), processes, timeout, what)


def recv(conn, processes, timeout, what):
    """conn.recv() that notices dead children (see wait_for)."""
    wait_for(lambda seconds: (conn.poll(seconds), None), processes, timeout, what)
    return conn.recv()


def kill_all(processes):
    """Best-effort clean-up on an error path."""
    for p in processes:
        try:
            if p.is_alive():
                p.kill()
                p.join(5)
        except Exception:
            pass


def median(values):
    return statistics.median(values)


def cpu_count():
    return os.cpu_count() or 1


def now():
    return time.perf_counter()
