"""Count what recv() does with random garbage: send_bytes(garbage) then
recv() on a Pipe, N times; prints the exceptions raised by type. Run it
under stock and under mphost and count stray SystemError lines on stderr:

    /usr/bin/python3 tools/sanitizers/garbage_recv_rate.py 20000 1 2>err; grep -c SystemError err
    build/bin/mphost tools/sanitizers/garbage_recv_rate.py 20000 1 2>err; grep -c SystemError err
"""
import collections
import random
import sys

import multiprocessing as mp


def main():
    count, seed = int(sys.argv[1]), int(sys.argv[2])
    rnd = random.Random(seed)
    outcomes = collections.Counter()
    a, b = mp.Pipe()
    for _ in range(count):
        a.send_bytes(rnd.randbytes(rnd.randint(1, 64)))
        try:
            b.recv()
        except Exception as exc:
            outcomes[type(exc).__name__] += 1
        else:
            outcomes['ok'] += 1
    print(dict(outcomes))


if __name__ == '__main__':
    main()
