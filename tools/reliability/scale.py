#!/usr/bin/env python3
"""Scale limits of mphost measured beside stock CPython.

Runs the same small program under `--mphost PATH` and under
`--stock PATH` (default /usr/bin/python3), once per case, and prints a
table: count, wall s, CPU s (the whole tree), peak RSS of the root and
of the largest child, descriptors per queue, and the mphost/stock ratio.

Cases:
  fork N      N fork children alive at once, each with its own Queue
  spawn N     the same with spawn children
  queues N    N Queues in one process (descriptors and time)
  message B   one message of B bytes through a Queue and through a Pipe

  tools/reliability/scale.py --mphost build/bin/mphost fork 1000 spawn 1000 \\
      queues 10000 message 4294967296

A case whose program fails prints its error in the table (the point is to
see a clear error, never a hang: every run has --timeout).
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

PROGRAM = r'''
import json, multiprocessing as mp, os, resource, sys, time

def child(q, i, go):
    q.put(i)
    go.wait(300)  # every child stays alive until all have started

def fds():
    return len(os.listdir('/proc/self/fd'))

def case_tree(n, method):
    ctx = mp.get_context(method)
    go = ctx.Event()
    qs = [ctx.Queue() for _ in range(n)]
    ps = [ctx.Process(target=child, args=(qs[i], i, go)) for i in range(n)]
    try:
        for p in ps:
            p.start()
        got = sorted(q.get(timeout=120) for q in qs)
        alive = sum(p.is_alive() for p in ps)
    finally:
        go.set()
    for p in ps:
        p.join(120)
    assert got == list(range(n)), 'lost messages'
    assert all(p.exitcode == 0 for p in ps), 'a child failed'
    return {'alive': alive}

def case_queues(n):
    before = fds()
    qs = [mp.Queue() for _ in range(n)]
    for i, q in enumerate(qs):
        q.put(i)
    assert [q.get(timeout=10) for q in qs] == list(range(n))
    per = (fds() - before) / n
    for q in qs:
        q.close()
        q.join_thread()
    return {'fds_per_queue': per}

def case_message(size):
    out = {}
    blob = bytearray(size)
    blob[0], blob[-1] = 1, 2
    q = mp.Queue()
    q.put(blob)
    got = q.get(timeout=600)
    assert len(got) == size and got[0] == 1 and got[-1] == 2
    del got
    q.close(); q.join_thread()
    r, w = mp.Pipe(False)
    import threading
    t = threading.Thread(target=w.send_bytes, args=(blob,))
    t.start()
    got = r.recv_bytes()
    t.join()
    assert len(got) == size and got[0] == 1 and got[-1] == 2
    return out

def main():
    kind, arg = sys.argv[1], int(sys.argv[2])
    t0 = time.time()
    try:
        if kind in ('fork', 'spawn'):
            extra = case_tree(arg, kind)
        elif kind == 'queues':
            extra = case_queues(arg)
        else:
            extra = case_message(arg)
        extra['error'] = ''
    except BaseException as e:
        extra = {'error': f'{type(e).__name__}: {e}'[:120]}
    extra['wall'] = time.time() - t0
    extra['root_rss_mb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    extra['child_rss_mb'] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    t = os.times()
    extra['cpu'] = t.user + t.system + t.children_user + t.children_system
    print('RESULT ' + json.dumps(extra))

if __name__ == '__main__':
    main()
'''


def run(interpreter, kind, arg, timeout):
    start = time.time()
    # A file, not -c: spawn children import the main module by its path.
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, 'scale_case.py')
        with open(path, 'w') as f:
            f.write(PROGRAM)
        try:
            proc = subprocess.run([interpreter, path, kind, str(arg)], capture_output=True, text=True,
                                  timeout=timeout, cwd=tmp)
        except subprocess.TimeoutExpired:
            return {'error': f'timed out after {timeout} s', 'wall': time.time() - start}
    for line in proc.stdout.splitlines():
        if line.startswith('RESULT '):
            return json.loads(line[7:])
    tail = (proc.stderr.strip().splitlines() or ['no output'])[-1]
    return {'error': f'exit {proc.returncode}: {tail}'[:120], 'wall': time.time() - start}


def fmt(v, spec):
    return format(v, spec) if isinstance(v, (int, float)) else '-'


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--mphost', required=True)
    ap.add_argument('--stock', default='/usr/bin/python3')
    ap.add_argument('--timeout', type=float, default=900)
    ap.add_argument('--nofile', type=int, default=0, help='raise RLIMIT_NOFILE to this for both runs')
    ap.add_argument('cases', nargs='+', help='pairs: fork N spawn N queues N message BYTES')
    a = ap.parse_args(argv)
    if len(a.cases) % 2:
        ap.error('cases come in pairs: KIND COUNT')
    if a.nofile:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (a.nofile, max(a.nofile, hard)))
        except (ValueError, OSError):  # not allowed to raise the hard limit
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(a.nofile, hard), hard))
    print(f'RLIMIT_NOFILE {resource.getrlimit(resource.RLIMIT_NOFILE)[0]}; /dev/shm free '
          f'{os.statvfs("/dev/shm").f_bavail * os.statvfs("/dev/shm").f_frsize / 2**30:.1f} GiB')
    head = f'{"case":<20}{"who":<8}{"wall s":>9}{"CPU s":>9}{"root MB":>9}{"child MB":>9}{"fds/q":>7}{"alive":>6}{"ratio":>7}  error'
    print(head)
    print('-' * len(head))
    for kind, count in zip(a.cases[::2], a.cases[1::2]):
        n = int(float(count))
        rows = {who: run(os.path.abspath(path), kind, n, a.timeout)
                for who, path in (('mphost', a.mphost), ('stock', a.stock))}
        for who, r in rows.items():
            ratio = ''
            if who == 'mphost' and rows['stock'].get('wall') and not r.get('error') and not rows['stock'].get('error'):
                ratio = f'{r["wall"] / rows["stock"]["wall"]:.2f}'
            print(f'{kind + " " + str(n):<20}{who:<8}{fmt(r.get("wall"), ".2f"):>9}{fmt(r.get("cpu"), ".2f"):>9}'
                  f'{fmt(r.get("root_rss_mb"), ".0f"):>9}{fmt(r.get("child_rss_mb"), ".0f"):>9}'
                  f'{fmt(r.get("fds_per_queue"), ".1f"):>7}{fmt(r.get("alive"), "d"):>6}{ratio:>7}'
                  f'  {r.get("error", "")}', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
