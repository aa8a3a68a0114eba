"""Shared pieces of the cluster tests: where mphost and its MPI module are,
and one way to run a command with a timeout (a hang is killed with its whole
process group, mpiexec and every rank, and reported as such).

The tests are run by stock python3 (`/usr/bin/python3 -m pytest tests/cluster`);
they start `mpiexec ... mphost --cluster=mpi` themselves. MPHOST=path selects
another mphost launcher (default: build/bin/mphost in this tree)."""

import glob
import os
import shutil
import signal
import subprocess
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
STOCK = '/usr/bin/python3'
MPHOST = os.environ.get('MPHOST') or os.path.join(ROOT, 'build', 'bin', 'mphost')
BUILD = os.path.dirname(os.path.dirname(os.path.realpath(MPHOST)))
MPI_MODULES = glob.glob(os.path.join(BUILD, 'lib', 'mphost', '_mphost_mpi*.so'))
MPIEXEC = shutil.which('mpiexec')

# OpenMPI refuses root without these; the machine has fewer cores than ranks.
MPI_ENV = {
    'OMPI_ALLOW_RUN_AS_ROOT': '1',
    'OMPI_ALLOW_RUN_AS_ROOT_CONFIRM': '1',
    'OMPI_MCA_rmaps_base_oversubscribe': '1',
}
# btl names: TCP as between hosts, vader is OpenMPI's shared memory.
TRANSPORTS = {'tcp': 'self,tcp', 'shm': 'self,vader'}


def missing_reason():
    if not os.access(MPHOST, os.X_OK):
        return f'no mphost launcher at {MPHOST} (build first)'
    if not MPI_MODULES:
        return f'mphost was built without its MPI module (no _mphost_mpi*.so in {BUILD}/lib/mphost)'
    if MPIEXEC is None:
        return 'mpiexec not found (install openmpi-bin)'
    return None


def mpiexec_argv(ranks, transport, *args, mphost_flags=('--cluster=mpi',)):
    """mpiexec with `ranks` ranks over the named transport running mphost.
    pml ob1 makes the btl choice the one in use (UCX would bypass it)."""
    return [MPIEXEC, '--oversubscribe', '-n', str(ranks), '--mca', 'pml', 'ob1',
            '--mca', 'btl', TRANSPORTS[transport], MPHOST, *mphost_flags, *args]


class Run:
    def __init__(self, argv, code, out, err, seconds, hung):
        self.argv, self.code, self.out, self.err = argv, code, out, err
        self.seconds, self.hung = seconds, hung

    def describe(self):
        state = f'HUNG, killed after {self.seconds:.0f} s' if self.hung else f'exit {self.code}'
        return (f'$ {" ".join(self.argv)}\n{state}, {self.seconds:.1f} s\n'
                f'--- stdout ---\n{self.out[-4000:]}\n--- stderr ---\n{self.err[-4000:]}')


def run(argv, timeout, env_extra=None, cwd=None):
    # Unbuffered: the lines printed before a hang show where it hung.
    env = dict(os.environ, PYTHONUNBUFFERED='1', **MPI_ENV)
    env.update(env_extra or {})
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True, env=env,
                            cwd=cwd or ROOT)
    hung = False
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        hung = True
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    finally:
        # Whatever a rank left behind in the group (it ends with mpiexec).
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return Run(argv, proc.returncode, out.decode(errors='replace'), err.decode(errors='replace'),
               time.monotonic() - started, hung)


def need_cluster():
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
