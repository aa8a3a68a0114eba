"""Scale limits, bounded for CI (tools/reliability/scale.py measures the
full figures beside stock): many children alive at once, each with its own
Queue, under fork and spawn; many queues in one process at no more
descriptors than the stdlib's; one message of several GiB. Each program
runs in a process of its own with a timeout: a limit must be a clear error,
never a hang."""

import os
import resource
import subprocess
import sys
import textwrap

import pytest

import multiprocessing
from multiprocessing import connection

# About 90 s of a CI run: a step of its own in tools/dev.sh sets this; the
# shim suite as a whole leaves these tests out.
pytestmark = pytest.mark.skipif(os.environ.get('MPHOST_SCALE_TESTS') != '1',
                                reason='scale tests run as their own step (MPHOST_SCALE_TESTS=1, tools/dev.sh)')

TREE = textwrap.dedent('''
    import multiprocessing as mp, sys, time

    def child(q, i, go):
        q.put(i)
        go.wait(300)  # every child stays alive until all have started

    if __name__ == '__main__':
        n, method = int(sys.argv[1]), sys.argv[2]
        ctx = mp.get_context(method)
        go = ctx.Event()
        qs = [ctx.Queue() for _ in range(n)]
        ps = [ctx.Process(target=child, args=(qs[i], i, go)) for i in range(n)]
        try:
            for p in ps:
                p.start()
            got = sorted(q.get(timeout=60) for q in qs)
            alive = sum(p.is_alive() for p in ps)
        finally:
            go.set()
        for p in ps:
            p.join(60)
        assert got == list(range(n)), got[:10]
        assert [p.exitcode for p in ps] == [0] * n
        print('ok', alive)
''')


def run_program(tmp_path, source, *args, timeout, nofile=None):
    path = tmp_path / 'prog.py'
    path.write_text(source)
    limit = None
    if nofile is not None:
        def limit():
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    proc = subprocess.run([sys.executable, str(path), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=tmp_path, preexec_fn=limit)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.parametrize('method,count', [('fork', 300), ('spawn', 100)])
def test_children_alive_at_once_each_with_its_own_queue(tmp_path, method, count):
    # A fork child inherits a place in every channel of its parent; the
    # tables once held 256 places and every close read /proc for each.
    out = run_program(tmp_path, TREE, count, method, timeout=240)
    assert out.split() == ['ok', str(count)]  # all alive at once


def test_a_queue_costs_two_descriptors_and_its_reader_stays_selectable():
    n = 2000
    before = len(os.listdir('/proc/self/fd'))
    qs = [multiprocessing.Queue() for _ in range(n)]
    try:
        assert (len(os.listdir('/proc/self/fd')) - before) / n <= 2.0
        qs[-1].put('x')
        assert connection.wait([q._reader for q in qs], timeout=10) == [qs[-1]._reader]
        assert qs[-1].get(timeout=10) == 'x'
        assert connection.wait([qs[0]._reader], timeout=0.05) == []
    finally:
        for q in qs:
            q.close()
            q.join_thread()


QUEUES = textwrap.dedent('''
    import multiprocessing as mp, sys
    n = int(sys.argv[1])
    qs = [mp.Queue() for _ in range(n)]
    for i, q in enumerate(qs):
        q.put(i)
    assert [q.get(timeout=30) for q in qs] == list(range(n))
    try:
        while True:
            qs.append(mp.Queue())
    except OSError as e:
        # Past the descriptor limit: a clear error, as the stdlib's.
        print('ok', len(qs), e.errno)
''')


def test_ten_thousand_queues_in_one_process(tmp_path):
    n = 10_000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 2 * n + 200
    if hard < need:
        pytest.skip(f'RLIMIT_NOFILE hard limit {hard} < {need}: {n} queues need 2 descriptors each, '
                    f'under the stdlib as here')
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    try:
        out = run_program(tmp_path, QUEUES, n, timeout=240)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert out.startswith('ok')
    assert out.split()[2] == '24'  # EMFILE


def test_queues_past_the_descriptor_limit_raise_emfile(tmp_path):
    out = run_program(tmp_path, QUEUES, 400, timeout=120, nofile=1024)
    assert out.startswith('ok')
    made, errno = int(out.split()[1]), int(out.split()[2])
    assert errno == 24
    assert made >= 450  # two descriptors a queue, as the stdlib's


LARGE = textwrap.dedent('''
    import multiprocessing as mp, sys
    size = int(sys.argv[1])
    blob = bytearray(size)
    blob[0], blob[size // 2], blob[-1] = 1, 2, 3
    q = mp.Queue()
    q.put(blob)
    del blob
    got = q.get(timeout=300)
    assert len(got) == size and (got[0], got[size // 2], got[-1]) == (1, 2, 3)
    print('ok')
''')


def _mem_available():
    with open('/proc/meminfo') as f:
        for line in f:
            if line.startswith('MemAvailable:'):
                return int(line.split()[1]) * 1024
    return 0


def test_a_message_of_two_and_a_half_gib_through_a_queue(tmp_path):
    size = 5 * 2**29  # 2.5 GiB
    st = os.statvfs('/dev/shm')
    shm_free = st.f_bavail * st.f_frsize
    if shm_free < 2 * size:
        pytest.skip(f'/dev/shm has {shm_free / 2**30:.1f} GiB free, a {size / 2**30} GiB message needs twice that')
    if _mem_available() < 4 * size:
        pytest.skip(f'{_mem_available() / 2**30:.1f} GiB of memory available, the message needs {4 * size / 2**30} GiB')
    assert run_program(tmp_path, LARGE, size, timeout=240).startswith('ok')
