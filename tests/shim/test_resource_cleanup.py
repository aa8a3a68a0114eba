"""No shared memory of a program outlives it, however its processes ended.

Each test runs a whole mphost program as a root of its own (without the
registry of the mphost running these tests). Its processes report every
mphost segment they have mapped (from /proc/self/maps), which identifies
the program's names even while other programs create and remove their own
in /dev/shm. After the program is over those names, the extra rings and
blocks named after them, and the program's registry must all be gone."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

TIMEOUT = 60
REGISTRY_VARIABLE = 'MPHOST_REGISTRY'

PROGRAM = textwrap.dedent('''
    import multiprocessing as mp
    import os
    import signal
    import sys
    import time

    def mapped_names():
        """The mphost segments this process has mapped and not yet removed."""
        names = set()
        with open('/proc/self/maps') as f:
            for line in f:
                fields = line.split(None, 5)
                if len(fields) < 6:
                    continue
                path = fields[5].strip()
                if path.startswith('/dev/shm/mphost-') and not path.endswith('(deleted)'):
                    names.add(path[len('/dev/shm/'):])
        return names

    def holder(report):
        # Objects of this child alone: nobody else knows their names.
        q = mp.Queue()
        q.put(b'q' * (4 << 20))
        q.put('small')
        r, w = mp.Pipe(duplex=False)
        w.send(b'p' * (2 << 20))
        lock = mp.Lock()
        lock.acquire()
        report.put((os.getpid(), sorted(mapped_names())))
        time.sleep(600)

    def slow(x):
        time.sleep(600)

    if __name__ == '__main__':
        ctx = mp.get_context(sys.argv[1])
        kill_root = sys.argv[2] == 'kill-root'
        report = ctx.Queue()
        procs = [ctx.Process(target=holder, args=(report,)) for _ in range(2)]
        for p in procs:
            p.start()
        names = set()
        pids = []
        for _ in procs:
            pid, child_names = report.get(timeout=60)
            pids.append(pid)
            names.update(child_names)
        pool = ctx.Pool(2)
        pool.map_async(slow, range(4))
        time.sleep(0.5)
        pids += [w.pid for w in pool._pool]
        names.update(mapped_names())
        print('REGISTRY', os.environ.get('MPHOST_REGISTRY', ''))
        print('PIDS', *pids)
        print('NAMES', *sorted(names), flush=True)
        if kill_root:
            print('WAITING', flush=True)
            time.sleep(600)
        for w in pool._pool:
            os.kill(w.pid, signal.SIGKILL)
        for p in procs:
            os.kill(p.pid, signal.SIGKILL)
        for p in procs:
            p.join()
        pool.terminate()
        print('DONE', [p.exitcode for p in procs], flush=True)
''')


def own_root_environment():
    """The environment of a program that is a root, not a member of the
    program running these tests."""
    env = dict(os.environ)
    env.pop(REGISTRY_VARIABLE, None)
    return env


def leftovers(names):
    """Which of `names`, or names derived from them (`<name>.<suffix>`), are
    still in /dev/shm."""
    present = set(os.listdir('/dev/shm'))
    found = set()
    for name in names:
        found.update(n for n in present if n == name or n.startswith(name + '.'))
    return found


def parse(lines):
    out = {}
    for line in lines:
        key, _, rest = line.partition(' ')
        out[key] = rest.split()
    return out


def wait_gone(pids, timeout=10):
    deadline = time.monotonic() + timeout
    for pid in pids:
        while time.monotonic() < deadline:
            try:
                with open('/proc/%d/stat' % pid) as f:
                    state = f.read().rpartition(')')[2].split()[0]
            except OSError:
                break
            if state in ('Z', 'X'):
                break
            time.sleep(0.01)


@pytest.fixture
def program(tmp_path, mphost_executable):
    if not os.path.isdir('/dev/shm'):
        pytest.skip('no /dev/shm')
    path = tmp_path / 'prog.py'
    path.write_text(PROGRAM)
    return path


@pytest.mark.parametrize('method', ['fork', 'spawn', 'forkserver'])
def test_names_of_killed_children_and_pool_workers_go_with_the_root(program, method):
    proc = subprocess.run([sys.executable, str(program), method, 'kill-children'],
                          capture_output=True, text=True, timeout=TIMEOUT,
                          env=own_root_environment(), cwd=program.parent)
    assert proc.returncode == 0, proc.stderr
    report = parse(proc.stdout.splitlines())
    # Both holders were killed, and say so.
    codes = [int(c) for c in ''.join(report['DONE']).strip('[]').split(',')]
    assert codes == [-signal.SIGKILL] * 2, proc.stdout
    registry = report['REGISTRY']
    assert registry and registry[0].startswith('mphost-reg-'), proc.stdout
    names = report['NAMES']
    # Each holder made a queue, a pipe and a lock of its own.
    assert len(names) >= 6, names
    assert leftovers(names + registry) == set()


@pytest.mark.parametrize('method', ['fork', 'spawn', 'forkserver'])
def test_names_of_a_killed_root_are_swept_by_the_next_root(program, method):
    proc = subprocess.Popen([sys.executable, str(program), method, 'kill-root'],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=own_root_environment(), cwd=program.parent,
                            start_new_session=True)
    lines = []
    try:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip('\n'))
            if line.startswith('WAITING'):
                break
        report = parse(lines)
        assert 'WAITING' in report, (lines, proc.stderr.read() if proc.poll() is not None else '')
        pids = [int(p) for p in report['PIDS']]
        # The whole tree dies at once; nobody runs a clean-up.
        os.killpg(proc.pid, signal.SIGKILL)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(TIMEOUT)
        proc.stdout.close()
        proc.stderr.close()
    wait_gone(pids)
    names = report['NAMES']
    registry = report['REGISTRY']
    assert registry and registry[0].startswith('mphost-reg-'), lines
    assert len(names) >= 6, names
    # Killed outright, the tree removed nothing; the next root to start
    # (this one, unless another program's start came first) sweeps it all.
    nxt = subprocess.run([sys.executable, '-c', 'pass'], capture_output=True, text=True,
                         timeout=TIMEOUT, env=own_root_environment())
    assert nxt.returncode == 0, nxt.stderr
    assert leftovers(names + registry) == set()


def test_a_program_started_inside_another_joins_its_registry(mphost_executable):
    """sys.executable run as a subprocess is part of this program's tree: it
    records into the running root's registry instead of making its own."""
    ours = os.environ.get(REGISTRY_VARIABLE)
    if not ours:
        pytest.skip('not running under an mphost root')
    proc = subprocess.run([sys.executable, '-c',
                           'import os; print(os.environ.get(%r))' % REGISTRY_VARIABLE],
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [ours]
    assert os.path.exists('/dev/shm/' + ours)
