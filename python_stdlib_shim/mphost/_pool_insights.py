"""What mphost.Pool.insights() returns: one row per worker slot (a worker
and the replacements that took its place), read from the pool's task
board, with totals and means, printable as a table (mpire's
print_insights is the model)."""

from dataclasses import asdict, dataclass

__all__ = ['Insights', 'WorkerInsight']


@dataclass(frozen=True)
class WorkerInsight:
    """One worker slot. Times are seconds, memory bytes; the counts add up
    the slot's current worker (pid, None if none runs now) and the ones it
    replaced (restarts: how many times the slot got a new worker; deaths:
    how many of its workers died unexpectedly)."""
    slot: int
    pid: int
    tasks: int
    busy: float          # running tasks
    idle: float          # alive and not running tasks
    waiting: float       # waiting for (and reading) tasks, part of idle
    sending: float       # sending results back, part of idle
    peak_rss: int
    restarts: int
    deaths: int


_SUMMED = ('tasks', 'busy', 'idle', 'waiting', 'sending', 'restarts', 'deaths')


def _size(n):
    for unit in ('B', 'KiB', 'MiB', 'GiB'):
        if n < 1024 or unit == 'GiB':
            return f'{n:.0f} {unit}' if unit == 'B' else f'{n:.1f} {unit}'
        n /= 1024


def _seconds(s):
    return f'{s:.3f} s'


class Insights:
    """The workers of a pool, as rows (``workers``), with ``total`` and
    ``mean`` over them (means per slot; ``busy_ratio``: the share of the
    workers' time spent running tasks). ``as_dict()`` gives plain data."""

    def __init__(self, workers):
        self.workers = list(workers)
        n = len(self.workers) or 1
        self.total = {k: sum(getattr(w, k) for w in self.workers) for k in _SUMMED}
        self.total['peak_rss'] = max((w.peak_rss for w in self.workers), default=0)
        self.mean = {k: v / n for k, v in self.total.items() if k != 'peak_rss'}
        self.mean['peak_rss'] = sum(w.peak_rss for w in self.workers) / n
        alive = self.total['busy'] + self.total['idle']
        self.busy_ratio = self.total['busy'] / alive if alive else 0.0

    def as_dict(self):
        return {'workers': [asdict(w) for w in self.workers],
                'total': dict(self.total), 'mean': dict(self.mean),
                'busy_ratio': self.busy_ratio}

    def __repr__(self):
        return f'<Insights of {len(self.workers)} workers: {self.total["tasks"]} tasks>'

    def __str__(self):
        head = ('slot', 'pid', 'tasks', 'busy', 'idle', 'waiting', 'sending', 'peak RSS',
                'restarts')
        lines = []
        for w in self.workers:
            lines.append((str(w.slot), '-' if w.pid is None else str(w.pid), str(w.tasks),
                          _seconds(w.busy), _seconds(w.idle), _seconds(w.waiting),
                          _seconds(w.sending), _size(w.peak_rss), str(w.restarts)))
        t, m = self.total, self.mean
        lines.append(('total', '', str(t['tasks']), _seconds(t['busy']), _seconds(t['idle']),
                      _seconds(t['waiting']), _seconds(t['sending']),
                      _size(t['peak_rss']) + ' max', str(t['restarts'])))
        lines.append(('mean', '', f'{m["tasks"]:.1f}', _seconds(m['busy']), _seconds(m['idle']),
                      _seconds(m['waiting']), _seconds(m['sending']), _size(m['peak_rss']),
                      f'{m["restarts"]:.1f}'))
        widths = [max(len(r[i]) for r in (head, *lines)) for i in range(len(head))]

        def fmt(row):
            return '  '.join(c.rjust(wd) if i else c.ljust(wd)
                             for i, (c, wd) in enumerate(zip(row, widths)))
        rule = '-' * len(fmt(head))
        per_task = t['busy'] / t['tasks'] if t['tasks'] else 0.0
        tail = (f'{len(self.workers)} workers, {t["tasks"]} tasks, '
                f'{100 * self.busy_ratio:.1f} % of worker time busy, '
                f'{1000 * per_task:.3f} ms per task, {t["deaths"]} unexpected deaths')
        return '\n'.join([fmt(head), rule, *map(fmt, lines[:-2]), rule,
                          *map(fmt, lines[-2:]), tail])

