"""The live inspector: a running mphost program seen from outside.

``mphost -m mphost inspect PID`` (and the ``mphost-inspect`` shortcut) prints
the state of the program tree PID belongs to: its processes as a tree, root
first, and under each process the channels, locks and shared segments it
created, with what holds the program up called out -- the holder of a lock
others wait for, a full queue and its blocked writers. The data come from
the tree's registry in shared memory (``_mphost.tree_state``): the target's
Python code takes no part, and nothing here takes a lock of the target, sends
it a signal or traces it, so a program stuck on purpose is shown as it is.

Pieces, each usable alone (the tests render recorded snapshots):

- ``find_root(pid)``: checks the target (exists, same user, an mphost
  program) and returns the pid of its tree's root, or raises InspectError
  with the sentence to print;
- ``render(snapshot, ...)``: one frame of text from a snapshot dict (the
  schema of ``mphost.state()``), fitted to a width;
- ``run(options, out)``: the command (one frame, ``--json``, ``--watch``).
"""

import json
import os
import shutil
import sys
import time

from . import _state
from ._state import rates_between

__all__ = ['InspectError', 'find_root', 'render', 'rates_between', 'run']

REGISTRY_DIR = '/dev/shm'
REGISTRY_PREFIX = 'mphost-reg-'


class InspectError(Exception):
    """A target that cannot be inspected; str() is the message for the user."""


# ---------------------------------------------------------------- the target

def _proc_stat(pid):
    """(state letter, ppid) of `pid` from /proc, or None when it is gone."""
    try:
        with open(f'/proc/{pid}/stat', 'rb') as f:
            raw = f.read().decode('utf-8', 'replace')
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name is in parentheses and may hold spaces or ')'.
    fields = raw[raw.rindex(')') + 2:].split()
    return fields[0], int(fields[1])


def _mapped_registry(pid):
    """The name of the registry process `pid` has mapped, or None.

    Every process of an mphost program maps its tree's registry (the root
    creates it, forked children inherit it, started children open it), so
    /proc/PID/maps names the tree, whatever the process's ancestry."""
    try:
        with open(f'/proc/{pid}/maps', 'rb') as f:
            maps = f.read().decode('utf-8', 'replace')
    except OSError:
        return None
    marker = f'{REGISTRY_DIR}/{REGISTRY_PREFIX}'
    for line in maps.splitlines():
        at = line.find(marker)
        if at >= 0 and not line.endswith('(deleted)'):
            return line[at + len(REGISTRY_DIR) + 1:].strip()
    return None


def is_alive(pid):
    """Whether `pid` runs (a zombie has ended)."""
    stat = _proc_stat(pid)
    return stat is not None and stat[0] not in ('Z', 'X')


def find_root(pid):
    """The pid of the root of the mphost program tree `pid` belongs to.

    Reads /proc and the names in /dev/shm only. Raises InspectError for a
    pid that does not exist, belongs to another user, or is not part of an
    mphost program."""
    try:
        owner = os.stat(f'/proc/{pid}').st_uid
    except (FileNotFoundError, ProcessLookupError):
        raise InspectError(f'no process with pid {pid}') from None
    if _proc_stat(pid) is None or not is_alive(pid):
        raise InspectError(f'no process with pid {pid} (it has ended)')
    # Registries belong to their user: even root does not open another's.
    if owner != os.geteuid():
        raise InspectError(
            f'process {pid} belongs to another user (uid {owner}); '
            f'only programs of your own user can be inspected')
    name = _mapped_registry(pid)
    if name:
        root = name[len(REGISTRY_PREFIX):].split('-', 1)[0]
        if root.isdigit():
            return int(root)
    raise InspectError(f'process {pid} ({_command_name(pid)}) is not an mphost program '
                       f'(it maps no mphost registry)')


def _command_name(pid):
    try:
        with open(f'/proc/{pid}/comm', 'rb') as f:
            return f.read().decode('utf-8', 'replace').strip()
    except OSError:
        return '?'


def take_snapshot(root, source=None):
    """One snapshot of the tree rooted at `root`; InspectError when it cannot
    be read (the program ended meanwhile, or its registry is not readable)."""
    try:
        return (source or _state.tree_state)(root)
    except InspectError:
        raise
    except PermissionError as exc:
        raise InspectError(f'the registry of program {root} is not readable: {exc}') from None
    except (FileNotFoundError, ProcessLookupError, LookupError):
        if not is_alive(root):
            raise _Ended(root) from None
        raise InspectError(f'program {root} has no readable registry') from None
    except OSError as exc:
        raise InspectError(f'cannot read the state of program {root}: {exc}') from None


class _Ended(InspectError):
    def __init__(self, root):
        super().__init__(f'program {root} has ended')


# ---------------------------------------------------------------- formatting

def human_size(n):
    if n is None:
        return '-'
    size = float(n)
    for unit in ('B', 'KiB', 'MiB', 'GiB', 'TiB'):
        if abs(size) < 1024 or unit == 'TiB':
            return f'{int(size)} {unit}' if unit == 'B' else f'{size:.1f} {unit}'
        size /= 1024


def human_seconds(s):
    if s is None:
        return '-'
    if s < 60:
        return f'{s:.2f}s'
    minutes, seconds = divmod(int(s), 60)
    if minutes < 60:
        return f'{minutes}m{seconds:02d}s'
    return f'{minutes // 60}h{minutes % 60:02d}m'


def human_rate(r):
    if r is None:
        return None
    if r >= 1e6:
        return f'{r / 1e6:.1f}M msg/s'
    if r >= 1e4:
        return f'{r / 1e3:.0f}k msg/s'
    if r >= 10:
        return f'{r:.0f} msg/s'
    return f'{r:.1f} msg/s'


def _fit(text, width):
    if width is None or len(text) <= width:
        return text
    return text[:max(0, width - 1)] + '\u2026'


def _count(waiters):
    """`waiters` may be a count or a list of pids."""
    if waiters is None:
        return 0
    if isinstance(waiters, (list, tuple)):
        return len(waiters)
    return int(waiters)


def _plural(n, word, many=None):
    return f'{n} {word if n == 1 else (many or word + "s")}'


class _Palette:
    def __init__(self, enabled):
        self.enabled = enabled

    def paint(self, text, level):
        if not self.enabled or level == 0:
            return text
        code = {1: '33', 2: '1;31', 3: '1'}[level]
        return f'\x1b[{code}m{text}\x1b[0m'


def _glyphs(encoding):
    try:
        '\u251c\u2500\u2502\u2514'.encode(encoding or 'ascii')
    except (UnicodeEncodeError, LookupError):
        return {'tee': '|- ', 'last': '`- ', 'bar': '|  ', 'none': '   ', 'more': '~'}
    return {'tee': '\u251c\u2500 ', 'last': '\u2514\u2500 ', 'bar': '\u2502  ', 'none': '   ', 'more': '\u2026'}


# ---------------------------------------------------------------- resources

def _who(pid, names):
    if pid is None:
        return '?'
    name = names.get(pid)
    return f'{pid} {name}' if name else str(pid)


def _waiter_text(waiters, names):
    n = _count(waiters)
    if n == 0:
        return None
    if isinstance(waiters, (list, tuple)):
        listed = ', '.join(_who(p, names) for p in waiters[:4])
        more = f', +{n - 4}' if n > 4 else ''
        return f'{n} waiting: {listed}{more}'
    return f'{n} waiting'


# A Queue's bound is not in its channel: it is a BoundedSemaphore of
# `maxsize` units (the free slots), taken by put() before the message goes in
# and given back by get() after it is taken out. An unbounded Queue's has
# SEM_VALUE_MAX units.
_UNBOUNDED_SLOTS = 2 ** 31 - 1
_BOUNDED_KINDS = ('Queue', 'JoinableQueue')


def with_bounds(snapshot):
    """The snapshot with each channel's `maxsize` (None unless it is a
    bounded queue) and, on the pair, `slots` (the name of the semaphore
    counting a bounded queue's free slots) and `slots_of` (the queue's).

    The pair is found by its numbers, the registry knowing no link: a
    BoundedSemaphore of fewer than SEM_VALUE_MAX units made by the queue's
    creator (or by no one recorded: a fork-context one), whose units taken are at least the queue's depth (equal when no
    put() is half-way), the closest one first. Two queues alike in every
    number may swap semaphores: the figures shown stay right.
    `capacity` keeps its meaning: the bytes of a bounded ring."""
    out = dict(snapshot)
    locks = [dict(lk) for lk in snapshot.get('locks') or []]
    free = [lk for lk in locks if lk.get('kind') == 'BoundedSemaphore' and lk.get('value') is not None
            and lk.get('maxvalue') and lk['maxvalue'] < _UNBOUNDED_SLOTS]
    chans = []
    for ch in snapshot.get('channels') or []:
        ch = dict(ch, maxsize=None)
        depth = ch.get('depth')
        if ch.get('kind') in _BOUNDED_KINDS and depth is not None:
            fits = [lk for lk in free if lk.get('creator_pid') in (ch.get('creator_pid'), None)
                    and lk['maxvalue'] - lk['value'] >= depth]
            if fits:
                slots = min(fits, key=lambda lk: (lk.get('creator_pid') is None,
                                                  lk['maxvalue'] - lk['value'] - depth))
                free.remove(slots)
                ch.update(maxsize=slots['maxvalue'], slots=slots.get('name'),
                          writers_blocked=_count(slots.get('waiters')))
                slots['slots_of'] = ch.get('name')
        chans.append(ch)
    out['channels'] = chans
    out['locks'] = locks
    return out


def _channel_fill(ch):
    """(full?, phrase) for how full a channel is: messages against a
    queue's maxsize, else bytes against a bounded ring's capacity."""
    depth, maxsize = ch.get('depth'), ch.get('maxsize')
    cap, flight = ch.get('capacity'), ch.get('bytes_in_flight')
    if maxsize and depth is not None:
        full = depth >= maxsize
        return full, f'{depth}/{maxsize} FULL' if full else f'depth {depth}/{maxsize}'
    full = bool(cap) and flight is not None and flight >= cap
    phrase = f'depth {depth}' if depth is not None else ''
    if cap and flight is not None:
        phrase += f', {human_size(flight)} of {human_size(cap)} in flight' + (' FULL' if full else '')
    elif flight:
        phrase += f', {human_size(flight)} in flight'
    return full, phrase.lstrip(', ')


def _channel_line(ch, names, rates):
    """(text, level, attention sentence or None) for one channel."""
    kind = ch.get('kind') or ch.get('label') or 'channel'
    title = ch.get('name') or '?'
    full, fill = _channel_fill(ch)
    parts = [fill] if fill else []
    if ch.get('maxsize') and ch.get('bytes_in_flight'):
        parts.append(f'{human_size(ch["bytes_in_flight"])} in flight')
    if ch.get('messages_total') is not None:
        parts.append(f'{ch["messages_total"]} msgs')
    rate = rates.get(ch.get('name')) if rates else None
    if rate is not None:
        parts.append(human_rate(rate))
    writers = _count(ch.get('writers_waiting'))
    readers = _count(ch.get('readers_waiting'))
    if ch.get('writers_blocked'):
        parts.append(_plural(ch['writers_blocked'], 'writer') + ' waiting for room')
    if writers:
        parts.append(_plural(writers, 'writer') + ' waiting')
    if readers:
        parts.append(_plural(readers, 'reader') + ' waiting')
    level = 2 if (full or writers) else (1 if readers else 0)
    note = None
    if level == 2:
        if full and ch.get('maxsize'):
            why = f'is full ({ch["depth"]}/{ch["maxsize"]})'
            if ch.get('writers_blocked'):
                why += f': {_plural(ch["writers_blocked"], "writer")} waiting for room'
        elif full:
            why = 'is full (its ring has no room)'
        else:
            why = 'has writers waiting for room'
        note = f'{kind} {title} {why}'
        if writers:
            note += f'; {_plural(writers, "writer")} blocked'
    return f'{kind:<8} {title}  ' + ', '.join(parts), level, note


_OWNED_KINDS = ('Lock', 'RLock')


def _lock_state(lk, names):
    """The phrase saying where a primitive stands, by its kind."""
    kind = lk.get('kind')
    holder = lk.get('holder_pid')
    value, top = lk.get('value'), lk.get('maxvalue')
    if holder:
        depth = lk.get('recursion')
        text = f'held by {_who(holder, names)}' + (f' ({depth} deep)' if depth and depth > 1 else '')
        if lk.get('holder_alive') is False:
            text += ' (dead: the next acquirer recovers it)'
        return text
    if kind in _OWNED_KINDS and value is not None:
        return 'free' if value else 'taken'
    if kind == 'Event' and lk.get('is_set') is not None:
        return 'set' if lk['is_set'] else 'clear'
    if kind == 'Barrier' and lk.get('parties') is not None:
        return 'BROKEN' if lk.get('broken') else f'{lk["parties"]} parties'
    if value is not None:
        return f'value {value}/{top}' if top is not None else f'value {value}'
    return None


def _lock_line(lk, names):
    """(text, level, attention sentence or None) for one lock, semaphore,
    event, condition or barrier. Someone waiting on a primitive that is
    taken (a held lock, a semaphore at 0 -- a bounded Queue's free slots
    among them) is what holds a program up."""
    title = lk.get('name') or '?'
    if lk.get('slots_of'):
        queue = lk['slots_of']
        if len(queue) > 17:
            queue = queue[:16] + '\u2026'
        title += f' (free slots of {queue})'
    kind = lk.get('kind') or 'lock'
    where = _lock_state(lk, names)
    parts = [where] if where else []
    waiting = _waiter_text(lk.get('waiters'), names)
    if not waiting and not _count(lk.get('waiters')) and lk.get('may_have_waiters'):
        # A lock word's "someone sleeps here" bit: who and how many is not kept.
        waiting = 'others waiting'
    if waiting:
        parts.append(waiting)
    holder = lk.get('holder_pid')
    taken = bool(holder) or lk.get('value') == 0
    note = None
    if waiting and (taken or lk.get('broken')):
        level = 2
        if holder or kind in _OWNED_KINDS:
            why = f'is {where}'
        elif lk.get('broken'):
            why = 'is broken'
        else:
            why = f'has no unit free ({where})'
        # A full queue's slots: the queue's own sentence says it already.
        note = None if lk.get('slots_of') else f'{kind} {title} {why}; {waiting}'
    elif taken and kind in _OWNED_KINDS:
        level = 1
    else:
        level = 1 if waiting else 0
    return f'{kind:<8} {title}  ' + ', '.join(parts), level, note


def _segment_line(seg, names):
    mapped = seg.get('mapped_by') or []
    text = f'{"segment":<8} {seg.get("name") or "?"}  {human_size(seg.get("size"))}'
    if mapped:
        shown = ', '.join(str(p) for p in mapped[:6]) + (', \u2026' if len(mapped) > 6 else '')
        text += f', mapped by {len(mapped)} ({shown})'
    return text, 0, None


# ---------------------------------------------------------------- one frame

_ENDED = 'ended'   # the group of resources whose creator is not in the tree any more

_COLUMNS = ('PID', 'NAME', 'ROLE', 'START', 'STATE', 'CPU', 'RSS')


# What the kernel says a running process is doing (/proc/PID/stat).
_OS_STATES = {'R': 'running', 'S': 'sleeping', 'D': 'disk wait', 'T': 'stopped', 't': 'traced',
              'Z': 'zombie', 'X': 'dead', 'I': 'idle'}


def _state_word(p):
    code = p.get('exitcode')
    if code is None:
        state = p.get('state')
        if p.get('alive') is False:
            return 'gone'
        # "running" in the registry means it runs its program; the kernel
        # tells whether it computes or sleeps (in a wait, when stuck).
        if state in (None, 'running') and p.get('os_state') in _OS_STATES:
            return _OS_STATES[p['os_state']]
        return state or '?'
    if code < 0:
        import signal
        try:
            return f'killed ({signal.Signals(-code).name})'
        except ValueError:
            return f'killed ({-code})'
    return f'exited ({code})'


def _tree_order(processes, root):
    """[(process, depth, is_last_at_each_level)] root first, children under
    their parent by pid."""
    pids = {p['pid'] for p in processes}
    children = {}
    tops = []
    for p in sorted(processes, key=lambda p: p['pid']):
        parent = p.get('ppid')
        if p['pid'] != root and parent in pids and parent != p['pid']:
            children.setdefault(parent, []).append(p)
        else:
            tops.append(p)
    tops.sort(key=lambda p: (p['pid'] != root, p['pid']))
    order = []

    def walk(p, lasts):
        order.append((p, lasts))
        kids = children.get(p['pid'], [])
        for i, kid in enumerate(kids):
            walk(kid, lasts + (i == len(kids) - 1,))

    for p in tops:
        walk(p, ())
    return order


def _clock(t):
    if t is None:
        return '?'
    frac = f'{t % 1:.1f}'[1:]
    return time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(t)) + frac


def render(snapshot, width=None, colour=False, rates=None, encoding='utf-8', focus=None, frame=None):
    """The text of one frame for `snapshot` (a dict of the state schema).

    `width` cuts every line to that many columns; `rates` maps channel names
    to messages/s (shown when given); `focus` is the pid the user asked
    about, marked when it is not the root; `frame` a refresh counter."""
    paint = _Palette(colour).paint
    g = _glyphs(encoding)
    snapshot = with_bounds(snapshot)
    root = snapshot.get('root')
    processes = list(snapshot.get('processes') or [])
    names = {p['pid']: p.get('name') for p in processes if p.get('pid') is not None}
    lines = []

    head = f'mphost program {root}'
    if focus is not None and focus != root:
        head += f' (root of {focus})'
    head += f'  at {_clock(snapshot.get("taken_at"))}'
    if frame is not None:
        head += f'  refresh #{frame}'
    lines.append(paint(_fit(head, width), 3))
    spawn = snapshot.get('spawn') or {}
    sub = f'registry {snapshot.get("registry") or "?"}'
    if spawn:
        fs = spawn.get('forkserver_pid')
        if fs:
            sub += f'  forkserver {fs} ({"alive" if spawn.get("forkserver_alive") else "gone"})'
        else:
            sub += '  forkserver none'
        if spawn.get('warm_spares') is not None:
            sub += f'  warm spares {spawn["warm_spares"]}'
    lines.append(_fit(sub, width))
    lines.append('')

    # Resources under their creator; the others at the end.
    owned = {}
    for key, maker in (('channels', lambda r: _channel_line(r, names, rates)),
                       ('locks', lambda r: _lock_line(r, names)),
                       ('segments', lambda r: _segment_line(r, names))):
        for res in snapshot.get(key) or []:
            creator = res.get('creator_pid')
            if creator is not None and creator not in names:
                creator = _ENDED
            owned.setdefault(creator, []).append(maker(res))

    order = _tree_order(processes, root)
    rows = []
    for p, lasts in order:
        prefix = ''.join(g['none'] if last else g['bar'] for last in lasts[:-1])
        if lasts:
            prefix += g['last'] if lasts[-1] else g['tee']
        rows.append([prefix + str(p['pid']), p.get('name') or '-', p.get('role') or '-',
                     p.get('start_method') or '-', _state_word(p), human_seconds(p.get('cpu_seconds')),
                     human_size(p.get('rss_bytes'))])
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(_COLUMNS)]
    if width is not None:
        # The name column gives way first, down to 8 columns.
        excess = sum(widths) + 2 * (len(widths) - 1) - width
        if excess > 0:
            widths[1] = max(8, widths[1] - excess)

    def row_text(cells):
        out = [_fit(c, w).ljust(w) if i < len(cells) - 1 else _fit(c, w).rjust(w)
               for i, (c, w) in enumerate(zip(cells, widths))]
        return '  '.join(out)

    lines.append(paint(_fit(row_text(list(_COLUMNS)), width), 3))
    attention = []
    for i, ((p, lasts), cells) in enumerate(zip(order, rows)):
        lines.append(_fit(row_text(cells), width))
        indent = ''.join(g['none'] if last else g['bar'] for last in lasts)
        # In depth-first order a process has children when the next row is deeper.
        has_children = i + 1 < len(order) and len(order[i + 1][1]) > len(lasts)
        indent += g['bar'] if has_children else g['none']
        for text, level, note in owned.get(p['pid'], []):
            mark = '! ' if level == 2 else '  '
            lines.append(paint(_fit(indent + mark + text, width), level))
            if note:
                attention.append(note)
    for key, heading in ((_ENDED, 'created by processes no longer in the tree:'),
                         (None, 'creator not recorded (a fork-context primitive has no name to record):')):
        if owned.get(key):
            lines.append('')
            lines.append(_fit(heading, width))
            for text, level, note in owned[key]:
                mark = '! ' if level == 2 else '  '
                lines.append(paint(_fit('   ' + mark + text, width), level))
                if note:
                    attention.append(note)
    lines.append('')
    if attention:
        lines.append(paint('attention:', 2))
        for note in attention:
            lines.append(paint(_fit('  ! ' + note, width), 2))
    lines.extend(_wrap_phrases(summary(snapshot), width))
    # A cut line ends with an ellipsis: one column either way.
    return '\n'.join(lines).replace('\u2026', g['more'])


def summary(snapshot):
    """How many of each thing, and how many hold the program up: a list of
    short phrases (render joins them and wraps them to the width)."""
    snapshot = with_bounds(snapshot)
    procs = snapshot.get('processes') or []
    alive = sum(1 for p in procs if p.get('exitcode') is None)
    chans = snapshot.get('channels') or []
    full = sum(1 for c in chans if _channel_fill(c)[0])
    blocked = sum(1 for c in chans if _count(c.get('writers_waiting')))
    reading = sum(1 for c in chans if _count(c.get('readers_waiting')))
    locks = snapshot.get('locks') or []
    held = sum(1 for lk in locks if lk.get('holder_pid'))
    contended = sum(1 for lk in locks if _count(lk.get('waiters')) or lk.get('may_have_waiters'))
    segs = snapshot.get('segments') or []
    total = sum(s.get('size') or 0 for s in segs)
    phrases = [f'{_plural(len(procs), "process", "processes")} ({alive} running)']
    details = [f'{full} full'] if full else []
    if blocked:
        details.append(f'{blocked} with writers waiting')
    if reading:
        details.append(f'{reading} with readers waiting')
    phrases.append(_plural(len(chans), 'channel') + (f' ({", ".join(details)})' if details else ''))
    details = [f'{held} held'] if held else []
    if contended:
        details.append(f'{contended} with waiters')
    phrases.append(_plural(len(locks), 'lock') + (f' ({", ".join(details)})' if details else ''))
    phrases.append(_plural(len(segs), 'segment') + (f' ({human_size(total)})' if segs else ''))
    return phrases


def _wrap_phrases(phrases, width, sep='; '):
    lines, current = [], ''
    for phrase in phrases:
        candidate = current + sep + phrase if current else phrase
        if current and width is not None and len(candidate) > width:
            lines.append(current + sep.rstrip())
            current = phrase
        else:
            current = candidate
    lines.append(current)
    return [_fit(line, width) for line in lines]


# ---------------------------------------------------------------- the command

class _Screen:
    """Where frames go: in place on a terminal, as plain blocks elsewhere."""

    def __init__(self, out):
        self.out = out
        self.tty = bool(getattr(out, 'isatty', lambda: False)())
        self.colour = self.tty and 'NO_COLOR' not in os.environ and os.environ.get('TERM') != 'dumb'
        self.encoding = getattr(out, 'encoding', None) or 'utf-8'
        self.started = False

    def size(self):
        cols, rows = shutil.get_terminal_size((120, 40))
        return cols, rows

    def begin_watch(self):
        if self.tty:
            self.out.write('\x1b[?25l')
        self.started = True

    def show(self, text, in_place):
        if in_place and self.tty:
            cols, rows = self.size()
            lines = text.split('\n')
            if len(lines) > rows - 1:
                hidden = len(lines) - (rows - 2)
                lines = lines[:rows - 2] + [f'\u2026 {hidden} more lines (a taller terminal shows them)']
            self.out.write('\x1b[H' + ''.join(line + '\x1b[K\n' for line in lines) + '\x1b[J')
        else:
            if self.started and in_place:
                self.out.write('\n')
            self.out.write(text + '\n')
        self.out.flush()

    def end(self):
        if self.started and self.tty:
            self.out.write('\x1b[?25h')
            self.out.flush()


def _with_rates(snapshot, rates):
    out = with_bounds(snapshot)
    out['channels'] = [dict(c, messages_per_second=rates.get(c.get('name'))) for c in out['channels']]
    return out


def run(pid, watch=None, as_json=False, once=False, out=None, err=None, source=None, sleep=time.sleep):
    """The inspect command; returns the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    screen = _Screen(out)
    try:
        root = find_root(pid)
        snap = take_snapshot(root, source)
        if watch is None:
            if as_json:
                out.write(json.dumps(with_bounds(snap), indent=2, sort_keys=False) + '\n')
            else:
                cols, _ = screen.size()
                out.write(render(snap, width=cols, colour=screen.colour, encoding=screen.encoding,
                                 focus=pid) + '\n')
            out.flush()
            return 0
        return _watch(screen, pid, root, snap, watch, as_json, once, source, sleep)
    except _Ended as ended:
        screen.end()
        out.write(f'mphost inspect: {ended}\n')
        out.flush()
        return 0
    except InspectError as exc:
        screen.end()
        err.write(f'mphost inspect: {exc}\n')
        err.flush()
        return 1
    except KeyboardInterrupt:
        screen.end()
        if screen.tty and not as_json:
            out.write('\n')
        out.flush()
        return 0


def _watch(screen, pid, root, snap, interval, as_json, once, source, sleep):
    previous = None
    frame = 0
    if once:
        # One frame, with the rates of two samples `interval` apart.
        sleep(interval)
        previous, snap = snap, take_snapshot(root, source)
    elif not as_json:
        screen.begin_watch()
    while True:
        frame += 1
        rates = rates_between(previous, snap) if previous is not None else {}
        if as_json:
            screen.out.write(json.dumps(_with_rates(snap, rates), sort_keys=False) + '\n')
            screen.out.flush()
        else:
            cols, _ = screen.size()
            text = render(snap, width=cols, colour=screen.colour, rates=rates if previous else None,
                          encoding=screen.encoding, focus=pid, frame=None if once else frame)
            if not once:
                text += f'\n(every {interval:g}s; Ctrl-C quits)'
            screen.show(text, in_place=not once)
        if once:
            return 0
        sleep(interval)
        if not is_alive(root):
            raise _Ended(root)
        previous, snap = snap, take_snapshot(root, source)
