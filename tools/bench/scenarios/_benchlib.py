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


def emit(metric, value, unit, higher_is_better, cpu_items=None, **extra):
    """Print the one result line. With cpu_items (the number of messages,
    tasks or round trips of the measured section) and cpu_begin()/cpu_end()
    called around that section, the line also carries the CPU seconds the
    whole process tree spent in it (``cpu_s``) and ``cpu_items``."""
    record = {"metric": metric, "value": value, "unit": unit,
              "higher_is_better": bool(higher_is_better)}
    if cpu_items:
        record["cpu_items"] = cpu_items
    if cpu_items and _CPU.get("end") is not None:
        record["cpu_s"] = _CPU["end"] - _CPU["begin"]
        record["cpu_wall_s"] = _CPU["end_wall"] - _CPU["begin_wall"]
        record["cpu_processes"] = _CPU["processes"]
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


# ---- CPU of the whole process tree --------------------------------------------
#
# CPU time (user + system) of every process of the scenario: each live or
# zombie member contributes utime + stime + cutime + cstime from
# /proc/PID/stat, so a child that was reaped during the section is still
# counted, through its reaper's cutime/cstime. Members: the processes of our
# session when we lead one (the runner starts every scenario in its own
# session, so children, grandchildren, manager servers and resource trackers
# are all in it), else our descendants by parent pid. Resolution: one clock
# tick (10 ms) per process per sample.

_CPU = {}
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_stats():
    """[(pid, ppid, session, ticks)] of every process readable in /proc."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                raw = f.read()
        except OSError:
            continue
        rest = raw[raw.rfind(b")") + 2:].split()
        try:
            ticks = int(rest[11]) + int(rest[12]) + int(rest[13]) + int(rest[14])
            out.append((int(entry), int(rest[1]), int(rest[3]), ticks))
        except (IndexError, ValueError):
            continue
    return out


def tree_cpu():
    """(CPU seconds of the scenario's process tree so far, processes counted)."""
    me = os.getpid()
    stats = _proc_stats()
    if os.getsid(0) == me:
        members = [s for s in stats if s[2] == me]
    else:
        children = {}
        for s in stats:
            children.setdefault(s[1], []).append(s)
        members, todo = [], [s for s in stats if s[0] == me]
        while todo:
            s = todo.pop()
            members.append(s)
            todo.extend(children.get(s[0], ()))
    return sum(s[3] for s in members) / _TICK, len(members)


def cpu_begin():
    """Mark the start of the measured section (call just before its clock starts)."""
    _CPU["begin_wall"] = time.perf_counter()
    _CPU["begin"], _CPU["processes"] = tree_cpu()
    _CPU["end"] = None


def cpu_end():
    """Mark the end of the measured section (call as soon as the parent knows it ended)."""
    _CPU["end"], n = tree_cpu()
    _CPU["end_wall"] = time.perf_counter()
    _CPU["processes"] = max(n, _CPU.get("processes", 0))


def median(values):
    return statistics.median(values)


def cpu_count():
    return os.cpu_count() or 1


def now():
    return time.perf_counter()
