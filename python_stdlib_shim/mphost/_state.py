"""mphost.state(): the live state of a program tree, from the native registry.

Every mphost program tree keeps a registry in shared memory (the root's
``mphost-reg-<pid>-*`` segment): the names of its shared objects and a table
of its processes, written by the runtime where it starts, forks and reaps
them. ``state()`` reads it read-only -- this program's, or another running
program's of the same user by its root pid -- and returns plain data:

    {'root': pid, 'registry': name, 'taken_at': unix time,
     'processes': [{'pid', 'ppid', 'name', 'role', 'start_method', 'state',
                    'exitcode', 'cpu_seconds', 'rss_bytes', 'started_at', ...}],
     'channels':  [{'name', 'kind', 'label', 'depth', 'bytes_in_flight',
                    'capacity', 'messages_total', 'readers_waiting',
                    'writers_waiting', 'creator_pid', ...}],
     'locks':     [{'name', 'kind', 'value', 'maxvalue', 'holder_pid',
                    'waiters', 'creator_pid', ...}],
     'segments':  [{'name', 'size', 'mapped_by', 'creator_pid'}],
     'spawn':     {'forkserver_pid', 'forkserver_alive', 'warm_spares'}}

Values the registry cannot know are None. Reading never takes a lock of the
target, writes to it or waits on it, so it works on a program that is stuck.
"""

import time

__all__ = ['state', 'TreeState', 'programs', 'rates_between']


def _native():
    try:
        import _mphost
    except ImportError:
        raise RuntimeError('mphost.state() needs the mphost launcher') from None
    return _mphost


_ENDED_SHOWN = 20   # ended processes printed (all are in the data)


def _size(count):
    if count is None:
        return '?'
    for unit in ('B', 'KiB', 'MiB', 'GiB'):
        if count < 1024 or unit == 'GiB':
            return f'{count:.0f} {unit}' if unit == 'B' else f'{count:.1f} {unit}'
        count /= 1024


def _process_line(row):
    words = [f"{row['pid']}", repr(row['name']) if row['name'] else '-',
             row['role'] or '?', row['start_method'] or '', row['state']]
    if row['exitcode'] is not None:
        words.append(f"exitcode={row['exitcode']}")
    if row['cpu_seconds'] is not None:
        words.append(f"cpu={row['cpu_seconds']:.2f}s")
    if row['rss_bytes'] is not None:
        words.append(f"rss={_size(row['rss_bytes'])}")
    return ' '.join(w for w in words if w)


def _channel_line(row):
    text = (f"{row['kind']} {row['name']}: depth={row['depth']} "
            f"in_flight={_size(row['bytes_in_flight'])} total={row['messages_total']}")
    if row.get('messages_per_second') is not None:
        text += f" rate={row['messages_per_second']:.1f}/s"
    waiting = [f"{n} {who} waiting" for n, who in ((row['readers_waiting'], 'readers'),
                                                    (row['writers_waiting'], 'writers')) if n]
    return text + (' (' + ', '.join(waiting) + ')' if waiting else '')


def _lock_line(row):
    kind = row['kind']
    text = f"{kind} {row['name']}:"
    if kind in ('Lock', 'RLock'):
        if row['holder_pid']:
            text += f" held by {row['holder_pid']}"
            if row.get('holder_alive') is False:
                text += ' (dead: the next acquirer takes it over)'
        else:
            text += ' held' if row['value'] == 0 else ' free'
        if row.get('may_have_waiters'):
            text += ', waiters'
    elif kind == 'Event':
        text += ' set' if row.get('is_set') else ' clear'
    elif kind == 'Barrier':
        text += f" {row['waiters']}/{row['parties']} waiting" + (' broken' if row.get('broken') else '')
    elif kind == 'Condition':
        text += f" {row['waiters']} waiting"
    else:
        text += f" value={row['value']}"
        if kind == 'BoundedSemaphore':
            text += f"/{row['maxvalue']}"
        if row['waiters']:
            text += f", {row['waiters']} waiting"
    return text


def _render(snap):
    lines = [f"mphost program {snap['root']} ({snap['registry']}) at "
             f"{time.strftime('%H:%M:%S', time.localtime(snap['taken_at']))}"]
    children = {}
    rows = snap['processes']
    ended = [row for row in rows if row['state'] in ('exited', 'gone')]
    if len(ended) > _ENDED_SHOWN:
        # A pool that recycles its workers leaves many: the latest are shown.
        hidden = {row['pid'] for row in ended[:-_ENDED_SHOWN]}
        rows = [row for row in rows if row['pid'] not in hidden]
    known = {row['pid'] for row in rows}
    for row in rows:
        parent = row['ppid'] if row['ppid'] in known and row['ppid'] != row['pid'] else None
        children.setdefault(parent, []).append(row)

    def walk(parent, depth, seen):
        for row in children.get(parent, ()):
            if row['pid'] in seen:
                continue
            seen.add(row['pid'])
            lines.append('  ' * (depth + 1) + _process_line(row))
            walk(row['pid'], depth + 1, seen)

    lines.append('processes:')
    walk(None, 0, set())
    if len(rows) < len(snap['processes']):
        lines.append(f"  ... and {len(snap['processes']) - len(rows)} earlier processes that ended")
    for title, key, fmt in (('channels', 'channels', _channel_line), ('locks', 'locks', _lock_line)):
        if snap[key]:
            lines.append(f'{title}:')
            lines.extend('  ' + fmt(row) for row in snap[key])
    if snap['segments']:
        lines.append('segments:')
        for row in snap['segments']:
            mappers = ', '.join(map(str, row['mapped_by'])) or 'none'
            lines.append(f"  {row['name']}: {_size(row['size'])}, mapped by {mappers}")
    spawn = snap['spawn']
    if spawn['forkserver_pid'] or spawn['warm_spares']:
        alive = 'alive' if spawn['forkserver_alive'] else 'gone'
        fs = f"{spawn['forkserver_pid']} ({alive})" if spawn['forkserver_pid'] else 'none'
        lines.append(f"spawn: forkserver {fs}, warm spares {spawn['warm_spares']}")
    return '\n'.join(lines)


class TreeState(dict):
    """The snapshot: a dict of the stable schema, printed as a tree."""

    def __str__(self):
        return _render(self)


def rates_between(before, after):
    """messages/s per channel name from two snapshots; a channel whose rate
    cannot be known (new, or no time between the two) is left out."""
    if not before or not after:
        return {}
    dt = (after.get('taken_at') or 0) - (before.get('taken_at') or 0)
    if dt <= 0:
        return {}
    old = {c.get('name'): c.get('messages_total') for c in before.get('channels') or []}
    out = {}
    for c in after.get('channels') or []:
        a, b = old.get(c.get('name')), c.get('messages_total')
        if a is not None and b is not None and b >= a:
            out[c.get('name')] = (b - a) / dt
    return out


def _add_rates(first, second):
    rates = rates_between(first, second)
    for row in second['channels']:
        row['messages_per_second'] = rates.get(row['name'])


def state(pid=None, *, interval=None):
    """The live state of this program tree, or of the running mphost program
    whose root process is `pid` (same user). With `interval` (seconds), two
    snapshots that far apart give each channel a 'messages_per_second'.
    ProcessLookupError when there is no such program."""
    if pid is not None:
        pid = int(pid)
    snap = tree_state(pid)
    if interval is not None:
        if interval < 0:
            raise ValueError('interval must be >= 0')
        time.sleep(interval)
        later = tree_state(pid)
        _add_rates(snap, later)
        snap = later
    return TreeState(snap)


def tree_state(pid):
    """The raw snapshot (plain dicts) of the tree whose root is `pid`."""
    return _native().tree_state(pid)


def programs():
    """The root pids of the mphost programs of this user running now (this
    one included): what state(pid) accepts."""
    return _native().tree_roots()
