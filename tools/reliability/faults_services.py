"""Fault-injection trials of the services: pool workers at each stage of a
task (Pool and ProcessPoolExecutor), a manager's server and clients, the
forkserver zygote and warm spawn children (rows listed in faults_trials)."""

import multiprocessing as mp
import os
import time

from faults_common import LARGE, WAIT, Outcome, bounded, follow_up_child, kill, kill_spinner, wait_for


# ---------------------------------------------------------------- pools

def _task(arg):
    ms, size = arg
    time.sleep(ms / 1000.0)
    return b'r' * size


def trial_pool(ctx, rng, api, stage):
    """A worker SIGKILLed at a stage of a task: queued (tasks waiting, none
    taken), transit (just submitted), running (in the task), returning (a
    4 MB result on its way back). Outcome: results, or a clear error."""
    stages = {'queued': ((0, 10), (1, 1), 0.0),
              'transit': ((0, 0), (0, 5), 0.0),
              'running': ((100, 100), (20, 80), 0.0),
              'returning': ((0, 0), (0, 40), 1.0)}
    (lo, hi), (klo, khi), large = stages[stage]
    size = LARGE if large else 16
    args = [(rng.randint(lo, hi), size) for _ in range(6)]
    if api == 'pool':
        pool = ctx.Pool(2)
        pids = [w.pid for w in pool._pool]
        if stage == 'queued':
            # Both workers busy first, then tasks queued behind them.
            pool.map_async(_task, [(150, 16)] * 2)
            time.sleep(0.05)
        res = pool.map_async(_task, args)
        time.sleep(rng.uniform(klo, khi) / 1000.0)
        killed = kill(rng.choice(pids))
        try:
            out = res.get(timeout=WAIT + 3)
            note = 'all results'
        except mp.TimeoutError:
            pool.terminate()
            raise Outcome('hang', 'a lost task: map_async().get() never ends')
        except Exception as exc:
            out = None
            note = 'raised %s' % type(exc).__name__
        if out is not None and out != [b'r' * size] * 6:
            raise Outcome('error', 'wrong results')
        recover = time.monotonic() - killed
        # The survivors keep working: the same pool runs a new task.
        r2 = pool.apply_async(_task, ((0, 4),))
        try:
            if r2.get(timeout=WAIT + 3) != b'rrrr':
                raise Outcome('error', 'wrong follow-up result')
        except mp.TimeoutError:
            pool.terminate()
            raise Outcome('hang', 'the pool runs no new task after the death')
        pool.terminate()
        pool.join()
        return recover, note
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool
    ex = ProcessPoolExecutor(2, mp_context=ctx)
    if stage == 'queued':
        for _ in range(2):
            ex.submit(_task, (150, 16))
        time.sleep(0.05)
    futs = [ex.submit(_task, a) for a in args]
    wait_for(lambda: len(ex._processes) == 2, 10, 'executor workers did not start')
    pids = list(ex._processes)
    time.sleep(rng.uniform(klo, khi) / 1000.0)
    killed = kill(rng.choice(pids))
    outcomes = set()
    for f in futs:
        try:
            if f.result(timeout=WAIT + 3) != b'r' * size:
                raise Outcome('error', 'wrong result')
            outcomes.add('result')
        except BrokenProcessPool:
            outcomes.add('BrokenProcessPool')
        except Exception as exc:
            if type(exc).__name__ == 'TimeoutError':
                raise Outcome('hang', 'a future never ended')
            outcomes.add(type(exc).__name__)
    recover = time.monotonic() - killed
    bounded(lambda: ex.shutdown(wait=True), WAIT + 3, 'shutdown of the broken executor')
    with ProcessPoolExecutor(1, mp_context=ctx) as ex2:
        if ex2.submit(_task, (0, 4)).result(timeout=WAIT + 5) != b'rrrr':
            raise Outcome('error', 'wrong follow-up result')
    return recover, ' + '.join(sorted(outcomes))


# ---------------------------------------------------------------- managers

def _manager_client(d, counter):
    while True:
        d['k'] = counter.value
        counter.value += 1


def trial_manager(ctx, rng, who):
    m = ctx.Manager()
    d = m.dict()
    counter = ctx.RawValue('q', 0)
    if who == 'server':
        p = ctx.Process(target=_manager_client, args=(d, counter))
        p.start()
        wait_for(lambda: counter.value > 0, 10, 'client did not start')
        time.sleep(rng.uniform(0, 0.05))
        killed = kill(m._process.pid)

        def use():
            try:
                for _ in range(3):
                    d['x'] = 1
                return 'no error?'
            except (EOFError, ConnectionError, BrokenPipeError, OSError) as exc:
                return 'client raised %s' % type(exc).__name__
        note = bounded(use, WAIT, "a proxy's call after the server died")
        p.join(WAIT)
        if p.is_alive():
            kill(p)
            p.join(WAIT)
            note += '; other client blocked'
            raise Outcome('hang', 'a client stays blocked after the server died')
        if note == 'no error?':
            raise Outcome('error', 'calls on a dead server succeeded')
        recover = time.monotonic() - killed
        try:
            m.shutdown()
        except Exception:
            pass
        return recover, note
    killed = kill_spinner(ctx, rng, _manager_client, (d, counter), counter, 'client')

    def use():
        d['y'] = 2
        return d['y'], m.list([1, 2])[1]
    if bounded(use, WAIT, 'the server after a client died') != (2, 2):
        raise Outcome('error', 'wrong answers')
    recover = time.monotonic() - killed
    m.shutdown()
    return recover, 'server serves'


# ---------------------------------------------------------------- start methods

def trial_forkserver_zygote(ctx, rng):
    fs_ctx = mp.get_context('forkserver')
    follow_up_child(fs_ctx)
    from multiprocessing import forkserver
    pid = forkserver._forkserver._forkserver_pid
    time.sleep(rng.uniform(0, 0.02))
    killed = kill(pid)
    try:
        bounded(lambda: follow_up_child(fs_ctx), WAIT + 5, 'a start after the zygote died')
        note = 'next start works'
    except Outcome:
        raise
    except Exception as exc:
        note = 'next start raised %s' % type(exc).__name__
        follow_up_child(fs_ctx)
    return time.monotonic() - killed, note


def _own_children():
    me, out = os.getpid(), []
    for d in os.listdir('/proc'):
        if d.isdigit():
            try:
                with open('/proc/%s/stat' % d) as f:
                    fields = f.read().rsplit(')', 1)[1].split()
                if int(fields[1]) == me and fields[0] != 'Z':
                    out.append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return out


def _is_spare(pid):
    # mphost's waiting spawn children (stock keeps none; its other child,
    # the resource tracker, is not a spare).
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as f:
            return b'--mphost-child' in f.read()
    except OSError:
        return False


def trial_warm_spawn(ctx, rng):
    """The spare spawn children waiting for work SIGKILLed at a random
    moment after a spawn; the next spawn still works."""
    sp = mp.get_context('spawn')
    follow_up_child(sp)
    time.sleep(rng.uniform(0, 0.1))
    busy = {p.pid for p in mp.active_children()}
    spares = [pid for pid in _own_children() if pid not in busy and _is_spare(pid)]
    killed = time.monotonic()
    for pid in spares:
        kill(pid)
    follow_up_child(sp)
    return time.monotonic() - killed, ('%d spare(s) killed' % len(spares)) if spares else 'no spare'
