"""The fault-injection suite runs under mphost (`mphost -m pytest tests/faults`):
each trial is a fresh root program of the launcher running these tests."""

import os
import random
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, 'tools', 'reliability'))

# Trials per row (CI default) and the first seed; FAULTS_SEED replays a run.
TRIALS = int(os.environ.get('FAULTS_TRIALS', '8'))
SEED = int(os.environ.get('FAULTS_SEED', str(random.randrange(1 << 30))))


def pytest_report_header(config):
    return 'faults: %d trial(s) per row, seed %d (FAULTS_SEED=%d replays this run)' % (TRIALS, SEED, SEED)


@pytest.fixture
def launcher():
    """The mphost binary running these tests: the interpreter under test."""
    return sys.executable
