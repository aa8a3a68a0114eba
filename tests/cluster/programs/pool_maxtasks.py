"""Pool with maxtasksperchild: workers replaced after their quota, the
initializer run again in each replacement."""
import multiprocessing
import os
import time

TAG = 'unset'


def init_worker(tag):
    global TAG
    TAG = tag


def tagged(x):
    return f'{TAG}:{x}'


def worker_pid(x):
    time.sleep(0.01)
    return os.getpid()


def main():
    with multiprocessing.Pool(1, maxtasksperchild=1) as pool:
        pids = list(pool.imap(worker_pid, range(20)))
        print('maxtasksperchild=1 one worker', len(pids), 'distinct workers', len(set(pids)))
    with multiprocessing.Pool(2, maxtasksperchild=2) as pool:
        pids = pool.map(worker_pid, range(12), chunksize=1)
        print('maxtasksperchild tasks', len(pids), 'distinct workers >= 6', len(set(pids)) >= 6)
        print('maxtasksperchild again', pool.map(abs, range(-4, 0)))
    with multiprocessing.Pool(2, initializer=init_worker, initargs=('again',), maxtasksperchild=1) as pool:
        print('initializer with maxtasksperchild', sorted(pool.map(tagged, range(5), chunksize=1)))


if __name__ == '__main__':
    main()
