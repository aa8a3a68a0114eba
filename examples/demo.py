"""What mphost is for, in one minute: an unmodified multiprocessing program.

1. CPU-bound work on every core with a Pool, against the same work serially.
2. A queue pipeline: a producer, transforming workers and a consumer.
3. A pool that survives a worker killed in the middle of a task.

Run it with `mphost examples/demo.py`, or with python3 to compare.
"""

import multiprocessing as mp
import os
import signal
import sys
import time


def count_primes(limit):
    """Deliberately plain Python: the GIL would serialize this in threads."""
    count = 0
    for n in range(2, limit):
        d = 2
        while d * d <= n:
            if n % d == 0:
                break
            d += 1
        else:
            count += 1
    return count


def produce(queue, count, workers):
    for i in range(count):
        queue.put(i)
    for _ in range(workers):
        queue.put(None)


def transform(inbox, outbox):
    while (item := inbox.get()) is not None:
        outbox.put(item * item)
    outbox.put(None)


def die_on(x):
    if x == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return x


def cpu_section(cores):
    chunks = [60_000] * (cores * 4)
    start = time.perf_counter()
    serial = [count_primes(c) for c in chunks]
    serial_s = time.perf_counter() - start
    with mp.Pool(cores) as pool:
        start = time.perf_counter()
        parallel = pool.map(count_primes, chunks)
        parallel_s = time.perf_counter() - start
    assert parallel == serial
    print(f'1. CPU-bound work: serial {serial_s:.2f} s, pool of {cores} {parallel_s:.2f} s '
          f'-> {serial_s / parallel_s:.2f}x on {cores} cores')


def pipeline_section(workers, count=200_000):
    inbox, outbox = mp.Queue(), mp.Queue()
    start = time.perf_counter()
    procs = [mp.Process(target=produce, args=(inbox, count, workers))]
    procs += [mp.Process(target=transform, args=(inbox, outbox)) for _ in range(workers)]
    for p in procs:
        p.start()
    total, finished = 0, 0
    while finished < workers:
        item = outbox.get()
        if item is None:
            finished += 1
        else:
            total += item
    for p in procs:
        p.join()
    elapsed = time.perf_counter() - start
    assert total == sum(i * i for i in range(count))
    print(f'2. Queue pipeline: {count} items through 1 producer -> {workers} workers -> consumer '
          f'in {elapsed:.2f} s ({count / elapsed:,.0f} items/s), checksum ok')


def resilience_section():
    with mp.Pool(2) as pool:
        try:
            pool.map(die_on, range(8), chunksize=1)
        except Exception as e:  # mphost: an error naming the dead worker; stock python3 hangs here
            print(f'3. A worker killed mid-task: {type(e).__name__}: {e}')
        print(f'   the pool still works: {pool.map(abs, [-1, -2, -3])}')


def main():
    cores = os.cpu_count() or 1
    print(f'{os.path.basename(sys.executable)} {sys.version.split()[0]}: '
          f'{cores} cores, start method {mp.get_start_method()}')
    cpu_section(cores)
    pipeline_section(max(1, cores))
    if 'mphost' in os.path.basename(sys.executable):
        resilience_section()
    else:
        print('3. (skipped under stock python3: Pool.map hangs forever when a worker is killed)')


if __name__ == '__main__':
    main()
