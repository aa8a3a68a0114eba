"""The worker loop of a C++ host_pool (api/include/mphost/host_pool.hpp).

Run as ``mphost -m mphost._worker REQUESTS TICKET REPLIES TICKET OWNER``:
it opens the two channels the pool made (reading requests, writing
replies) and serves them until the requests channel ends (the pool closed
it or died) or an empty request asks it to stop; it is killed when the
application (pid OWNER) ends, even in the middle of a call.

Wire format, both ways: 8 bytes of call id (little-endian), then for a
reply one status byte, then a pickle (protocol 4).
  request id 0:  the set-up, a dict {'path': [...], 'env': {...},
                 'cwd': str, 'init': 'pkg.mod:func'}; answered like a call.
  request id n:  (target, args); target is 'module:qualname'.
  reply:         status 0 and the result, or status 1 and the error as
                 (type name, message, formatted traceback).
Results are pickled with a pickler that sends a shared block (or a numpy
array over a whole one) as a reference (mphost._shared.reference), and a
numpy scalar as the float, int or bool it holds.

``--zygote CONTROL TICKET REPORTS TICKET OWNER MODULE...`` runs a forkserver for
the pool instead: it imports the modules, then forks one worker per
control message after the first (the set-up, as above, without an
initializer, applied before the imports) (the four channel arguments, pickled) and reports b'F' +
pid when it forked and b'X' + pid + wait status when a child ended.
"""

import importlib
import io
import os
import pickle
import struct
import sys
import traceback

import _mphost

from . import _shared

_HEADER = struct.Struct('<Q')
_REPLY = struct.Struct('<QB')
_PLAIN = frozenset((type(None), bool, int, float, str, bytes, tuple, list, dict))


_SCALAR_KINDS = {'f': float, 'i': int, 'u': int, 'b': bool}


def _numpy_scalar(obj):
    """(float|int|bool, (value,)) for a numpy scalar of those kinds, so that
    the application reads it as a plain value; None otherwise."""
    kind = getattr(getattr(obj, 'dtype', None), 'kind', None)
    if type(obj).__module__ != 'numpy' or getattr(obj, 'ndim', None) != 0 or kind not in _SCALAR_KINDS:
        return None
    return _SCALAR_KINDS[kind], (obj.item(),)


class _ReplyPickler(pickle.Pickler):
    def reducer_override(self, obj):
        if type(obj) in _PLAIN:
            return NotImplemented
        ref = _shared.reference(obj) or _numpy_scalar(obj)
        return NotImplemented if ref is None else ref


_SCALARS = frozenset((type(None), bool, int, float, str, bytes))


def _pickled(obj):
    if type(obj) in _SCALARS:
        return pickle.dumps(obj, 4)
    out = io.BytesIO()
    _ReplyPickler(out, 4).dump(obj)
    return out.getvalue()


def _type_name(exc):
    kind = type(exc)
    if kind.__module__ == 'builtins':
        return kind.__qualname__
    return f'{kind.__module__}.{kind.__qualname__}'


def _error(exc):
    text = ''.join(traceback.format_exception(exc))
    try:
        message = str(exc)
    except BaseException:
        message = '<str() failed>'
    return pickle.dumps((_type_name(exc), message, text), 4)


def run_chunk(target, items):
    """target(item) for each item: one request of host_pool::map."""
    fn = _targets[target]
    return [fn(item) for item in items]


class _Targets(dict):
    """'module:qualname' -> the callable, imported once."""

    def __missing__(self, target):
        module_name, sep, qualname = target.partition(':')
        if not sep or not module_name or not qualname:
            raise ValueError(f"target must be 'module:qualname', not {target!r}")
        obj = importlib.import_module(module_name)
        for part in qualname.split('.'):
            obj = getattr(obj, part)
        self[target] = obj
        return obj


_targets = _Targets()


def _set_up(config, targets):
    os.environ.update(config.get('env', {}))
    if config.get('cwd'):
        os.chdir(config['cwd'])
    sys.path[:0] = [entry for entry in config.get('path', []) if entry not in sys.path]
    if config.get('init'):
        targets[config['init']]()


def serve(requests, replies):
    targets = _targets
    recv, send, loads = requests.recv, replies.send, pickle.loads
    header, reply = _HEADER.unpack_from, _REPLY.pack
    while True:
        try:
            message = recv()
        except EOFError:
            return
        if not message:
            return
        (call_id,) = header(message)
        try:
            if call_id == 0:
                _set_up(loads(message[8:]), targets)
                status, body = 0, _pickled(None)
            else:
                target, args = loads(memoryview(message)[8:])
                status, body = 0, _pickled(targets[target](*args))
        except BaseException as exc:  # the caller gets every error, SystemExit too
            status, body = 1, _error(exc)
            exc = None
        send(reply(call_id, status) + body)


def _end_with(owner):
    """Be killed when the application `owner` (a pid) ends, however it ends
    (a worker busy in a long call would otherwise outlive it)."""
    try:
        fd = os.pidfd_open(owner)
    except ProcessLookupError:
        os._exit(1)
    try:
        _mphost.die_with_parent(fd, 0)
    finally:
        os.close(fd)


def _open(names):
    requests = _mphost.Channel.open(names[0], 'reader', int(names[1]))
    replies = _mphost.Channel.open(names[2], 'writer', int(names[3]))
    # The pool sends the next call soon after it reads a reply: wait for it
    # spinning a little longer before sleeping.
    requests.prompt_peer(True)
    return requests, replies


def _zygote(argv):
    control = _mphost.Channel.open(argv[0], 'reader', int(argv[1]))
    reports = _mphost.Channel.open(argv[2], 'writer', int(argv[3]))
    owner = int(argv[4])
    _end_with(owner)
    _set_up(pickle.loads(control.recv()), _targets)
    for name in argv[5:]:
        importlib.import_module(name)
    import signal
    import threading
    lock = threading.Lock()

    def reap(*_):
        with lock:
            while True:
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    return
                if pid == 0:
                    return
                reports.send(b'X' + struct.pack('<qq', pid, status))

    signal.signal(signal.SIGCHLD, reap)
    while True:
        try:
            message = control.recv(timeout=0.5)
        except EOFError:
            break
        if message is None:
            reap()
            continue
        names = pickle.loads(message)
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            control.close()
            reports.close()
            code = 0
            try:
                _end_with(owner)
                serve(*_open(names))
            except BaseException:
                traceback.print_exc()
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                _shared._remove_unclaimed()
            os._exit(code)
        reports.send(b'F' + struct.pack('<q', pid))
        reap()


def main(argv):
    if argv and argv[0] == '--zygote':
        _zygote(argv[1:])
    else:
        _end_with(int(argv[4]))
        serve(*_open(argv))


if __name__ == '__main__':
    # run_chunk is named 'mphost._worker:run_chunk': one module, one cache.
    sys.modules.setdefault('mphost._worker', sys.modules[__name__])
    main(sys.argv[1:])
