"""Run one command as a subreaper and leave no process of it behind.

    /usr/bin/python3 _reaper.py STATUS_FILE -- COMMAND [ARG...]

The harness starts this in a new session for every suite run. It marks
itself a child subreaper, runs COMMAND and waits for it, reaping orphans as
they come. Then:

* when COMMAND exits, descendants still alive after a short grace period are
  killed and listed as leftovers (a suite that leaks processes shows it);
* on SIGTERM, SIGINT or SIGHUP every descendant is killed at once; the
  reaper gets SIGTERM from the kernel if the harness dies first;
* SIGUSR1 is passed on to COMMAND (regrtest answers it with a traceback of
  every thread, which is how a hang is explained in the log).

STATUS_FILE receives JSON: {"returncode", "terminated", "leftover": [{pid, cmdline}]}.
The exit status is COMMAND's (128 + signal number when a signal ended it).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _process_tree import (become_subreaper, command_line, descendants,  # noqa: E402
                           die_with_parent, is_zombie, kill_descendants, reap_children)

LEFTOVER_GRACE = 3.0


class _Terminated(Exception):
    pass


def _raise_terminated(signum, frame):
    raise _Terminated(signum)


def _wait_for(child: subprocess.Popen) -> int:
    """Wait for child, reaping re-parented orphans meanwhile; its wait status."""
    while True:
        pid, status = os.wait()
        if pid == child.pid:
            child.returncode = os.waitstatus_to_exitcode(status)
            return child.returncode


def _leftovers(grace: float) -> list[dict]:
    me = os.getpid()
    deadline = time.monotonic() + grace
    while True:
        reap_children()
        live = [pid for pid in descendants(me) if not is_zombie(pid)]
        if not live or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    found = [{"pid": pid, "cmdline": command_line(pid)} for pid in live]
    kill_descendants(me)
    return found


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[2] != "--":
        print("usage: _reaper.py STATUS_FILE -- COMMAND [ARG...]", file=sys.stderr)
        return 2
    status_file, command = argv[1], argv[3:]
    harness = os.getppid()
    become_subreaper()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, _raise_terminated)
    # if the harness itself is killed, take the suite down with it
    die_with_parent(signal.SIGTERM)
    if os.getppid() != harness:
        return 1
    child = subprocess.Popen(command)
    signal.signal(signal.SIGUSR1, lambda signum, frame: child.send_signal(signum))
    status = {"returncode": None, "terminated": False, "leftover": []}
    try:
        returncode = _wait_for(child)
        status["returncode"] = returncode
        status["leftover"] = _leftovers(LEFTOVER_GRACE)
    except _Terminated:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
            signal.signal(signum, signal.SIG_IGN)
        status["terminated"] = True
        killed = kill_descendants(os.getpid())
        print(f"\n[conformance] run terminated; killed {len(killed)} processes",
              file=sys.stderr, flush=True)
        returncode = -signal.SIGKILL
    if status["leftover"]:
        print(f"\n[conformance] killed {len(status['leftover'])} processes left "
              "behind by the run:", file=sys.stderr)
        for entry in status["leftover"]:
            print(f"[conformance]   {entry['pid']}: {entry['cmdline']}", file=sys.stderr)
        sys.stderr.flush()
    with open(status_file + ".tmp", "w") as out:
        json.dump(status, out)
    os.replace(status_file + ".tmp", status_file)
    return 128 - returncode if returncode < 0 else returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv))
