"""A task that kills, with SIGKILL, the MPI rank process hosting it (the
first ancestor of the task's process whose parent is the MPI launcher or
daemon), on a worker rank (never on rank 0)."""
import multiprocessing
import os
import sys
import time

LAUNCHERS = {'mpiexec', 'mpirun', 'orterun', 'orted', 'prterun', 'prted'}


def command_of(pid):
    with open(f'/proc/{pid}/comm') as f:
        return f.read().strip()


def parent_of(pid):
    with open(f'/proc/{pid}/stat') as f:
        return int(f.read().rsplit(')', 1)[1].split()[1])


def rank_process():
    pid = os.getpid()
    while pid > 1:
        parent = parent_of(pid)
        if command_of(parent) in LAUNCHERS:
            return pid
        pid = parent
    return os.getpid()


def die(x):
    if os.environ.get('OMPI_COMM_WORLD_RANK') in (None, '0'):
        return 'not on a worker rank'
    if x == 1:
        os.kill(rank_process(), 9)
    time.sleep(0.5)
    return x


def main():
    print('starting', flush=True)
    with multiprocessing.Pool() as pool:
        try:
            print('result', pool.map(die, range(4), chunksize=1), flush=True)
        except Exception as exc:
            print('raised', type(exc).__name__, exc, flush=True)
            sys.exit(3)


if __name__ == '__main__':
    main()
