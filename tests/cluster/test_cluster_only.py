"""What only the cluster does, with explicit assertions (stock python3 has no
counterpart): host-bound objects refused by type, a killed worker rank ending
the job without a hang, no MPI loaded without the flag, the flag checked,
and the default number of workers."""

import os
import re

import pytest

from cluster_run import HERE, MPHOST, mpiexec_argv, need_cluster, run

ONLY = os.path.join(HERE, 'cluster_only')
TIMEOUT = 120
PHRASE = 'objects cannot be sent to a worker on another host'


def _program(name):
    return os.path.join(ONLY, name)


@pytest.fixture(scope='module')
def host_bound_lines():
    need_cluster()
    got = run(mpiexec_argv(2, 'tcp', _program('host_bound.py')), TIMEOUT)
    assert not got.hung and got.code == 0, got.describe()
    lines = {}
    for line in got.out.splitlines():
        label, type_name, exc_name, message = line.split('|', 3)
        lines[label] = (type_name, exc_name, message)
    return lines, got


HOST_BOUND = ['Lock', 'RLock', 'Semaphore', 'Event', 'Condition', 'Barrier', 'Queue', 'SimpleQueue',
              'JoinableQueue', 'Value', 'RawValue', 'Array', 'SharedMemory', 'Connection']


@pytest.mark.parametrize('label', HOST_BOUND)
def test_host_bound_argument_refused(host_bound_lines, label):
    lines, got = host_bound_lines
    type_name, exc_name, message = lines[label]
    assert exc_name == 'RuntimeError', got.describe()
    # Named by its class (Synchronized for a Value, c_int for a RawValue) or
    # by the factory that made it; then the reason.
    named = [name for name in {type_name, label} if message.startswith(f'{name} {PHRASE}: ')]
    assert named and len(message) > len(named[0]) + len(PHRASE) + 3, got.describe()


def test_host_bound_in_map_and_result(host_bound_lines):
    lines, got = host_bound_lines
    assert lines['in map'][1] == 'RuntimeError' and lines['in map'][2].startswith(f'Lock {PHRASE}'), got.describe()
    # A Lock made by the task and returned: refused on the way back, the
    # caller gets the reason (stock wraps result errors in MaybeEncodingError).
    assert lines['in result'][1] in ('RuntimeError', 'MaybeEncodingError'), got.describe()
    assert f'Lock {PHRASE}' in lines['in result'][2], got.describe()
    assert lines['after'] == ('pool', 'ok', '[1, 2]'), got.describe()


@pytest.mark.parametrize('ranks,transport', [(3, 'tcp'), (2, 'shm')])
def test_killed_rank_ends_the_job(ranks, transport):
    need_cluster()
    got = run(mpiexec_argv(ranks, transport, _program('kill_rank.py')), 90)
    assert not got.hung, got.describe()
    assert got.code != 0, got.describe()
    assert got.out.startswith('starting\n') and 'result' not in got.out, got.describe()
    # OpenMPI names the rank that died (whichever worker rank ran task 1).
    ranks_named = re.findall(r'process rank (\d+) with PID \d+ on node \S+ exited on signal 9', got.err)
    assert ranks_named and set(ranks_named) <= {str(r) for r in range(1, ranks)}, got.describe()
    if 'mphost: the MPI job is ending' in got.err:
        assert 'another rank died' in got.err, got.describe()


@pytest.mark.parametrize('ranks,transport', [(3, 'tcp'), (2, 'shm')])
def test_killed_worker_process_fails_its_tasks(ranks, transport):
    need_cluster()
    got = run(mpiexec_argv(ranks, transport, _program('kill_worker.py')), 90)
    assert not got.hung and got.code == 0, got.describe()
    lines = got.out.splitlines()
    assert len(lines) == 3, got.describe()
    assert lines[0].startswith('pool raised True '), got.describe()
    # The message names where the worker was: a worker rank, never rank 0.
    assert re.search(r'\brank [1-9]', lines[0]), got.describe()
    assert lines[1:] == ['executor raised BrokenProcessPool', 'new pool [1, 2]'], got.describe()


def test_no_mpi_without_the_flag():
    need_cluster()
    got = run([MPHOST, _program('no_mpi_loaded.py')], TIMEOUT)
    assert not got.hung and got.code == 0, got.describe()
    assert got.out.splitlines() == [
        'before []', 'workers [[], []]', 'pool size 2', 'after []', 'rank variable None']


def test_no_mpi_without_the_flag_under_mpiexec():
    need_cluster()
    got = run(mpiexec_argv(2, 'shm', _program('no_mpi_loaded.py'), mphost_flags=()), TIMEOUT)
    assert not got.hung and got.code == 0, got.describe()
    # Both ranks run the whole program on their own, as any program would.
    assert got.out.count('before []') == 2 and got.out.count('after []') == 2, got.describe()
    assert got.out.count('workers [[], []]') == 2, got.describe()


@pytest.mark.parametrize('flag,names', [
    ('--cluster=bogus', ['bogus', 'mpi']),
    ('--cluster=MPI', ['MPI', 'mpi']),
    ('--workers-per-rank=0', ['--workers-per-rank', '0']),
    ('--workers-per-rank=x', ['--workers-per-rank', 'x']),
])
def test_bad_launcher_option(flag, names):
    need_cluster()
    got = run([MPHOST, flag, _program('no_mpi_loaded.py')], 60)
    assert not got.hung, got.describe()
    assert got.code == 2, got.describe()
    assert got.out == '', got.describe()
    assert got.err.startswith('mphost: ') and all(name in got.err for name in names), got.describe()


def test_single_rank_pool_says_it_needs_ranks():
    need_cluster()
    got = run(mpiexec_argv(1, 'shm', _program('pool_size.py')), 60)
    assert not got.hung, got.describe()
    assert got.code == 1 and got.out == '', got.describe()
    assert 'ValueError: ' in got.err and 'mpiexec -n 2' in got.err, got.describe()


def _sizes(out):
    return dict(line.rsplit(' ', 1) for line in out.splitlines())


@pytest.mark.parametrize('ranks,per_rank,how', [
    (2, 1, None), (3, 1, None), (3, 2, 'flag'), (2, 2, 'env'), (3, 3, 'flag')])
def test_default_worker_count(ranks, per_rank, how):
    need_cluster()
    flags = ['--cluster=mpi'] + (['--workers-per-rank=%d' % per_rank] if how == 'flag' else [])
    env = {'MPHOST_WORKERS_PER_RANK': str(per_rank)} if how == 'env' else None
    got = run(mpiexec_argv(ranks, 'shm', _program('pool_size.py'), mphost_flags=flags), TIMEOUT, env_extra=env)
    assert not got.hung and got.code == 0, got.describe()
    sizes = _sizes(got.out)
    expected = (ranks - 1) * per_rank
    assert sizes['pool workers'] == str(expected), got.describe()
    assert sizes['mpi context pool workers'] == str(expected), got.describe()
    assert sizes['executor workers'] == str(expected), got.describe()
    allowed = {str(r) for r in range(1, ranks)}
    for key in ('pool ranks', 'executor ranks'):
        assert sizes[key] and set(sizes[key].split(',')) <= allowed, got.describe()
