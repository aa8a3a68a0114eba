"""Prints the number of workers of Pool() and of ProcessPoolExecutor() made
with the defaults, and that the workers run."""
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor


def rank_of(x):
    time.sleep(0.02)
    return str(os.environ.get('OMPI_COMM_WORLD_RANK'))


def main():
    with multiprocessing.Pool() as pool:
        print('pool workers', len(pool._pool))
        print('pool ranks', ','.join(sorted(set(pool.map(rank_of, range(16), chunksize=1)))))
    with multiprocessing.get_context('mpi').Pool() as pool:
        print('mpi context pool workers', len(pool._pool))
    with ProcessPoolExecutor() as ex:
        print('executor ranks', ','.join(sorted(set(ex.map(rank_of, range(16))))))
        print('executor workers', ex._max_workers)


if __name__ == '__main__':
    main()
