"""Where workers run. Under `mpiexec ... mphost --cluster=mpi` the default
Pool, get_context("mpi").Pool() and ProcessPoolExecutor() put their workers
on the other ranks, while get_context("fork").Pool() and Process stay on rank
0. Run by stock python3 (no MPI: no "mpi" context, every worker local) the
program prints the same lines: each line is a boolean saying whether the
placement is the one expected where the program runs."""
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

RANK_VARIABLE = 'OMPI_COMM_WORLD_RANK'


def on_cluster():
    """Whether this program runs as rank 0 of an MPI job (mpiexec sets the
    rank in the environment); stock python3 without mpiexec: no."""
    return os.environ.get(RANK_VARIABLE) is not None


def where(x):
    return os.environ.get(RANK_VARIABLE), os.getppid(), os.getpid(), x * 2


def expect_remote(reports, main_pid):
    """Workers on other ranks when clustered, local children otherwise."""
    results = [r[3] for r in reports]
    if on_cluster():
        placed = all(rank not in (None, '0') for rank, _, _, _ in reports)
        placed = placed and all(ppid != main_pid for _, ppid, _, _ in reports)
    else:
        placed = all(rank is None and ppid == main_pid for rank, ppid, _, _ in reports)
    return placed, results


def expect_local(reports, main_pid):
    """Workers are this process's children, wherever it runs."""
    expected_rank = '0' if on_cluster() else None
    placed = all(rank == expected_rank and ppid == main_pid for rank, ppid, _, _ in reports)
    return placed, [r[3] for r in reports]


def mpi_context():
    try:
        return multiprocessing.get_context('mpi')
    except ValueError:
        if on_cluster():
            raise
        return multiprocessing.get_context()


def child(queue):
    queue.put(where(21))


def main():
    me = os.getpid()
    with multiprocessing.Pool(2) as pool:
        print('default Pool workers placed as expected', *expect_remote(pool.map(where, range(4), chunksize=1), me))
    with multiprocessing.Pool() as pool:
        print('Pool() placed as expected', *expect_remote(pool.map(where, range(3)), me))
    with mpi_context().Pool(2) as pool:
        print('mpi context Pool placed as expected', *expect_remote(pool.map(where, range(4)), me))
    with multiprocessing.get_context('fork').Pool(2) as pool:
        print('fork context Pool stays local', *expect_local(pool.map(where, range(4)), me))
    with ProcessPoolExecutor(max_workers=2) as ex:
        print('executor placed as expected', *expect_remote(list(ex.map(where, range(4))), me))
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context('fork')) as ex:
        print('fork executor stays local', *expect_local(list(ex.map(where, range(4))), me))

    q = multiprocessing.Queue()
    p = multiprocessing.Process(target=child, args=(q,))
    p.start()
    report = q.get(timeout=60)
    p.join(60)
    print('Process stays local', *expect_local([report], me), p.exitcode)
    print('the program itself is rank 0 where clustered',
          os.environ.get(RANK_VARIABLE) == ('0' if on_cluster() else None))


if __name__ == '__main__':
    main()
