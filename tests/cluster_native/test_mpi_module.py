"""_mphost_mpi, the MPI link's Python module: the round trips run as two
ranks of mpiexec (mpi_module_echo.py), over TCP and over shared memory; the
checks that need no MPI job run here."""
import os
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
LAUNCHER = os.environ.get('MPHOST_LAUNCHER') or os.path.join(ROOT, 'build', 'bin', 'mphost')
MODULE_DIR = os.environ.get('MPHOST_MPI_MODULE_DIR') or os.path.join(ROOT, 'build', 'lib', 'mphost')
MPIEXEC = os.environ.get('MPIEXEC') or 'mpiexec'
SCRIPT = os.path.join(HERE, 'mpi_module_echo.py')


def run_job(mode, btl, timeout=240):
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT='1', OMPI_ALLOW_RUN_AS_ROOT_CONFIRM='1',
               MPHOST_MPI_MODULE_DIR=MODULE_DIR)
    cmd = [MPIEXEC, '--oversubscribe', '--mca', 'btl', f'self,{btl}', '-n', '2', LAUNCHER, SCRIPT, mode]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope='module')
def module():
    sys.path.insert(0, MODULE_DIR)
    try:
        import _mphost_mpi
    finally:
        sys.path.remove(MODULE_DIR)
    return _mphost_mpi


@pytest.mark.parametrize('btl', ['tcp', 'vader'])
def test_round_trips_between_two_ranks(btl):
    done = run_job('check', btl)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    for step in ('errors', 'blocks', 'numpy', '100 MB part', 'many in flight', 'release'):
        assert f'ok {step}' in done.stdout, out
    assert 'ALL OK' in done.stdout, out


def test_abort_ends_every_rank():
    started = time.monotonic()
    done = run_job('abort', 'tcp', timeout=100)
    assert done.returncode != 0, done.stdout + done.stderr
    assert time.monotonic() - started < 90
    assert 'MPI_ABORT' in done.stderr or 'MPI_Abort' in done.stderr, done.stderr


def test_exit_without_finalize_finalizes_at_teardown():
    done = run_job('teardown', 'vader', timeout=100)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert 'ALL OK' in done.stdout, out
    assert 'without calling' not in done.stderr, out


def test_calls_before_init_raise(module):
    for call, args in ((module.send, (0, 1, b'', [])), (module.receive, ()), (module.pending, ()),
                       (module.fileno, ()), (module.rank, ())):
        with pytest.raises(RuntimeError, match='the MPI link is not running'):
            call(*args)


def test_module_surface(module):
    for name in ('init', 'rank', 'size', 'host', 'fileno', 'send', 'receive', 'pending', 'finalize',
                 'abort', 'Block'):
        assert hasattr(module, name), name
    with pytest.raises(TypeError):
        module.Block()
    module.finalize()  # nothing to finalize: no error
