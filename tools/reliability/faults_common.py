"""What every fault-injection trial shares: outcomes, bounded waits, the
kill, and the follow-up round trip with a fresh child (see faults_trials)."""

import os
import signal
import threading
import time

SMALL = 100
LARGE = 4 << 20
WAIT = 2.0          # the timeout of every wait a survivor makes
GRACE = 1.0         # what a wait may overrun its timeout by
EXIT_LIMIT = 5.0    # what the root's exit may take once the trial is over
EXIT_BLOCKED = 97   # the root's status when its exit blocked that long


class Outcome(Exception):
    """Ends a trial with a non-ok outcome."""

    def __init__(self, outcome, note):
        super().__init__(note)
        self.outcome, self.note = outcome, note


def bounded(fn, limit, what):
    """fn() in a daemon thread; its result, or Outcome('hang') once it has
    run longer than limit + GRACE (the thread is abandoned)."""
    box = {}

    def run():
        try:
            box['value'] = fn()
        except BaseException as exc:  # handed to the caller
            box['error'] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(limit + GRACE)
    if t.is_alive():
        raise Outcome('hang', what + ' blocked')
    if 'error' in box:
        raise box['error']
    return box.get('value')


def kill(proc_or_pid):
    pid = proc_or_pid if isinstance(proc_or_pid, int) else proc_or_pid.pid
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return time.monotonic()


def wait_for(pred, limit, what):
    end = time.monotonic() + limit
    while not pred():
        if time.monotonic() > end:
            raise Outcome('hang', what)
        time.sleep(0.002)


def kill_spinner(ctx, rng, target, args, counter, who):
    """Starts target(*args), which counts its rounds in counter, waits for
    its first round, then SIGKILLs it at a random moment within 50 ms and
    reaps it. Returns the time of the kill."""
    p = ctx.Process(target=target, args=args)
    p.start()
    wait_for(lambda: counter.value > 0, 10, who + ' did not start')
    time.sleep(rng.uniform(0, 0.05))
    killed = kill(p)
    p.join(WAIT)
    return killed


def follow_up_child(ctx):
    """A fresh child and a round trip with it: the tree still works."""
    rx, tx = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_echo, args=(tx,))
    p.start()
    tx.close()
    if not rx.poll(WAIT + 3):
        p.join(0.1)
        raise Outcome('hang', 'follow-up child did not answer (exit code %s)' % p.exitcode)
    if rx.recv() != 'alive':
        raise Outcome('error', 'follow-up child answered wrongly')
    p.join(WAIT)


def _echo(tx):
    tx.send('alive')
