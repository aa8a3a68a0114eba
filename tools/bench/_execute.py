"""Run one scenario program under one interpreter and classify the outcome.

Each run is a fresh process in its own session (so its whole process tree
shares one process group) with stdout and stderr going to temporary files,
not pipes: a leftover grandchild holding a pipe open cannot stall the
runner. After a time limit the whole group is killed and the run is a hang;
processes still alive in the group shortly after a normal exit are killed and
noted.

Outcome statuses:
    ok           exit 0 and exactly one JSON line on stdout
    wrong        the scenario checked its result and found it wrong (exit 1 + marker)
    unsupported  NotImplementedError / ImportError (exit 3 + marker)
    error        anything else: crash, signal, bad output, missing interpreter
    hang         killed after the time limit
"""

import json
import os
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

EXIT_WRONG = 1
EXIT_UNSUPPORTED = 3
WRONG_MARK = "bench-wrong-result:"
ERROR_MARK = "bench-error:"
UNSUPPORTED_MARK = "bench-not-supported:"

FAILURES = ("wrong", "unsupported", "error", "hang")


@dataclass
class Outcome:
    status: str
    value: float = None
    record: dict = None
    message: str = ""
    wall_s: float = 0.0
    stderr_tail: str = ""
    notes: list = field(default_factory=list)

    def to_json(self):
        return {"status": self.status, "value": self.value, "record": self.record,
                "message": self.message, "wall_s": round(self.wall_s, 3),
                "stderr_tail": self.stderr_tail, "notes": self.notes}


def _group_members(pgid):
    """Live (non-zombie) processes whose process group is pgid."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        rest = stat[stat.rfind(")") + 2:].split()
        # rest[0] = state, rest[1] = ppid, rest[2] = pgrp
        if len(rest) > 2 and int(rest[2]) == pgid and rest[0] not in ("Z", "X"):
            members.append(int(entry))
    return members


def _kill_group(pgid):
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _marker_line(stderr, mark):
    for line in stderr.splitlines():
        if line.startswith(mark):
            return line[len(mark):].strip()
    return None


def _first_error_line(stderr):
    """The line that names the error: the last line shaped like 'SomeError: ...'
    of the first traceback, else the last non-empty line."""
    lines = [ln.rstrip() for ln in stderr.splitlines() if ln.strip()]
    for i, line in enumerate(lines):
        if line.startswith("Traceback (most recent call last)"):
            for follow in lines[i + 1:]:
                if not follow.startswith((" ", "\t")) and not follow.startswith("Traceback"):
                    return follow
    return lines[-1] if lines else ""


def _tail(text, n=1500):
    return text if len(text) <= n else "..." + text[-n:]


def run(interpreter, script, args, timeout, cwd=None, env=None):
    """Run ``interpreter script *args``; return an Outcome."""
    cmd = [interpreter, str(script), *args]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.monotonic()
        try:
            proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                    start_new_session=True, cwd=cwd, env=env)
        except OSError as exc:
            return Outcome("error", message=f"cannot start {interpreter}: {exc}")
        hung = False
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            hung = True
            _kill_group(proc.pid)
            proc.wait()
        wall = time.monotonic() - t0
        notes = []
        if not hung:
            deadline = time.monotonic() + 3.0
            while _group_members(proc.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            left = _group_members(proc.pid)
            if left:
                notes.append(f"{len(left)} process(es) still running 3 s after exit; killed")
                _kill_group(proc.pid)
        else:
            _kill_group(proc.pid)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        stderr = err.read().decode("utf-8", "replace")

    outcome = Outcome("error", wall_s=wall, stderr_tail=_tail(stderr), notes=notes)
    rc = proc.returncode
    if hung:
        outcome.status = "hang"
        outcome.message = f"killed after {timeout:g} s"
        return outcome
    if rc == 0:
        lines = [ln for ln in stdout.splitlines() if ln.strip()]
        if len(lines) != 1:
            outcome.message = f"expected one JSON line on stdout, got {len(lines)} lines"
            return outcome
        try:
            record = json.loads(lines[0])
            value = float(record["value"])
        except (ValueError, KeyError, TypeError) as exc:
            outcome.message = f"bad result line ({exc}): {lines[0][:200]}"
            return outcome
        outcome.status, outcome.record, outcome.value = "ok", record, value
        return outcome
    wrong = _marker_line(stderr, WRONG_MARK)
    unsupported = _marker_line(stderr, UNSUPPORTED_MARK)
    if rc == EXIT_WRONG and wrong is not None:
        outcome.status, outcome.message = "wrong", wrong
    elif rc == EXIT_UNSUPPORTED and unsupported is not None:
        outcome.status, outcome.message = "unsupported", unsupported
    else:
        reason = _marker_line(stderr, ERROR_MARK) or _first_error_line(stderr)
        how = f"killed by signal {-rc}" if rc < 0 else f"exit code {rc}"
        outcome.message = f"{how}: {reason}" if reason else how
    return outcome
