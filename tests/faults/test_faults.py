"""SIGKILL at random points of every kind of participant, under mphost.

Each row of tools/reliability/faults_trials.py runs FAULTS_TRIALS trials,
each a fresh root program with seeded random kill points; every trial must
come out `ok`: no wait beyond its timeout plus a second, every message whose
put()/send() returned delivered exactly once and intact, the survivors still
working, and nothing of the tree left in /dev/shm or /tmp once its root has
exited. A failure names the seed and the command that replays the trial.
"""

import os
import sys

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
