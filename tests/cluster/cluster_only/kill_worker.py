"""A Pool task and an executor task that SIGKILL their own worker process on
a worker rank (the rank itself lives on). As on one machine under mphost:
Pool.map raises WorkerLostError (naming the host and rank), the executor's
map raises BrokenProcessPool, and a new pool works afterwards."""
import concurrent.futures
import multiprocessing
import multiprocessing.pool
import os
import time


def die(x):
    if x == 1:
        os.kill(os.getpid(), 9)
    time.sleep(0.2)
    return x


def main():
    with multiprocessing.Pool(2) as pool:
        try:
            print(pool.map(die, range(4), chunksize=1))
        except Exception as exc:
            print('pool raised', isinstance(exc, multiprocessing.pool.WorkerLostError), exc, flush=True)
    with concurrent.futures.ProcessPoolExecutor(2) as ex:
        try:
            print(list(ex.map(die, range(4))))
        except Exception as exc:
            print('executor raised', type(exc).__name__, flush=True)
    with multiprocessing.Pool(2) as pool:
        print('new pool', pool.map(abs, [-1, -2]))


if __name__ == '__main__':
    main()
