"""A program that makes one of everything the runtime creates, under the
three start methods, keeps it all alive, prints what the test needs as one
JSON line, and waits for a line on stdin before it ends."""

import json
import os
import sys

import multiprocessing as mp
from multiprocessing import connection, managers, shared_memory

import mphost


def child(ready, stop, *objects):
    ready.put(os.getpid())
    stop.wait(120)


def main():
    keep = []
    children = []
    for method in ('fork', 'spawn', 'forkserver'):
        ctx = mp.get_context(method)
        objects = [ctx.Queue(), ctx.JoinableQueue(), ctx.SimpleQueue(), *ctx.Pipe(), ctx.Lock(), ctx.RLock(),
                   ctx.Semaphore(2), ctx.BoundedSemaphore(2), ctx.Condition(), ctx.Event(), ctx.Barrier(2),
                   mphost.Semaphore(1, ctx=ctx), ctx.Value('i', 1), ctx.Array('d', 1000)]
        ready, stop = ctx.Queue(), ctx.Event()
        # A few objects per child: a forkserver request passes at most 16 fds.
        for first in range(0, len(objects), 2):
            p = ctx.Process(target=child, args=(ready, stop, *objects[first:first + 2]))
            p.start()
            ready.get(timeout=60)
            children.append((p, stop))
        big = ctx.Queue()
        big.put(b'x' * (8 << 20))  # a large message goes through a block of its own
        assert len(big.get(timeout=60)) == 8 << 20
        keep += [objects, ready, stop, big]
    shm = shared_memory.SharedMemory(create=True, size=1 << 16)
    manager = mp.get_context('spawn').Manager()
    shared_dict = manager.dict(a=1)
    manager_lock = manager.Lock()
    listener = connection.Listener(family='AF_UNIX', authkey=b'security-test-key')
    inet_listener = connection.Listener(('127.0.0.1', 0), authkey=b'security-test-key')
    pool = mp.get_context('forkserver').Pool(2)
    assert pool.map(abs, range(-5, 5)) == [abs(i) for i in range(-5, 5)]
    from multiprocessing import forkserver
    zygote = forkserver._forkserver._zygote
    print(json.dumps({
        'root': os.getpid(),
        'children': [p.pid for p, _ in children],
        'listener': listener.address,
        'manager': manager.address,
        'forkserver': zygote.address,
        'forkserver_dir': zygote.directory,
        'shared_memory': shm.name,
    }), flush=True)
    sys.stdin.readline()
    for p, stop in children:
        stop.set()
        p.join(60)
    pool.terminate()
    pool.join()
    manager.shutdown()
    shm.close()
    shm.unlink()
    listener.close()
    inet_listener.close()
    del keep, shared_dict, manager_lock


if __name__ == '__main__':
    main()
