"""Run without --cluster: a Pool works as usual and nothing of MPI is mapped
into the process."""
import multiprocessing
import os


def mapped_mpi():
    with open('/proc/self/maps') as f:
        return sorted({line.split()[-1] for line in f if 'libmpi' in line or '_mphost_mpi' in line})


def worker_mapped(_):
    return mapped_mpi()


def main():
    print('before', mapped_mpi())
    with multiprocessing.Pool(2) as pool:
        print('workers', pool.map(worker_mapped, range(2)))
        print('pool size', len(pool._pool))
    print('after', mapped_mpi())
    print('rank variable', os.environ.get('OMPI_COMM_WORLD_RANK'))


if __name__ == '__main__':
    main()
