"""Real clients of multiprocessing, unmodified, as tests.

Run under mphost: `build/bin/mphost -m pytest tests/clients`. Each test runs a
small program written against a library's public API under mphost and under
stock /usr/bin/python3, each in its own process group with a timeout (a hang
is killed and fails), and requires the same exit status and the same standard
output. After the mphost run no /dev/shm name of mphost created meanwhile may
be left: when the machine allows it (root), each program runs with a /dev/shm
of its own (a mount namespace), so that what is left is exactly its own; else
names are compared before and after the run. The wall times of both runs are kept: a table is printed at the end
of the session and written to client-times.json in the build directory (next
to bin/mphost).
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

STOCK = '/usr/bin/python3'
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _mphost_executable():
    explicit = os.environ.get('MPHOST')
    if explicit:
        return explicit
    if os.path.realpath(sys.executable) != os.path.realpath(STOCK) and 'mphost' in sys.executable:
        return sys.executable
    return os.path.join(ROOT, 'build', 'bin', 'mphost')


MPHOST = _mphost_executable()
_TIMES = []  # (test id, mphost seconds, stock seconds, verdict)


def _shm_names():
    try:
        return {n for n in os.listdir('/dev/shm') if n.startswith('mphost')}
    except FileNotFoundError:
        return set()


def _private_shm_works():
    """Whether a program can get a /dev/shm of its own (a mount namespace
    with a fresh tmpfs): then its leftovers are exactly its own, whatever
    else runs on the machine. Needs root; otherwise names are compared
    before and after the run."""
    try:
        probe = subprocess.run(['unshare', '-m', '--propagation', 'private', 'sh', '-c',
                                'mount -t tmpfs -o mode=1777 tmpfs /dev/shm && ls -A /dev/shm'],
                               capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0 and probe.stdout.strip() == b''


PRIVATE_SHM = _private_shm_works()
# $0 program, $1 script, $2 file for the names left in the private /dev/shm
_IN_PRIVATE_SHM = ('mount -t tmpfs -o mode=1777 tmpfs /dev/shm || exit 97; '
                   '"$0" "$1"; status=$?; ls -A /dev/shm > "$2"; exit $status')


def _run(executable, script, cwd, timeout):
    """(status, stdout, stderr, seconds, names of mphost left in /dev/shm)."""
    listing = os.path.join(cwd, 'shm-left.txt')
    if PRIVATE_SHM:
        argv = ['unshare', '-m', '--propagation', 'private', 'sh', '-c', _IN_PRIVATE_SHM,
                executable, script, listing]
    else:
        argv = [executable, script]
        before = _shm_names()
    started = time.monotonic()
    proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, env=dict(os.environ, PYTHONHASHSEED='0'))
    try:
        out, err = proc.communicate(timeout=timeout)
        status = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        status = 'hang: killed after %g s' % timeout
    seconds = time.monotonic() - started
    try:  # whatever the program left running in its group
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if PRIVATE_SHM:
        try:
            with open(listing) as f:
                left = {n for n in f.read().split() if n.startswith('mphost')}
        except FileNotFoundError:
            left = set()
    else:
        # names of ours removed late get a moment; names of other programs
        # running meanwhile cannot be told apart, except registries (root pid)
        left = _shm_names() - before
        deadline = time.monotonic() + 2.0
        while left and time.monotonic() < deadline:
            time.sleep(0.1)
            left &= _shm_names()
        left = {n for n in left
                if not n.startswith('mphost-reg-') or n.startswith('mphost-reg-%d-' % proc.pid)}
    return status, out.decode(errors='replace'), err.decode(errors='replace'), seconds, left


def _tail(text, lines=25):
    return '\n'.join(text.rstrip().splitlines()[-lines:])


@pytest.fixture
def client_program(request, tmp_path):
    """client_program(source, timeout=60): run source under mphost and stock;
    fail unless both end with status 0 and print the same thing, and unless
    mphost left no name of its own in /dev/shm. Returns mphost's stdout."""

    def run(source, timeout=60):
        if not os.path.exists(STOCK):
            pytest.skip('stock python3 is not installed')
        script = tmp_path / 'client.py'
        script.write_text(textwrap.dedent(source))
        stock = _run(STOCK, str(script), str(tmp_path), timeout)
        mine = _run(MPHOST, str(script), str(tmp_path), timeout)
        leftovers = mine[4]
        ok = (stock[0] == 0 and mine[0] == 0 and stock[1] == mine[1] and not leftovers)
        _TIMES.append((request.node.nodeid, mine[3], stock[3], 'same' if ok else 'DIFFERENT'))
        problems = []
        if stock[0] != 0:
            problems.append('stock exit status %s\nstock stderr:\n%s' % (stock[0], _tail(stock[2])))
        if mine[0] != stock[0]:
            problems.append('exit status: mphost %s, stock %s\nmphost stderr:\n%s'
                            % (mine[0], stock[0], _tail(mine[2])))
        if mine[1] != stock[1]:
            problems.append('stdout differs\n--- stock\n%s\n--- mphost\n%s\nmphost stderr:\n%s'
                            % (_tail(stock[1]), _tail(mine[1]), _tail(mine[2])))
        if leftovers:
            problems.append('/dev/shm names left by the mphost run: %s' % sorted(leftovers))
        if problems:
            pytest.fail('\n'.join(problems) + '\n(mphost %.1fs, stock %.1fs)' % (mine[3], stock[3]),
                        pytrace=False)
        return mine[1]

    return run


def pytest_terminal_summary(terminalreporter):
    if not _TIMES:
        return
    tr = terminalreporter
    tr.section('real clients: wall time under mphost and stock')
    width = max(len(t[0]) for t in _TIMES)
    tr.write_line('%-*s  %8s  %8s  %6s  %s' % (width, 'test', 'mphost', 'stock', 'ratio', 'result'))
    for nodeid, mine, stock, verdict in _TIMES:
        tr.write_line('%-*s  %7.2fs  %7.2fs  %6.2f  %s' % (width, nodeid, mine, stock,
                                                         mine / stock if stock else 0.0, verdict))
    build_dir = os.path.dirname(os.path.dirname(os.path.abspath(MPHOST)))
    if not os.path.exists(os.path.join(build_dir, 'bin', 'mphost')):
        build_dir = os.path.join(ROOT, 'build')
    path = os.path.join(build_dir, 'client-times.json')
    try:
        with open(path, 'w') as f:
            json.dump([dict(test=n, mphost_seconds=round(m, 3), stock_seconds=round(s, 3), result=v)
                       for n, m, s, v in _TIMES], f, indent=1)
        tr.write_line('written to %s' % path)
    except OSError as e:
        tr.write_line('could not write %s: %s' % (path, e))
