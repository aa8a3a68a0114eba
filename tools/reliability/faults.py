#!/usr/bin/env python3
"""Fault injection: SIGKILL at random points, under mphost and under stock python3.

Every trial is a fresh root program (faults_trials.py ROW SEED METHOD) run
by the interpreter under test, with a hard time limit: a hang is an
outcome, never a stalled run. After the root has exited, nothing it used
may be left (/dev/shm names the tree used, mphost's registry, the
forkserver directory /tmp/mphost-fs-<root pid>-*): judged by this run's
own names and pids only, since other programs run on the machine too.

    faults.py --mphost build/bin/mphost                    # every row, both interpreters
    faults.py --mphost build/bin/mphost --trials 10 --no-stock --rows 'queue-*'
    faults.py --mphost build/bin/mphost --row barrier-inside-wait --seed 7   # replay one trial

The table: per row, trials and outcome counts (ok / hang / lost /
duplicated / torn / leftover / error), median and max time from the kill
to the survivors' first success, the notes the trials gave, and the same
row under stock. A failing trial prints its seed and the command that
replays it.
"""

import argparse
import fnmatch
import glob
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TRIALS = os.path.join(HERE, 'faults_trials.py')
sys.path.insert(0, HERE)
import faults_trials  # noqa: E402  (row names only: nothing runs on import)

OUTCOMES = ('ok', 'hang', 'lost', 'duplicated', 'torn', 'leftover', 'error')
HARD_LIMIT = 15.0   # seconds a whole trial may take, root exit included
STOCK = '/usr/bin/python3'


def rows_matching(patterns):
    names = list(faults_trials.ROWS)
    if not patterns:
        return names
    wanted = [p.strip() for p in patterns.split(',') if p.strip()]
    return [n for n in names if any(fnmatch.fnmatch(n, p) for p in wanted)]


def _left_behind(result):
    """Names and directories of this trial's tree that outlived its root."""
    left = [n for n in result.get('names', []) if os.path.exists('/dev/shm/' + n)]
    pid = result.get('pid')
    if pid:
        tmp = os.environ.get('TMPDIR') or '/tmp'
        left += glob.glob(os.path.join(tmp, 'mphost-fs-%d-*' % pid))
    return left


def run_trial(interpreter, row, seed, method='fork', limit=HARD_LIMIT):
    """One trial in a fresh root; a dict with outcome, recover, note, seconds."""
    start = time.monotonic()
    # A root of its own: not a member of the caller's tree (a test run
    # under mphost would hand down its registry).
    env = {k: v for k, v in os.environ.items() if k != 'MPHOST_REGISTRY'}
    proc = subprocess.Popen([interpreter, TRIALS, row, str(seed), method], cwd=HERE, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    timed_out = False
    try:
        out, err = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        timed_out = True
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = proc.communicate()
    seconds = time.monotonic() - start
    result = None
    for line in out.decode(errors='replace').splitlines():
        if line.startswith('FAULTS-RESULT '):
            result = json.loads(line[len('FAULTS-RESULT '):])
    if result is None:
        tail = err.decode(errors='replace').strip().splitlines()[-1:] or ['no output']
        result = {'outcome': 'hang' if timed_out else 'error', 'recover': None, 'pid': proc.pid,
                  'note': ('root still running after %.0f s' % limit) if timed_out
                  else 'root exited %s: %s' % (proc.returncode, tail[0][:160])}
    elif timed_out or proc.returncode == faults_trials.EXIT_BLOCKED:
        if result['outcome'] == 'ok':
            result['outcome'], result['note'] = 'hang', 'root exit blocked (%s)' % result['note']
        else:
            result['note'] += '; root exit blocked'
    # Whatever is still running of the tree (an orphan), then the leftovers.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    left = _left_behind(result)
    if left:
        time.sleep(0.5)   # an orphan of the tree may be removing them now
        left = _left_behind(result)
    if left and result['outcome'] == 'ok':
        result['outcome'], result['note'] = 'leftover', 'left: ' + ', '.join(sorted(left)[:3])
    result.update(row=row, seed=seed, method=method, seconds=seconds)
    result.pop('names', None)
    return result


def run_row(interpreter, row, trials, seed, method='fork', on_trial=None):
    results = []
    for i in range(trials):
        r = run_trial(interpreter, row, seed + i, method)
        results.append(r)
        if on_trial:
            on_trial(r)
    return results


def _general(note):
    """A failure's note without the counts that differ from trial to trial."""
    note = re.sub(r' \(got [^)]*\)', '', note)
    return re.sub(r'\b\d+ of \d+\b', 'some', note)


def summarize(results):
    counts = {o: 0 for o in OUTCOMES}
    notes = {}
    times = []
    for r in results:
        counts[r['outcome']] += 1
        key = r['note'] if r['outcome'] == 'ok' else '%s: %s' % (r['outcome'], _general(r['note']))
        key = key if len(key) < 70 else key[:67] + '...'
        notes[key] = notes.get(key, 0) + 1
        if r['outcome'] == 'ok' and r.get('recover') is not None:
            times.append(r['recover'])
    return {'trials': len(results), 'counts': counts,
            'median': statistics.median(times) if times else None,
            'max': max(times) if times else None,
            'notes': sorted(notes.items(), key=lambda kv: -kv[1])}


def _ms(v):
    return '-' if v is None else ('%.0f' % (v * 1000) if v >= 0.01 else '%.1f' % (v * 1000))


def _counts(s):
    c = s['counts']
    return ' / '.join(str(c[o]) for o in OUTCOMES)


def _notes(s, most=3):
    return '; '.join('%s (%d)' % kv for kv in s['notes'][:most])


def table(summaries, stock):
    head = ('| fault | trials | ok / hang / lost / dup / torn / leftover / error | recover median / max (ms) | what happened |')
    lines = [head, '|' + '---|' * 5]
    if stock:
        lines = [head + ' stock: ok / hang / lost / dup / torn / leftover / error | stock: what happened |',
                 '|' + '---|' * 7]
    for row, (ours, theirs) in summaries.items():
        cells = [row, str(ours['trials']), _counts(ours), '%s / %s' % (_ms(ours['median']), _ms(ours['max'])),
                 _notes(ours)]
        if stock:
            cells += [_counts(theirs) if theirs else 'n/a', _notes(theirs) if theirs else '']
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--mphost', required=True, help='the mphost launcher to test')
    ap.add_argument('--stock', default=STOCK, help='stock python3 to compare with (default %(default)s)')
    ap.add_argument('--no-stock', action='store_true', help='run mphost only')
    ap.add_argument('--trials', type=int, default=100, help='trials per row (default %(default)s)')
    ap.add_argument('--rows', default='', help='comma-separated row names or globs (default: all)')
    ap.add_argument('--row', help='replay one trial of this row (with --seed)')
    ap.add_argument('--seed', type=int, help='first seed (trial i uses seed+i); random if not given')
    ap.add_argument('--method', default='fork', choices=['fork', 'spawn', 'forkserver'])
    ap.add_argument('--json', help='also write every trial result to this file')
    ap.add_argument('--list', action='store_true', help='list the rows and exit')
    ap.add_argument('--from-json', help='only print the table of the results saved with --json')
    args = ap.parse_args(argv)
    if args.list:
        print('\n'.join(faults_trials.ROWS))
        return 0
    if args.from_json:
        with open(args.from_json) as f:
            saved = json.load(f)
        summaries = {}
        for row in dict.fromkeys(r['row'] for r in saved):
            ours = [r for r in saved if r['row'] == row and r['interpreter'] == 'mphost']
            theirs = [r for r in saved if r['row'] == row and r['interpreter'] == 'stock']
            summaries[row] = (summarize(ours), summarize(theirs) if theirs else None)
        print(table(summaries, any(s[1] for s in summaries.values())))
        return 0
    mphost = os.path.abspath(args.mphost)
    if args.row:
        if args.row not in faults_trials.ROWS:
            ap.error('no row %r (see --list)' % args.row)
        seed = args.seed if args.seed is not None else 0
        ok = True
        for name, interp in [('mphost', mphost)] + ([] if args.no_stock else [('stock', args.stock)]):
            r = run_trial(interp, args.row, seed, args.method)
            print('%-6s %s' % (name, json.dumps(r)))
            ok = ok and (name != 'mphost' or r['outcome'] == 'ok')
        return 0 if ok else 1
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rows = rows_matching(args.rows)
    print('faults: %d rows x %d trials, method %s, seed %d' % (len(rows), args.trials, args.method, seed),
          flush=True)
    summaries, everything, failed = {}, [], 0
    for row in rows:
        t0 = time.monotonic()
        ours = run_row(mphost, row, args.trials, seed, args.method)
        theirs = None if args.no_stock else run_row(args.stock, row, args.trials, seed, args.method)
        for r in ours:
            r['interpreter'] = 'mphost'
            if r['outcome'] != 'ok':
                failed += 1
                print('  FAIL %s seed %d: %s: %s\n    replay: %s %s --mphost %s --row %s --seed %d --method %s'
                      % (row, r['seed'], r['outcome'], r['note'], sys.executable, os.path.abspath(__file__),
                         mphost, row, r['seed'], args.method), flush=True)
        for r in theirs or []:
            r['interpreter'] = 'stock'
        everything += ours + (theirs or [])
        summaries[row] = (summarize(ours), summarize(theirs) if theirs else None)
        s = summaries[row][0]
        print('  %-28s %s  (%.1f s)' % (row, _counts(s), time.monotonic() - t0), flush=True)
    print()
    print(table(summaries, not args.no_stock))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(everything, f, indent=0)
    print('\n%d trial(s) of mphost not ok' % failed)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
