"""Helpers of the shared-state tests (shared_memory, sharedctypes, heap,
resource_tracker): leak checks on /dev/shm, whole programs run under mphost
or stock python3, process identities."""

import os
import secrets
import subprocess
import sys
import textwrap
import time

MPHOST = sys.executable
STOCK_PYTHON = '/usr/bin/python3'
SHM_DIR = '/dev/shm'
TIMEOUT = 60


def shm_names():
    return set(os.listdir(SHM_DIR))


def shm_exists(name):
    """`name` as SharedMemory reports it (no leading slash)."""
    return os.path.exists(os.path.join(SHM_DIR, name.lstrip('/')))


def unique_prefix():
    """A segment-name prefix no other test (or other person's test) uses."""
    return 'mphtest_%d_%s_' % (os.getpid(), secrets.token_hex(3))


def wait_until(predicate, timeout=TIMEOUT, interval=0.05):
    """Poll `predicate` until true; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


# What /proc/PID/fd/N links to for a descriptor of a heap arena (a memfd).
ARENA_LINK = '/memfd:mph-arena'


def arena_entries():
    """Arena segments visible in /dev/shm: there should never be any (an
    arena is a memfd, which has no name)."""
    return {n for n in shm_names() if n.startswith('mph-arena-')}


def run_program(code, executable=None, env=None, timeout=TIMEOUT, cwd=None, args=()):
    """Run `code` as a script (a file, so that spawn can import it) and
    return the CompletedProcess (text output)."""
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, 'program.py')
        with open(path, 'w') as f:
            f.write(textwrap.dedent(code))
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        return subprocess.run([executable or MPHOST, path] + list(args), capture_output=True,
                              text=True, timeout=timeout, env=full_env, cwd=cwd or tmp)


def start_program(code, path, env=None, new_session=False):
    """Start `code` (written to `path`) under mphost, stdout piped."""
    with open(path, 'w') as f:
        f.write(textwrap.dedent(code))
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    return subprocess.Popen([MPHOST, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=full_env, start_new_session=new_session,
                            cwd=os.path.dirname(str(path)))


def process_identity(pid):
    """(pid, start time) as /proc/<pid>/stat field 22 gives it."""
    with open('/proc/%d/stat' % pid, 'rb') as f:
        data = f.read()
    return pid, int(data[data.rindex(b')') + 2:].split()[19])
