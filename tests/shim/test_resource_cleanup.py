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


DYING_CHILD = textwrap.dedent('''
    import multiprocessing as mp
    import os
    import signal
    import sys
    import time

    def mapped_names():
        names = set()
        with open('/proc/self/maps') as f:
            for line in f:
                fields = line.split(None, 5)
                if len(fields) == 6:
                    path = fields[5].strip()
                    if path.startswith('/dev/shm/mphost-') and not path.endswith('(deleted)'):
                        names.add(path[len('/dev/shm/'):])
        return names

    def report(path, pid, names):
        with open(path + '.tmp', 'w') as f:
            f.write(' '.join([str(pid)] + sorted(names)))
        os.rename(path + '.tmp', path)

    def make_and_leave(method, how, path):
        ctx = mp.get_context(method)
        q = ctx.Queue()
        q.put('small')
        q.put(b'q' * (1 << 20))
        r, w = ctx.Pipe()
        w.send('small')
        w.send(b'p' * (1 << 20))
        s = ctx.SimpleQueue()
        s.put(b's' * (300 << 10))
        time.sleep(0.2)  # the queue's puts are in the channel
        report(path, os.getpid(), mapped_names())
        if how == 'exit':
            os._exit(7)
        os.kill(os.getpid(), signal.SIGKILL)

    def orphan(method, path):
        # Runs on after its parent was killed and the root has ended; lets go
        # of the root's output so that whoever reads it sees its end.
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        deadline = time.monotonic() + 30
        while os.path.exists(path + '.root') and time.monotonic() < deadline:
            time.sleep(0.01)
        make_and_leave(method, 'exit', path)

    def parent_of_orphan(method, path):
        mp.get_context(method).Process(target=orphan, args=(method, path)).start()
        os.kill(os.getpid(), signal.SIGKILL)

    if __name__ == '__main__':
        method, how, path = sys.argv[1:4]
        ctx = mp.get_context(method)
        if how == 'orphan':
            open(path + '.root', 'w').close()
            p = ctx.Process(target=parent_of_orphan, args=(method, path))
        else:
            p = ctx.Process(target=make_and_leave, args=(method, how, path))
        p.start()
        p.join(60)
        print('EXIT', p.exitcode)
        print('REGISTRY', os.environ.get('MPHOST_REGISTRY', ''))
        print('ROOT', *sorted(mapped_names()), flush=True)
''')


def mphost_names():
    return {n for n in os.listdir('/dev/shm') if n.startswith('mphost-')}


def tree_leftovers(new, names, pids):
    """The names of `new` that belong to the tree: `names`, names derived
    from them, and registries of the tree's processes."""
    found = set()
    for n in new:
        if any(n == t or n.startswith(t + '.') for t in names):
            found.add(n)
        if any(n.startswith('mphost-reg-%d-' % pid) for pid in pids):
            found.add(n)
    return found


def read_report(path, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, 'the child never reported'
        time.sleep(0.02)
    pid, *names = path.read_text().split()
    return int(pid), names


def wait_unmapped(name, timeout=TIMEOUT):
    """Wait until no process maps /dev/shm/<name>."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        mapped = False
        for pid in os.listdir('/proc'):
            if not pid.isdigit():
                continue
            try:
                with open('/proc/%s/maps' % pid) as f:
                    if '/dev/shm/' + name in f.read():
                        mapped = True
                        break
            except OSError:
                continue
        if not mapped:
            return
        time.sleep(0.02)


@pytest.fixture
def dying_child(tmp_path, mphost_executable):
    if not os.path.isdir('/dev/shm'):
        pytest.skip('no /dev/shm')
    path = tmp_path / 'dying.py'
    path.write_text(DYING_CHILD)
    return path


@pytest.mark.parametrize('how', ['kill', 'exit'])
@pytest.mark.parametrize('method', ['fork', 'spawn', 'forkserver'])
def test_names_of_a_child_that_died_go_when_the_root_ends(dying_child, method, how):
    """A child makes a Queue, a Pipe and a SimpleQueue, puts small and large
    messages, and is SIGKILLed or calls os._exit: once the root has ended
    normally, nothing of the tree is in /dev/shm."""
    report_path = dying_child.parent / 'report'
    before = mphost_names()
    proc = subprocess.run([sys.executable, str(dying_child), method, how, str(report_path)],
                          capture_output=True, text=True, timeout=TIMEOUT,
                          env=own_root_environment(), cwd=dying_child.parent)
    after = mphost_names()
    assert proc.returncode == 0, proc.stderr
    out = parse(proc.stdout.splitlines())
    assert out['EXIT'] == [str(-signal.SIGKILL if how == 'kill' else 7)], proc.stdout
    child, names = read_report(report_path, 0)
    # Three channels at least, with the blocks of the large messages.
    assert len(names) >= 3, names
    registry = out['REGISTRY']
    assert registry and registry[0].startswith('mphost-reg-'), proc.stdout
    tree = set(names) | set(registry) | set(out.get('ROOT', []))
    assert tree_leftovers(after - before, tree, [child]) == set()
    assert leftovers(sorted(tree)) == set()


@pytest.mark.parametrize('method', ['fork', 'spawn', 'forkserver'])
def test_names_of_an_orphan_that_outlived_the_root(dying_child, method):
    """A child is killed and leaves an orphan that runs on after the root
    has ended and then makes queues and pipes and calls os._exit. The
    orphan recorded its names in a registry of its own (its root had
    ended), which the next root to start removes with them."""
    report_path = dying_child.parent / 'report'
    # Output to files: processes that outlive the root (the orphan, the
    # tracker it keeps alive) hold them open.
    stdout_path, stderr_path = dying_child.parent / 'out', dying_child.parent / 'err'
    with open(stdout_path, 'w') as stdout, open(stderr_path, 'w') as stderr:
        proc = subprocess.Popen([sys.executable, str(dying_child), method, 'orphan', str(report_path)],
                                stdout=stdout, stderr=stderr, env=own_root_environment(),
                                cwd=dying_child.parent)
        assert proc.wait(TIMEOUT) == 0, stderr_path.read_text()
    out = parse(stdout_path.read_text().splitlines())
    registry = out['REGISTRY']
    assert registry and registry[0].startswith('mphost-reg-'), proc.stdout
    # The root has ended: let the orphan go on.
    os.unlink(str(report_path) + '.root')
    orphan, names = read_report(report_path)
    wait_gone([orphan])
    assert len(names) >= 3, names
    # Its own registry, named after it.
    assert [n for n in names if n.startswith('mphost-reg-%d-' % orphan)], names
    assert not os.path.exists('/dev/shm/' + registry[0])
    # The tracker the orphan kept alive ends after it: the tree is over when
    # no process maps the registries any more.
    for name in [registry[0]] + [n for n in names if n.startswith('mphost-reg-')]:
        wait_unmapped(name)
    nxt = subprocess.run([sys.executable, '-c', 'pass'], capture_output=True, text=True,
                         timeout=TIMEOUT, env=own_root_environment())
    assert nxt.returncode == 0, nxt.stderr
    assert leftovers(names + registry) == set()
