"""Finding and killing every process descended from one process (Linux /proc).

The multiprocessing suites start pools, managers, forkserver zygotes and
resource trackers; a test that hangs leaves all of them behind, and some are
re-parented when their parent dies. The harness therefore runs each suite
under a *subreaper* (prctl PR_SET_CHILD_SUBREAPER, see _reaper.py): orphans
of the suite are re-parented to the subreaper instead of to init, so "every
descendant of the subreaper" is exactly the suite's processes, whatever
session or process group they moved to.
"""

from __future__ import annotations

import ctypes
import os
import signal
import time

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> None:
    """Make orphaned descendants of this process its children (Linux >= 3.4)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(errno)}")


def die_with_parent(signum: int) -> None:
    """Have the kernel send signum to this process when the thread that started it ends."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl(PR_SET_PDEATHSIG): {os.strerror(errno)}")


def _parent_table() -> dict[int, int]:
    """pid -> parent pid of every process visible in /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                data = stat.read()
        except OSError:
            continue  # exited meanwhile
        # "pid (comm) state ppid ..."; comm may hold spaces and parentheses
        fields = data[data.rfind(b")") + 2:].split()
        if len(fields) >= 2:
            table[int(entry)] = int(fields[1])
    return table


def descendants(root: int) -> list[int]:
    """Pids of all live descendants of root (not root itself), parents first."""
    children: dict[int, list[int]] = {}
    for pid, ppid in _parent_table().items():
        children.setdefault(ppid, []).append(pid)
    found = []
    frontier = [root]
    while frontier:
        pid = frontier.pop(0)
        for child in children.get(pid, ()):
            found.append(child)
            frontier.append(child)
    return found


def command_line(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            raw = cmdline.read()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode("utf-8", "replace").strip()


def is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            data = stat.read()
    except OSError:
        return True
    return data[data.rfind(b")") + 2:][:1] == b"Z"


def reap_children() -> int:
    """Collect every exited child without blocking; how many were collected."""
    reaped = 0
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return reaped
        if pid == 0:
            return reaped
        reaped += 1


def kill_descendants(root: int, timeout: float = 10.0) -> list[int]:
    """SIGKILL every descendant of root until none is left; pids killed.

    Processes are stopped first so that none can fork while the tree is being
    walked. When root is this process and a subreaper, the killed processes
    are reaped here; zombies of other parents are left to them.
    """
    killed: list[int] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        live = [pid for pid in descendants(root) if not is_zombie(pid)]
        if not live:
            break
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            for pid in live:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        killed.extend(pid for pid in live if pid not in killed)
        if root == os.getpid():
            reap_children()
        time.sleep(0.05)
    if root == os.getpid():
        reap_children()
    return killed
