"""Run by examples/cpp/embed_pool: a Pool under spawn inside an application.

The workers are started as the `mphost` executable and import this file as
their main module (__mp_main__), so the function below is found there.
"""
import multiprocessing
import os
import sys


def square(n):
    return n * n, os.getpid()


def main():
    assert multiprocessing.get_start_method() == 'spawn', multiprocessing.get_start_method()
    with multiprocessing.Pool(4) as pool:
        results = pool.map(square, range(10))
    squares = [value for value, _ in results]
    workers = {pid for _, pid in results}
    assert os.getpid() not in workers
    print('squares:', squares)
    print('sum:', sum(squares))
    print('worker executable:', os.path.basename(multiprocessing.spawn.get_executable()))
    print('interpreter:', sys.version.split()[0])


if __name__ == '__main__':
    main()
