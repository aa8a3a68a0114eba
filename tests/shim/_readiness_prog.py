"""Readiness of Connection descriptors, observed every way a program can
wait on them; one line per check. Run by test_readiness.py under mphost and
under stock python3 with a start method as argument: the outputs must agree
(except where stock's Queue feeder thread lags, see the test)."""
import asyncio
import multiprocessing as mp
import os
import select
import selectors
import signal
import sys
import time


def ways(conn):
    fd = conn.fileno()
    out = []
    out.append(bool(select.select([conn], [], [], 0)[0]))
    p = select.poll()
    p.register(fd, select.POLLIN)
    out.append(bool(p.poll(0)))
    ep = select.epoll()
    ep.register(fd, select.EPOLLIN)
    out.append(bool(ep.poll(0)))
    ep.close()
    with selectors.DefaultSelector() as sel:
        sel.register(conn, selectors.EVENT_READ)
        out.append(bool(sel.select(0)))
    out.append(bool(mp.connection.wait([conn], 0)))
    loop = asyncio.new_event_loop()
    try:
        fired = []
        loop.add_reader(fd, fired.append, 1)
        loop.run_until_complete(asyncio.sleep(0.01))
        loop.remove_reader(fd)
        out.append(bool(fired))
    finally:
        loop.close()
    polled = conn.poll(0)
    # Every way agrees, and with poll(0).
    return 'ready' if all(out) and polled else 'quiet' if not any(out) and not polled else 'MISMATCH %r poll=%r' % (out, polled)


def sender(w, items, done):
    for x in items:
        w.send(x)
    done.set()
    time.sleep(30)


def receiver(r, n, done):
    for _ in range(n):
        r.recv()
    done.set()
    time.sleep(30)


def closer(w):
    w.send('last')
    w.close()


def putter(q):
    q.put('from child')
    if hasattr(q, 'join_thread'):
        q.close()
        q.join_thread()


def settled(conn):
    # Across processes a queue reader's doorbell may lag a wake-up behind:
    # the answer once the ways agree (within a second).
    deadline = time.monotonic() + 1
    while True:
        answer = ways(conn)
        if not answer.startswith('MISMATCH') or time.monotonic() > deadline:
            return answer
        time.sleep(0.01)


def main(method):
    ctx = mp.get_context(method)
    for duplex in (False, True):
        r, w = ctx.Pipe(duplex=duplex)
        print('start', duplex, ways(r))
        w.send('a')
        print('send', ways(r))
        w.send('b')
        r.recv()
        print('one left', ways(r))
        r.recv()
        print('drained', ways(r))
        # Writer in a child.
        done = ctx.Event()
        p = ctx.Process(target=sender, args=(w, ['x', 'y'], done))
        p.start()
        assert done.wait(30)
        print('child sent', ways(r))
        r.recv()
        print('child one left', ways(r))
        r.recv()
        print('child drained', ways(r))
        p.kill(); p.join()
        # Reader in a child takes what we sent.
        w.send('p')
        w.send('q')
        print('two queued', ways(r))
        done = ctx.Event()
        p = ctx.Process(target=receiver, args=(r, 2, done))
        p.start()
        assert done.wait(30)
        print('child read all', ways(r))
        p.kill(); p.join()
        # End of file: the only writer closes, in a child.
        p = ctx.Process(target=closer, args=(w,))
        p.start()
        w.close()
        p.join()
        print('writer gone, one message', ways(r))
        print(r.recv())
        print('writer gone', ways(r))
        try:
            r.recv()
        except EOFError:
            print('EOFError')
        r.close()
    # A killed writer.
    r, w = ctx.Pipe(duplex=False)
    done = ctx.Event()
    p = ctx.Process(target=sender, args=(w, ['k'], done))
    p.start()
    w.close()
    assert done.wait(30)
    r.recv()
    print('killed writer alive', ways(r))
    os.kill(p.pid, signal.SIGKILL)
    p.join()
    print('killed writer', ways(r))
    # Queue readers: this process puts and gets, then a child puts.
    for q in (ctx.Queue(), ctx.SimpleQueue(), ctx.JoinableQueue()):
        name = type(q).__name__
        print(name, 'empty', ways(q._reader))
        q.put(1)
        print(name, 'put', ways(q._reader))
        q.get()
        print(name, 'got', ways(q._reader))
        p = ctx.Process(target=putter, args=(q,))
        p.start()
        print(name, 'child put seen', bool(select.select([q._reader], [], [], 30)[0]))
        print(name, 'child put', settled(q._reader))
        q.get()
        print(name, 'child item got', ways(q._reader))
        p.join()


if __name__ == '__main__':
    main(sys.argv[1])
