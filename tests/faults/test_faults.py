"""SIGKILL at random points of every kind of participant, under mphost.

Each row of tools/reliability/faults_trials.py runs FAULTS_TRIALS trials,
each a fresh root program with seeded random kill points; every trial must
come out `ok`: no wait beyond its timeout plus a second, every message whose
put()/send() returned delivered exactly once and intact, the survivors still
working, and nothing of the tree left in /dev/shm or /tmp once its root has
exited. A failure names the seed and the command that replays the trial.
"""

import os

import pytest

from conftest import SEED, TRIALS
import faults
import faults_trials

ROWS = list(faults_trials.ROWS)


@pytest.mark.parametrize('row', ROWS)
def test_row(launcher, row):
    bad = []
    for i in range(TRIALS):
        seed = SEED + i
        r = faults.run_trial(launcher, row, seed)
        if r['outcome'] != 'ok':
            bad.append('seed %d: %s: %s\n    replay: %s %s --mphost %s --row %s --seed %d'
                       % (seed, r['outcome'], r['note'], '/usr/bin/python3', faults.__file__,
                          launcher, row, seed))
    assert not bad, '%d of %d trial(s) of %s not ok:\n  %s' % (len(bad), TRIALS, row, '\n  '.join(bad))


def test_barrier_party_killed_inside_wait_breaks_the_barrier_at_once(launcher):
    """Barrier(3), two parties in wait(8), one SIGKILLed there: the other's
    wait ends with BrokenBarrierError well before its own timeout, and the
    barrier works again after reset()."""
    for seed in range(SEED, SEED + 3):
        r = faults.run_trial(launcher, 'barrier-inside-wait', seed)
        assert r['outcome'] == 'ok', r
        assert r['recover'] < 1.0, r


def test_condition_notify_after_a_waiter_died_never_blocks(launcher):
    for seed in range(SEED, SEED + 3):
        r = faults.run_trial(launcher, 'condition-waiter', seed)
        assert r['outcome'] == 'ok', r


def test_a_killed_warm_spawn_child_is_never_handed_work(launcher):
    """The spare spawn child killed while it waits: the next Process.start()
    runs the target in a fresh child (it used to hand the work to the dead
    spare, and the Process ended at once with exit code -9)."""
    for seed in range(SEED, SEED + 3):
        r = faults.run_trial(launcher, 'warm-spawn', seed)
        assert r['outcome'] == 'ok', r
        assert 'spare(s) killed' in r['note'], r


def test_a_pipe_send_to_a_dead_reader_raises_broken_pipe(launcher):
    """As a pipe's: once the only reader is dead, send() raises
    BrokenPipeError instead of handing its message to nobody."""
    r = faults.run_trial(launcher, 'pipe-reader-small', SEED)
    assert r['outcome'] == 'ok' and 'BrokenPipeError' in r['note'], r


def test_a_start_right_after_the_zygote_was_killed_works(launcher, tmp_path):
    """The forkserver's zygote SIGKILLed, then at once a Process started: the
    start waits for the dying zygote to end and a new one serves it (it used
    to fail with ConnectionRefusedError when the zygote was not reaped yet)."""
    import subprocess
    prog = tmp_path / 'zygote.py'
    prog.write_text(
        'import multiprocessing as mp, os, signal\n'
        'from multiprocessing import forkserver\n'
        'def child(q): q.put(os.getpid())\n'
        'if __name__ == "__main__":\n'
        '    ctx = mp.get_context("forkserver")\n'
        '    for _ in range(10):\n'
        '        q = ctx.Queue()\n'
        '        p = ctx.Process(target=child, args=(q,)); p.start(); q.get(timeout=10); p.join(10)\n'
        '        os.kill(forkserver._forkserver._forkserver_pid, signal.SIGKILL)\n'
        '        p = ctx.Process(target=child, args=(q,)); p.start(); q.get(timeout=10); p.join(10)\n'
        '        assert p.exitcode == 0, p.exitcode\n'
        '    print("done")\n')
    env = {k: v for k, v in os.environ.items() if k != 'MPHOST_REGISTRY'}
    out = subprocess.run([launcher, str(prog)], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0 and out.stdout.strip() == 'done', out.stderr[-2000:]
