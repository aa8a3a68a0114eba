"""The payload matrix for one start method: every payload of _matrix_payloads
through every transport of multiprocessing, each cell described by its
receivers. The same program runs under /usr/bin/python3 and under mphost.

usage: <python> _matrix_runner.py METHOD OUTPUT.jsonl [TRANSPORT...]

One line of OUTPUT per cell, written as soon as the cell ends:
    [transport, payload, {"there": text, "back": text}]
"there" is what the receiving side described (a child, a worker, or the
manager read back); "back" is what the parent described of the same object
returned by that receiver. An error is described by its type and message; a
cell that never completes is described as lost, by the wait that gave up.
Every wait has a timeout; a transport whose cells keep timing out stops
early (the rest of its cells say so), and the whole run has a deadline.
"""

import concurrent.futures
import json
import multiprocessing
import os
import sys
import threading
import time
import traceback
from multiprocessing.reduction import ForkingPickler

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _matrix_payloads as mp_payloads  # noqa: E402

CELL_TIMEOUT = 8.0        # one cell through an echo child
FIRST_CELL_TIMEOUT = 30.0  # the first cell after the child started (its imports)
BATCH_TIMEOUT = 30.0      # all cells of one pool transport, submitted together
HANGS_PER_TRANSPORT = 3   # after this many timed-out cells, a transport stops
RUN_DEADLINE = 150.0      # the whole run, all transports
POLL = 0.02
SHUTDOWN_TIMEOUT = 15.0  # closing the pools and the manager at the end
JOIN_TIMEOUT = 2.0      # JoinableQueue.join after the cells (stock hangs: dropped puts)

describe = mp_payloads.describe_safely
describe_error = mp_payloads.describe_error


# ---------------------------------------------------------------- workers and echo children
# Module-level so that spawn and forkserver children find them by name.

def pool_echo(payload):
    return describe(payload), payload


def pool_echo2(payload, tag):
    return describe(payload), payload


class Endpoint:
    """One side of a transport as the echo loop sees it: get() and put()."""

    def __init__(self, kind, a, b=None):
        self.kind, self.a, self.b = kind, a, b

    def get(self):
        if self.kind in ('queue', 'joinable', 'simple', 'manager_queue'):
            item = self.a.get()
            if self.kind == 'joinable':
                self.a.task_done()
            return item
        if self.kind in ('pipe', 'listener'):
            return self.a.recv()
        if self.kind == 'pipe_bytes':      # the peer used send(); we read bytes
            return ForkingPickler.loads(self.a.recv_bytes())
        if self.kind == 'pipe_pickled':    # the peer used send_bytes(dumps()); we recv()
            return self.a.recv()
        raise ValueError(self.kind)

    def put(self, obj):
        if self.kind in ('queue', 'joinable', 'simple', 'manager_queue'):
            self.b.put(obj)
        elif self.kind in ('pipe', 'listener', 'pipe_bytes'):
            self.a.send(obj)
        elif self.kind == 'pipe_pickled':
            self.a.send_bytes(ForkingPickler.dumps(obj))
        else:
            raise ValueError(self.kind)


def echo_child(kind, a, b=None, address=None):
    """Receive (idx, payload) and answer ('there', idx, text), ('back', idx,
    payload); answer ('end', idx) to ('end', idx); stop on None."""
    if kind == 'listener':
        from multiprocessing.connection import Client
        a = Client(address, authkey=b'matrix')
    end = Endpoint(kind, a, b)
    while True:
        msg = end.get()
        if msg is None:
            return
        tag, idx, payload = msg
        if tag == 'end':
            end.put(('end', idx, None))
            continue
        end.put(('there', idx, describe(payload)))
        try:
            end.put(('back', idx, payload))
        except Exception as e:
            end.put(('there', idx, 'reply failed: ' + describe_error(e)))


# ---------------------------------------------------------------- the parent side of echo transports

class EchoTransport:
    """A transport with an echo child; knows how to (re)start it and how to
    send to it and wait for its answers with a timeout."""

    def __init__(self, ctx, name):
        self.ctx, self.name = ctx, name
        self.proc = None
        self.extra = []

    # -- per transport
    def _open(self):
        """Start the child; set self.send(obj) and self.poll(timeout) -> bool, self.recv()."""
        ctx, n = self.ctx, self.name
        if n in ('queue', 'joinable_queue', 'simple_queue'):
            make = {'queue': ctx.Queue, 'joinable_queue': ctx.JoinableQueue,
                    'simple_queue': ctx.SimpleQueue}[n]
            kind = {'queue': 'queue', 'joinable_queue': 'joinable', 'simple_queue': 'simple'}[n]
            q_in, q_out = make(), make()
            self._start(kind, q_in, q_out)
            self.send = q_in.put
            if n == 'simple_queue':
                self.poll = lambda t: _wait_until(lambda: not q_out.empty(), t)
                self.recv = q_out.get
            else:
                self.poll = None
                self.recv_timeout = lambda t: q_out.get(timeout=t)
            self.queues = (q_in, q_out)
        elif n == 'manager_queue':
            q_in, q_out = self.manager.Queue(), self.manager.Queue()
            self._start('manager_queue', q_in, q_out)
            self.send = q_in.put
            self.poll = None
            self.recv_timeout = lambda t: q_out.get(timeout=t)
        elif n.startswith('pipe'):
            mine, theirs = ctx.Pipe()
            kind = {'pipe_send_recv': 'pipe', 'pipe_send_then_recv_bytes': 'pipe_bytes',
                    'pipe_send_bytes_then_recv': 'pipe_pickled'}[n]
            self._start(kind, theirs)
            theirs.close()
            self.conn = mine
            if kind == 'pipe':
                self.send, self.recv = mine.send, mine.recv
            elif kind == 'pipe_bytes':
                # we send(), the child reads recv_bytes(); the child send()s, we read bytes
                self.send = mine.send
                self.recv = lambda: ForkingPickler.loads(mine.recv_bytes())
            else:
                self.send = lambda obj: mine.send_bytes(ForkingPickler.dumps(obj))
                self.recv = mine.recv
            self.poll = mine.poll
        elif n.startswith('listener'):
            from multiprocessing.connection import Listener
            family = 'AF_UNIX' if n == 'listener_unix' else 'AF_INET'
            listener = Listener(family=family, authkey=b'matrix')
            self.extra.append(listener)
            self._start('listener', None, None, listener.address)
            box = []
            t = threading.Thread(target=lambda: box.append(listener.accept()), daemon=True)
            t.start()
            t.join(FIRST_CELL_TIMEOUT)
            if not box:
                raise TimeoutError('Listener.accept: no connection from the child')
            conn = box[0]
            self.conn = conn
            self.send, self.recv, self.poll = conn.send, conn.recv, conn.poll
        else:
            raise ValueError(n)

    def _start(self, kind, a, b=None, address=None):
        self.proc = self.ctx.Process(target=echo_child, args=(kind, a, b, address), daemon=True)
        self.proc.start()

    def close(self, graceful=True):
        p = self.proc
        if p is not None:
            if graceful and p.is_alive():
                try:
                    self.send(None)
                except Exception:
                    pass
                p.join(3)
            if p.is_alive():
                p.kill()
                p.join(5)
        for x in self.extra:
            try:
                x.close()
            except Exception:
                pass
        self.extra = []
        self.proc = None

    # -- one message back, with a timeout; None when nothing came
    def _receive(self, deadline):
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            step = min(left, 0.25)
            if self.poll is None:
                import queue as queue_module
                try:
                    return self.recv_timeout(step)
                except queue_module.Empty:
                    pass
            elif self.poll(step):
                return self.recv()
            if not self.proc.is_alive():
                # one last look: the child may have answered just before it ended
                if self.poll is None:
                    try:
                        return self.recv_timeout(0.2)
                    except Exception:
                        return ('died', None, self.proc.exitcode)
                if self.poll(0.2):
                    return self.recv()
                return ('died', None, self.proc.exitcode)

    def cell(self, idx, payload, timeout=CELL_TIMEOUT):
        result = {}
        try:
            self.send(('cell', idx, payload))
        except Exception as e:
            result['there'] = 'send: ' + describe_error(e)
        try:
            self.send(('end', idx, None))
        except Exception as e:
            result.setdefault('there', 'not delivered')
            result['back'] = 'send end marker: ' + describe_error(e)
            return result, 'broken'
        deadline = time.monotonic() + timeout
        while True:
            try:
                msg = self._receive(deadline)
            except Exception as e:
                result.setdefault('there', 'not delivered')
                result['back'] = 'receive: ' + describe_error(e)
                return result, 'broken'
            if msg is None:
                result.setdefault('there', 'not delivered')
                result.setdefault('back', 'lost: no answer within %gs' % timeout)
                return result, 'hang'
            tag, i, value = msg
            if tag == 'died':
                result.setdefault('there', 'not delivered')
                result.setdefault('back', 'lost: receiver died, exit code %s' % value)
                return result, 'broken'
            if i != idx:
                continue  # a late answer to a cell already given up
            if tag == 'there':
                result['there'] = value
            elif tag == 'back':
                result['back'] = describe(value)
            elif tag == 'end':
                result.setdefault('there', 'not delivered')
                result.setdefault('back', 'not returned')
                return result, 'ok'

    def run(self, payload_names, emit, give_up):
        hangs = 0
        self._open()
        fresh = True
        try:
            for idx, name in enumerate(payload_names):
                if give_up():
                    emit(name, {'there': 'not run: matrix deadline', 'back': ''})
                    continue
                if hangs >= HANGS_PER_TRANSPORT:
                    emit(name, {'there': 'not run: %d earlier cells hung' % hangs, 'back': ''})
                    continue
                timeout = FIRST_CELL_TIMEOUT if fresh else CELL_TIMEOUT
                result, state = self.cell(idx, mp_payloads.build(name), timeout)
                emit(name, result)
                fresh = False
                if state != 'ok':
                    hangs += state == 'hang'
                    self.close(graceful=False)
                    self._open()
                    fresh = True
            if self.name == 'joinable_queue':
                q_in = self.queues[0]
                t = threading.Thread(target=q_in.join, daemon=True)
                t.start()
                t.join(JOIN_TIMEOUT)
                emit('(JoinableQueue.join)', {'there': 'joined' if not t.is_alive() else 'join hung',
                                              'back': ''})
        finally:
            self.close()


def _wait_until(predicate, timeout):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL)
    return True


# ---------------------------------------------------------------- pool, executor and manager transports

class Pools:
    """One Pool and one ProcessPoolExecutor per run, replaced only when broken."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.pool = None
        self.executor = None

    def get_pool(self):
        if self.pool is None:
            self.pool = self.ctx.Pool(2)
        return self.pool

    def drop_pool(self):
        pool, self.pool = self.pool, None
        if pool is not None:
            _bounded(pool.terminate, 10)

    def get_executor(self):
        if self.executor is None:
            self.executor = concurrent.futures.ProcessPoolExecutor(2, mp_context=self.ctx)
        return self.executor

    def drop_executor(self):
        ex, self.executor = self.executor, None
        if ex is not None:
            for p in list(getattr(ex, '_processes', {}).values()):
                p.kill()
            _bounded(lambda: ex.shutdown(wait=True, cancel_futures=True), 10)

    def close(self):
        """Close and join what is still open, each bounded: {what: 'ended' or 'hung'}."""
        ended = {}
        if self.pool is not None:
            pool, self.pool = self.pool, None
            ended['Pool.close+join'] = _bounded(lambda: (pool.close(), pool.join()), SHUTDOWN_TIMEOUT)
        if self.executor is not None:
            ex, self.executor = self.executor, None
            ended['ProcessPoolExecutor.shutdown'] = _bounded(lambda: ex.shutdown(wait=True), SHUTDOWN_TIMEOUT)
        return {k: 'ended' if v else 'hung (over %gs)' % SHUTDOWN_TIMEOUT for k, v in ended.items()}


def _bounded(fn, timeout):
    t = threading.Thread(target=fn, daemon=True)
    t.start()
    t.join(timeout)
    return not t.is_alive()


def _pool_result(value):
    desc, back = value
    return {'there': desc, 'back': describe(back)}


def run_pool(kind, pools, payload_names, emit, give_up):
    pool = pools.get_pool()
    pending = []
    for name in payload_names:
        payload = mp_payloads.build(name)
        try:
            if kind == 'pool_map':
                h = pool.map_async(pool_echo, [payload])
                get = (lambda h: lambda t: h.get(t)[0])(h)
            elif kind == 'pool_starmap':
                h = pool.starmap_async(pool_echo2, [(payload, name)])
                get = (lambda h: lambda t: h.get(t)[0])(h)
            elif kind == 'pool_apply_async':
                h = pool.apply_async(pool_echo, (payload,))
                get = h.get
            elif kind == 'pool_imap':
                it = pool.imap(pool_echo, [payload])
                get = it.next
            else:
                raise ValueError(kind)
        except Exception as e:
            emit(name, {'there': 'submit: ' + describe_error(e), 'back': ''})
            continue
        pending.append((name, get))
    deadline = time.monotonic() + BATCH_TIMEOUT
    lost = False
    for name, get in pending:
        try:
            emit(name, _pool_result(get(max(0.1, deadline - time.monotonic()))))
        except multiprocessing.TimeoutError:
            lost = True
            emit(name, {'there': 'lost: no result within %gs' % BATCH_TIMEOUT, 'back': ''})
        except Exception as e:
            emit(name, {'there': describe_error(e), 'back': ''})
    if lost:
        pools.drop_pool()


def run_executor(pools, payload_names, emit, give_up):
    ex = pools.get_executor()
    futures = []
    for name in payload_names:
        try:
            futures.append((name, ex.submit(pool_echo, mp_payloads.build(name))))
        except Exception as e:
            emit(name, {'there': 'submit: ' + describe_error(e), 'back': ''})
    deadline = time.monotonic() + BATCH_TIMEOUT
    broken = False
    for name, f in futures:
        try:
            emit(name, _pool_result(f.result(max(0.1, deadline - time.monotonic()))))
        except concurrent.futures.TimeoutError:
            broken = True
            emit(name, {'there': 'lost: no result within %gs' % BATCH_TIMEOUT, 'back': ''})
        except Exception as e:
            broken = broken or type(e).__name__ == 'BrokenProcessPool'
            emit(name, {'there': describe_error(e), 'back': ''})
    if broken:
        pools.drop_executor()


def run_manager_container(kind, manager, payload_names, emit, give_up):
    """Stored into a list/dict proxy, then read back: parent -> server -> parent."""
    hangs = 0
    for name in payload_names:
        if give_up():
            emit(name, {'there': 'not run: matrix deadline', 'back': ''})
            continue
        if hangs >= HANGS_PER_TRANSPORT:
            emit(name, {'there': 'not run: %d earlier cells hung' % hangs, 'back': ''})
            continue
        payload = mp_payloads.build(name)
        box = {}

        def cell():
            try:
                if kind == 'manager_list':
                    proxy = manager.list()
                    proxy.append(payload)
                    got = proxy[0]
                else:
                    proxy = manager.dict()
                    proxy['k'] = payload
                    got = proxy['k']
                box['there'] = describe(got)
            except Exception as e:
                box['there'] = describe_error(e)
        if not _bounded(cell, CELL_TIMEOUT):
            emit(name, {'there': 'lost: the proxy call did not return within %gs' % CELL_TIMEOUT,
                        'back': ''})
            hangs += 1
            continue
        emit(name, {'there': box['there'], 'back': ''})


# ---------------------------------------------------------------- the run

TRANSPORTS = [
    'pool_map', 'pool_imap', 'pool_apply_async', 'pool_starmap',
    'queue', 'simple_queue', 'joinable_queue',
    'pipe_send_recv', 'pipe_send_then_recv_bytes', 'pipe_send_bytes_then_recv',
    'manager_list', 'manager_dict', 'manager_queue',
    'process_pool_executor', 'listener_unix', 'listener_inet',
]


def main(argv):
    method, out_path = argv[0], argv[1]
    wanted = argv[2:] or TRANSPORTS
    ctx = multiprocessing.get_context(method)
    names = list(mp_payloads.PAYLOADS)
    started = time.monotonic()
    give_up = lambda: time.monotonic() - started > RUN_DEADLINE  # noqa: E731
    pools = Pools(ctx)
    manager = None
    with open(out_path, 'w') as out:
        for transport in wanted:
            t0 = time.monotonic()
            done = set()

            def emit(payload, desc, transport=transport, done=done):
                done.add(payload)
                out.write(json.dumps([transport, payload, desc]) + '\n')
                out.flush()
            try:
                if give_up():
                    raise TimeoutError('matrix deadline')
                if transport.startswith('pool_'):
                    run_pool(transport, pools, names, emit, give_up)
                elif transport == 'process_pool_executor':
                    run_executor(pools, names, emit, give_up)
                elif transport.startswith('manager_'):
                    if manager is None:
                        manager = ctx.Manager()
                    if transport == 'manager_queue':
                        t = EchoTransport(ctx, transport)
                        t.manager = manager
                        t.run(names, emit, give_up)
                    else:
                        run_manager_container(transport, manager, names, emit, give_up)
                else:
                    EchoTransport(ctx, transport).run(names, emit, give_up)
            except Exception as e:
                traceback.print_exc()
                for name in names:
                    if name not in done:
                        emit(name, {'there': 'transport failed: ' + describe_error(e), 'back': ''})
            print('%s %s: %.2fs' % (method, transport, time.monotonic() - t0), file=sys.stderr, flush=True)
        shutdown = pools.close()
        if manager is not None:
            ok = _bounded(manager.shutdown, SHUTDOWN_TIMEOUT)
            shutdown['Manager.shutdown'] = 'ended' if ok else 'hung (over %gs)' % SHUTDOWN_TIMEOUT
        for what, state in shutdown.items():
            out.write(json.dumps(['shutdown', what, {'there': state, 'back': ''}]) + '\n')
        out.write(json.dumps(['end', '', {}]) + '\n')  # all cells written; the process exits next
        out.flush()
    print('%s total: %.2fs' % (method, time.monotonic() - started), file=sys.stderr, flush=True)


if __name__ == '__main__':
    main(sys.argv[1:])
