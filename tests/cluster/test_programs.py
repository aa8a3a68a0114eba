"""Each program in programs/ is an ordinary stdlib multiprocessing /
concurrent.futures program. Run by stock python3 (no MPI) and by
`mpiexec -n N mphost --cluster=mpi` (workers on ranks 1..N-1), standard
output and exit status must be the same. A run past its timeout is a hang
and fails. The stock run is made once per program.

CLUSTER_TESTS_FULL=1 runs every program on every (ranks, transport) pair;
by default the large-payload programs run on two pairs only. Some programs
also run with several workers per rank (--workers-per-rank=2 and 3)."""

import functools
import os

import pytest

from cluster_run import HERE, STOCK, mpiexec_argv, need_cluster, run

PROGRAMS = os.path.join(HERE, 'programs')
TIMEOUT = 120
ALL_CASES = [(2, 'tcp'), (3, 'tcp'), (2, 'shm'), (3, 'shm')]
# Programs that move hundreds of MiB: each pair costs seconds on this machine.
HEAVY = {'numpy_payloads.py', 'bytes_payloads.py'}
HEAVY_CASES = [(3, 'tcp'), (2, 'shm')]
# Several workers per rank (the rank's local fast path between its slots).
PER_RANK_CASES = [(3, 'tcp', 2), (2, 'shm', 3)]
PER_RANK_PROGRAMS = {'pool_map.py', 'pool_lifecycle.py', 'pool_maxtasks.py', 'executor.py', 'numpy_payloads.py'}


def _programs():
    return sorted(n for n in os.listdir(PROGRAMS) if n.endswith('.py') and not n.startswith('_'))


def _cases():
    full = os.environ.get('CLUSTER_TESTS_FULL') == '1'
    for name in _programs():
        for ranks, transport in (ALL_CASES if full or name not in HEAVY else HEAVY_CASES):
            yield pytest.param(name, ranks, transport, 1, id=f'{name[:-3]}-n{ranks}-{transport}')
        if name in PER_RANK_PROGRAMS:
            for ranks, transport, per_rank in PER_RANK_CASES[:None if full or name not in HEAVY else 1]:
                yield pytest.param(name, ranks, transport, per_rank,
                                   id=f'{name[:-3]}-n{ranks}-{transport}-{per_rank}perrank')


@functools.lru_cache(maxsize=None)
def stock_run(name):
    return run([STOCK, os.path.join(PROGRAMS, name)], TIMEOUT, cwd=PROGRAMS)


@pytest.mark.parametrize('name,ranks,transport,per_rank', list(_cases()))
def test_same_output_as_stock(name, ranks, transport, per_rank):
    need_cluster()
    expected = stock_run(name)
    assert not expected.hung and expected.code == 0, expected.describe()
    flags = ('--cluster=mpi',) + ((f'--workers-per-rank={per_rank}',) if per_rank != 1 else ())
    got = run(mpiexec_argv(ranks, transport, os.path.join(PROGRAMS, name), mphost_flags=flags),
              TIMEOUT, cwd=PROGRAMS)
    assert not got.hung, got.describe()
    assert got.code == expected.code, got.describe()
    assert got.out == expected.out, got.describe()
